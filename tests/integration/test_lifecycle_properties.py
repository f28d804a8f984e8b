"""Properties of the variant lifecycle under arbitrary sequences of changes (hypothesis)."""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

import msgspec
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from automation_server.automations.schemas import (
    AutomationCreate,
    AutomationPatch,
    CloneOverrides,
    CloneRequest,
    PromoteRequest,
)
from automation_server.db.models import Variant
from automation_server.errors import AutomationError
from automation_server.security.accounts import Caller, create_key, ensure_organization
from automation_server.services import Services
from tests.support import targz

SETTINGS = settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
NAMES = ["a", "b", "c", "d"]


def setup(services: Services) -> tuple[Caller, str, str]:
    org = ensure_organization(services.db, "props")
    key = create_key(services.db, org, "admin")
    caller = Caller(org_id=org, key_id=key.key_id, key_prefix=key.prefix, scope="admin")
    ref = services.blobs.upload(org, targz({"main.py": "1"})).ref
    other = services.blobs.upload(org, targz({"main.py": "2"})).ref
    body = msgspec.convert(
        {
            "name": f"p-{uuid.uuid4().hex[:8]}",
            "experiment_id": "props",
            "variants": [
                {
                    "name": "a",
                    "weight": 1,
                    "tarball": ref,
                    "env": {"X": "1"},
                    "description": "first",
                },
                {"name": "b", "weight": 1, "tarball": ref},
            ],
        },
        AutomationCreate,
    )
    return caller, services.automations.create(caller, body).id, other


env_maps = st.dictionaries(st.sampled_from(["X", "Y", "Z"]), st.text("abc", max_size=3), max_size=2)


@SETTINGS
@given(
    overrides=st.fixed_dictionaries(
        {},
        optional={
            "env": env_maps,
            "entrypoint": st.just(["python3", "other.py"]),
            "description": st.text("xyz ", max_size=5),
            "tarball": st.just("OTHER"),
        },
    )
)
def test_clone_preserves_every_field_not_overridden(
    services: Services, overrides: dict[str, Any]
) -> None:
    caller, automation_id, other = setup(services)
    if overrides.get("tarball") == "OTHER":
        overrides["tarball"] = other
    out = services.lifecycle.clone(
        caller,
        automation_id,
        "a",
        CloneRequest(name="copy", overrides=msgspec.convert(overrides, CloneOverrides)),
    )
    source = next(v for v in out.variants if v.name == "a")
    clone = next(v for v in out.variants if v.name == "copy")
    expected = {
        "env": source.env,
        "entrypoint": source.entrypoint,
        "description": source.description,
        "tarball": source.tarball,
    }
    expected.update(overrides)
    assert {
        "env": clone.env,
        "entrypoint": clone.entrypoint,
        "description": clone.description,
        "tarball": clone.tarball,
    } == expected
    assert clone.weight == 0


operations = st.lists(
    st.one_of(
        st.tuples(st.just("promote"), st.sampled_from(NAMES)),
        st.tuples(st.just("clone"), st.sampled_from(NAMES), st.sampled_from(NAMES)),
        st.tuples(st.just("weights"), st.sampled_from(NAMES), st.integers(0, 5)),
        st.tuples(st.just("delete"), st.sampled_from(NAMES)),
        st.tuples(st.just("champion"), st.sampled_from([*NAMES, None])),
    ),
    min_size=1,
    max_size=8,
)


def apply(services: Services, caller: Caller, automation_id: str, op: tuple[Any, ...]) -> None:
    lifecycle, automations = services.lifecycle, services.automations
    kind = op[0]
    if kind == "promote":
        lifecycle.promote(caller, automation_id, PromoteRequest(variant=op[1]))
    elif kind == "clone":
        lifecycle.clone(caller, automation_id, op[1], CloneRequest(name=op[2]))
    elif kind == "weights":
        automations.update(caller, automation_id, AutomationPatch(weights={op[1]: op[2]}))
    elif kind == "delete":
        current = automations.get(caller, automation_id)
        keep = [{"name": v.name} for v in current.variants if v.name != op[1]]
        automations.update(
            caller, automation_id, msgspec.convert({"variants": keep}, AutomationPatch)
        )
    else:
        automations.update(caller, automation_id, AutomationPatch(champion=op[1]))


@SETTINGS
@given(ops=operations)
def test_at_most_one_champion_whatever_happens(
    services: Services, ops: list[tuple[Any, ...]]
) -> None:
    caller, automation_id, _ = setup(services)
    for op in ops:
        # Refused changes (unknown variant, no variant left...) change nothing.
        with contextlib.suppress(AutomationError, msgspec.ValidationError):
            apply(services, caller, automation_id, op)
        out = services.automations.get(caller, automation_id)
        with services.db.read() as session:
            flagged = list(
                session.scalars(
                    sa.select(Variant.name).where(
                        Variant.automation_id == automation_id,
                        Variant.deleted_at.is_(None),
                        Variant.is_champion,
                    )
                )
            )
        assert len(flagged) <= 1
        assert flagged == ([out.champion] if out.champion else [])
        assert out.champion is None or out.champion in {v.name for v in out.variants}


patches = st.fixed_dictionaries(
    {},
    optional={
        "weights": st.dictionaries(st.sampled_from(["a", "b"]), st.integers(1, 9), min_size=1),
        "env": env_maps,
        "timeout_s": st.integers(1, 3600),
        "enabled": st.booleans(),
        "experiment_id": st.sampled_from(["props", "props-2"]),
    },
)


@SETTINGS
@given(patch=patches)
def test_a_partial_update_applied_twice_equals_once(
    services: Services, patch: dict[str, Any]
) -> None:
    caller, automation_id, _ = setup(services)
    body = msgspec.convert(patch, AutomationPatch)
    once = services.automations.update(caller, automation_id, body)
    twice = services.automations.update(caller, automation_id, body)
    strip = {"updated_at", "next_run_at"}
    assert {k: v for k, v in msgspec.to_builtins(once).items() if k not in strip} == {
        k: v for k, v in msgspec.to_builtins(twice).items() if k not in strip
    }
