"""The CLI's shared parts: global options, errors that say what to do next, helpers."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
import msgspec
from click.shell_completion import CompletionItem
from rich.console import Console

from automation_sdk import errors
from automation_sdk.client import Client
from automation_sdk.models import Automation, Channel, EventSource, Model

DEFAULT_URL = "http://127.0.0.1:8080"
KEY_HELP = (
    "set AUTOMATION_API_KEY or pass --api-key; "
    "create one with 'automation-server create-key --org NAME'"
)
F = TypeVar("F", bound=Callable[..., Any])


# ---- global options ------------------------------------------------------------


@dataclass
class Options:
    url: str = DEFAULT_URL
    api_key: str | None = None
    json: bool = False

    def client(self, ctx: click.Context) -> Client:
        if not self.api_key:
            fail(f"no API key: {KEY_HELP}")
        # One retry: a user at a terminal wants "cannot reach" at once, not after backoff.
        return ctx.with_resource(Client(self.url, self.api_key, retries=1))

    def out(self) -> Console:
        return _console(sys.stdout)

    def err(self) -> Console:
        return _console(sys.stderr)


def _console(stream: Any) -> Console:
    # Pipes and test runners get a wide table rather than rich's 80 columns.
    wide = not stream.isatty() and "COLUMNS" not in os.environ
    return Console(file=stream, width=160 if wide else None, highlight=False)


def _store(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    """Keep a global option in the root context; an explicit value after the command wins."""
    options = ctx.find_root().ensure_object(Options)
    at_root = ctx.parent is None
    source = ctx.get_parameter_source(param.name or "")
    explicit = source is click.core.ParameterSource.COMMANDLINE
    if value is not None and value is not False and (at_root or explicit):
        setattr(options, param.name or "", value)


def global_options(root: bool = False) -> Callable[[F], F]:
    """``--url``, ``--api-key`` and ``--json``, on the group and on every command."""

    def decorate(f: F) -> F:
        f = click.option(
            "--json",
            "json",
            is_flag=True,
            default=False,
            expose_value=False,
            callback=_store,
            help="Print the API's JSON instead of tables.",
        )(f)
        f = click.option(
            "--api-key",
            "api_key",
            envvar="AUTOMATION_API_KEY" if root else None,
            expose_value=False,
            callback=_store,
            help="API key [AUTOMATION_API_KEY].",
        )(f)
        return click.option(
            "--url",
            "url",
            envvar="AUTOMATION_URL" if root else None,
            default=DEFAULT_URL if root else None,
            expose_value=False,
            callback=_store,
            help=f"Server URL [AUTOMATION_URL, default {DEFAULT_URL}].",
        )(f)

    return decorate


def opts(ctx: click.Context) -> Options:
    return ctx.find_root().ensure_object(Options)


# ---- errors --------------------------------------------------------------------


class CliError(click.ClickException):
    exit_code = 1


def fail(message: str) -> NoReturn:
    raise CliError(message)


def explain(exc: errors.SdkError) -> str:
    """A message that says what went wrong and what to do next."""
    if isinstance(exc, errors.ServerUnreachable):
        return (
            f"cannot reach {exc.url}: is the server running? start it with 'make serve' "
            f"(or pass --url / set AUTOMATION_URL) [{exc.reason}]"
        )
    if isinstance(exc, errors.AuthError) and exc.status_code == 401:
        return f"the server refused the API key ({exc.detail}): {KEY_HELP}"
    if isinstance(exc, errors.AuthError):
        return f"this API key may not do that ({exc.detail}); use a key with a wider --scope"
    if isinstance(exc, errors.ValidationError):
        detail = exc.detail
        if exc.field and not detail.startswith(f"{exc.field}:"):
            detail = f"{exc.field}: {detail}"
        return f"invalid request ({exc.status_code} {exc.code}): {detail}"
    if isinstance(exc, errors.RateLimitedError):
        return f"rate limited by the server; retry in {exc.retry_after or 1:g} s"
    if isinstance(exc, errors.ApiError):
        return f"{exc.detail} ({exc.status_code} {exc.code})"
    return str(exc)


class AutomationGroup(click.Group):
    """Turns SDK exceptions into clear messages and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except errors.SdkError as exc:
            if isinstance(exc, errors.ApiError) and opts(ctx).json:
                body = exc.body if isinstance(exc.body, dict) else _error_body(exc)
                click.echo(json.dumps(body, indent=2))
            raise CliError(explain(exc)) from None


def _error_body(exc: errors.ApiError) -> dict[str, Any]:
    return {
        "status_code": exc.status_code,
        "code": exc.code,
        "detail": exc.detail,
        "field": exc.field,
    }


# ---- helpers -------------------------------------------------------------------


def emit_json(value: Any) -> None:
    data = value.to_dict() if hasattr(value, "to_dict") else value
    click.echo(msgspec.json.format(msgspec.json.encode(data), indent=2).decode())


def resolve(client: Client, name_or_id: str) -> Automation:
    """An automation by name, or by id when no automation has that name."""
    found = client.find_automation(name_or_id)
    if found is not None:
        return found
    try:
        return client.get_automation(name_or_id)
    except (errors.NotFoundError, errors.ValidationError):
        fail(f"no automation named '{name_or_id}'; see 'automation list'")


def session_of(ctx: click.Context) -> tuple[Options, Client]:
    """The command's options and a client built from them."""
    options = opts(ctx)
    return options, options.client(ctx)


def completer(
    names: Callable[[Client], list[str]],
) -> Callable[[click.Context, click.Parameter, str], list[CompletionItem]]:
    """Shell completion from the server (best effort, like ``complete_automation``)."""

    def complete(
        ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[CompletionItem]:
        key = os.environ.get("AUTOMATION_API_KEY")
        if not key:
            return []
        url = os.environ.get("AUTOMATION_URL", DEFAULT_URL)
        try:
            with Client(url, key, timeout=2, retries=0) as client:
                found = names(client)
        except errors.SdkError:
            return []
        return [CompletionItem(n) for n in found if n.startswith(incomplete)]

    return complete


def emit_items(records: Sequence[Model]) -> None:
    emit_json({"items": [r.to_dict() for r in records]})


def emit_deleted(kind: str, record: EventSource | Channel) -> None:
    # The API answers 204 without a body: say what went, in the same words.
    emit_json({"deleted": kind, "id": record.id, "name": record.name})


def delete_and_say(
    options: Options,
    kind: str,
    label: str,
    record: EventSource | Channel,
    delete: Callable[[str], None],
) -> None:
    """Delete ``record`` and say so (``--json``: the same words as a record)."""
    delete(record.id)
    if options.json:
        emit_deleted(kind, record)
        return
    options.out().print(f"deleted {label} {record.name}")


complete_automation = completer(
    lambda c: [a.name for a in islice(c.list_automations(page_size=500), 500)]
)


def key_values(values: tuple[str, ...], option: str) -> dict[str, str] | None:
    if not values:
        return None
    parsed: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r}: use KEY=VALUE", param_hint=option)
        parsed[key] = value
    return parsed


def read_payload(value: str | None) -> dict[str, Any] | None:
    """``--payload '{"a":1}'`` or ``--payload @file.json``: a JSON object."""
    if value is None:
        return None
    text = value
    if value.startswith("@"):
        try:
            text = Path(value[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise click.BadParameter(
                f"cannot read {value[1:]}: {exc}", param_hint="--payload"
            ) from None
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint="--payload") from None
    if not isinstance(payload, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--payload")
    return payload
