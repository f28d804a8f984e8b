"""Dashboard sign-in, session cookie, CSRF, scopes and organization scoping, in Chromium."""

from __future__ import annotations

import html
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import update

from automation_server.db.models import ApiKey
from tests.e2e.ui_support import Ui, csrf_token, screenshot, sign_in, text_of, ui_harness, unique
from tests.support import SqliteDatabases


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory, sqlite_databases: SqliteDatabases) -> Iterator[Ui]:
    yield from ui_harness(tmp_path_factory, sqlite_databases)


def make_automation(ui: Ui, http: Any = None, **body: Any) -> dict[str, Any]:
    http = http or ui.stack.http
    ref = http.post("/v1/uploads", content=_tarball()).json()["ref"]
    body.setdefault("name", unique("auto"))
    body.setdefault("variants", [{"name": "control", "weight": 1, "tarball": ref}])
    r = http.post("/v1/automations", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def _tarball() -> bytes:
    from tests.support import targz

    return targz({"main.py": "print('hi')\n"})


def session_cookie(page: Any) -> dict[str, Any] | None:
    return next((c for c in page.context.cookies() if c["name"] == "as_session"), None)


def test_signs_in_and_lists_automations_created_through_the_api(ui: Ui) -> None:
    ref = ui.stack.upload({"main.py": "print(1)\n"})
    created = ui.stack.create(
        name=unique("nightly-triage"),
        trigger={"type": "cron", "schedule": "0 9 * * 1-5", "timezone": "Europe/Berlin"},
        experiment_id=unique("triage-exp"),
        variants=[
            {"name": "control", "weight": 70, "tarball": ref},
            {"name": "terse", "weight": 30, "tarball": ref},
        ],
    )
    key = ui.key()
    page = ui.page()
    page.goto("/ui/automations")
    assert "/ui/sign-in" in page.url  # not signed in: sent to the form
    screenshot(page, "sign-in")
    sign_in(page, key)
    assert page.url.endswith("/ui/automations")
    row = f"tr[data-automation='{created['id']}']"
    assert created["name"] in text_of(page, row)
    assert "cron 0 9 * * 1-5 (Europe/Berlin)" in text_of(page, row)
    assert "control 70 (70%)" in text_of(page, row) and "terse 30 (30%)" in text_of(page, row)
    next_run = page.locator(f"{row} time").first
    assert "UTC" in (next_run.get_attribute("title") or "")
    assert text_of(page, f"{row} time").startswith("in ")
    screenshot(page, "automations")

    cookie = session_cookie(page)
    assert cookie is not None
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/ui"
    assert not cookie["secure"]  # plain http here; https sets Secure
    assert key not in cookie["value"] and key.split("_")[2] not in cookie["value"]
    assert page.evaluate("document.cookie") == ""  # HttpOnly: invisible to scripts

    page.click("form[action='/ui/sign-out'] button")
    assert "/ui/sign-in" in page.url
    assert session_cookie(page) is None
    page.goto("/ui/automations")
    assert "/ui/sign-in" in page.url


def test_refuses_a_wrong_key_at_sign_in(ui: Ui) -> None:
    page = ui.page()
    for wrong in ("ak_deadbeef_notarealsecretatall", "not a key", ui.key()[:-3] + "xyz"):
        sign_in(page, wrong)
        assert "/ui/sign-in" in page.url
        assert "not accepted" in text_of(page, "p.error")
        assert session_cookie(page) is None
    response = page.goto("/ui/automations")
    assert response is not None and "/ui/sign-in" in page.url


def test_revoked_key_ends_the_session(ui: Ui) -> None:
    key = ui.key(scope="read")
    page = ui.signed_in_page(key)
    assert page.url.endswith("/ui/automations")
    prefix = key.split("_")[1]
    with ui.stack.services.db.write() as session:
        session.execute(
            update(ApiKey).where(ApiKey.prefix == prefix).values(revoked_at=datetime.now(UTC))
        )
    page.goto("/ui/runs")
    assert "/ui/sign-in" in page.url


def test_rejects_a_form_posted_without_its_csrf_token(ui: Ui) -> None:
    automation = make_automation(ui)
    page = ui.signed_in_page(ui.key())
    page.goto(f"/ui/automations/{automation['id']}")
    url = f"/ui/automations/{automation['id']}/enabled"
    for fields in ({"enabled": "false"}, {"enabled": "false", "csrf_token": "forged"}):
        response = page.request.post(url, form=fields, max_redirects=0)
        assert response.status == 403, response.text()
        assert "did not come from a page of this dashboard" in html.unescape(response.text())
        assert ui.stack.http.get(f"/v1/automations/{automation['id']}").json()["enabled"]
    # The same form with the page's token goes through: the check above can fail.
    token = csrf_token(page)
    response = page.request.post(
        url, form={"enabled": "false", "csrf_token": token}, max_redirects=0
    )
    assert response.status == 303
    assert not ui.stack.http.get(f"/v1/automations/{automation['id']}").json()["enabled"]


def test_another_organizations_ids_show_not_found(ui: Ui) -> None:
    other_http = ui.stack.server.client(ui.key("globex"))
    theirs = make_automation(ui, other_http, name="their-secret-automation")
    run = other_http.post(f"/v1/automations/{theirs['id']}/dispatch", json={}).json()
    page = ui.signed_in_page(ui.key("acme"))
    for path in (
        f"/ui/automations/{theirs['id']}",
        f"/ui/runs/{run['id']}",
        f"/ui/runs/{run['id']}/log",
        "/ui/automations/00000000-0000-7000-8000-000000000000",
    ):
        response = page.goto(path)
        assert response is not None and response.status == 404, path
        assert "their-secret-automation" not in page.content()
    page.goto(f"/ui/automations/{theirs['id']}")
    assert text_of(page, "h1") == "Not found"
    screenshot(page, "not-found")
    # Nor do their automations show in our list.
    page.goto("/ui/automations")
    assert "their-secret-automation" not in page.content()


def test_read_only_key_reads_pages_but_cannot_change_anything(ui: Ui) -> None:
    automation = make_automation(ui)
    page = ui.signed_in_page(ui.key(scope="read"))
    page.goto(f"/ui/automations/{automation['id']}")
    assert "Read-only key" in text_of(page, ".banner.readonly")
    assert page.locator("#dispatch-form button[type=submit]").is_disabled()
    screenshot(page, "read-only")
    response = page.request.post(
        f"/ui/automations/{automation['id']}/dispatch",
        form={"csrf_token": csrf_token(page)},
        max_redirects=0,
    )
    assert response.status == 403
    assert "read-only (scope 'read')" in html.unescape(response.text())
    runs = ui.stack.http.get("/v1/runs", params={"automation_id": automation["id"]}).json()
    assert runs["items"] == []
