"""``automation state``: the JSON object an automation's runs carry (DESIGN 9.7)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from automation_sdk import render_operations as view
from automation_sdk.cli_support import (
    complete_automation,
    emit_json,
    global_options,
    resolve,
    session_of,
)

# ---- state ---------------------------------------------------------------------


@click.group("state")
@global_options()
def state_group() -> None:
    """The JSON object an automation's runs carry from one to the next.

    \b
      automation state show nightly-triage
      automation state set nightly-triage '{"last_ticket": 41}'
    """


@state_group.command("show")
@click.argument("name", shell_complete=complete_automation)
@global_options()
@click.pass_context
def state_show(ctx: click.Context, name: str) -> None:
    """Print the state of automation NAME (version and last writer on stderr).

    \b
      automation state show nightly-triage > state.json
    """
    options, client = session_of(ctx)
    auto = resolve(client, name)
    state = client.get_state(auto.id)
    if options.json:
        emit_json(state)
        return
    # The object alone on stdout, so it can be edited and fed back to 'state set'.
    emit_json(state.state)
    options.err().print(view.state_line(auto.name, state))


@state_group.command("set")
@click.argument("name", shell_complete=complete_automation)
@click.argument("value", metavar="JSON|@FILE|-")
@global_options()
@click.pass_context
def state_set(ctx: click.Context, name: str, value: str) -> None:
    """Replace the state of automation NAME; the next run starts from it.

    VALUE is a JSON object, @file.json, or - for standard input; '{}' empties it.

    \b
      automation state set nightly-triage '{"last_ticket": 41}'
      automation state set nightly-triage @state.json
    """
    state = _state_value(value)
    options, client = session_of(ctx)
    auto = resolve(client, name)
    stored = client.put_state(auto.id, state)
    if options.json:
        emit_json(stored)
        return
    options.out().print(view.state_line(auto.name, stored))


def _state_value(value: str) -> dict[str, Any]:
    """A JSON object from the argument, a file (``@path``) or standard input (``-``)."""
    text = value
    if value == "-":
        text = sys.stdin.read()
    elif value.startswith("@"):
        try:
            text = Path(value[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise click.BadParameter(f"cannot read {value[1:]}: {exc}", param_hint="JSON") from None
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint="JSON") from None
    if not isinstance(parsed, dict):
        raise click.BadParameter(
            f"the state must be a JSON object such as '{{\"last\": 7}}', not {_json_kind(parsed)}",
            param_hint="JSON",
        )
    return parsed


def _json_kind(value: Any) -> str:
    """What a user typed, in JSON's words (an array, not a list)."""
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    kinds = {list: "an array", str: "a string", type(None): "null"}
    return kinds.get(type(value), type(value).__name__)
