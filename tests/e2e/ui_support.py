"""A real browser (headless Chromium driven by Playwright) against the real server.

Each UI test module starts one stack (API + worker + bubblewrap, on SQLite) and
one browser; each test gets a fresh browser context, so cookies never leak
between tests. Screenshots go to tests/artifacts/ui/ (or $UI_SHOTS_DIR) for a
person to look at.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Stack, make_stack, require_bwrap
from tests.support import SqliteDatabases, skip_or_fail

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(
    os.environ.get("UI_SHOTS_DIR") or Path(__file__).resolve().parents[1] / "artifacts" / "ui"
)
VIEWPORT = {"width": 1440, "height": 900}  # a laptop screen


@dataclass
class Ui:
    stack: Stack
    browser: Any
    contexts: list[Any] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return self.stack.server.base_url

    def page(self, viewport: dict[str, int] | None = None) -> Any:
        """A new page in a fresh browser context (no cookies)."""
        context = self.browser.new_context(base_url=self.base_url, viewport=viewport or VIEWPORT)
        context.set_default_timeout(15_000)
        self.contexts.append(context)
        return context.new_page()

    def key(self, org: str = "acme", scope: str = "admin") -> str:
        return self.stack.server.new_key(org, scope)

    def signed_in_page(self, key: str, viewport: dict[str, int] | None = None) -> Any:
        page = self.page(viewport)
        sign_in(page, key)
        return page

    def dispatch_at(self, automation_id: str, when: datetime) -> str:
        """Queue a run as if it had been created at ``when`` (the scheduler's batch time
        is the run's creation time), so experiments can have a past; its id."""
        from automation_server.db.models import Automation
        from automation_server.dispatch.service import Batch

        services = self.stack.services
        with services.db.write() as session:
            automation = session.get(Automation, automation_id)
            assert automation is not None
            batch = Batch.load(session, services.queue, [automation], when)
            run = services.dispatcher.enqueue(
                session, automation, trigger="manual", payload={}, batch=batch
            )
            return str(run.id)

    def close_contexts(self) -> None:
        for context in self.contexts:
            context.close()
        self.contexts.clear()


def sign_in(page: Any, key: str, next_path: str = "/ui/automations") -> None:
    page.goto(f"/ui/sign-in?next={next_path}")
    page.fill("#api_key", key)
    page.click("form[action='/ui/sign-in'] button[type=submit]")
    page.wait_for_load_state()


def csrf_token(page: Any) -> str:
    value = page.locator("input[name=csrf_token]").first.get_attribute("value")
    assert value, "the page has no CSRF token"
    return str(value)


def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def _playwright() -> Any:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip_or_fail("Playwright is not installed (pip install playwright==1.65.2)")
    if not CHROMIUM.exists():
        skip_or_fail(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    return sync_playwright


def ui_harness(
    tmp_path_factory: pytest.TempPathFactory, sqlite_databases: SqliteDatabases
) -> Iterator[Ui]:
    """The body of each UI module's fixture: browser first (cheap to skip), then the stack."""
    sync_playwright = _playwright()
    require_bwrap()
    data_dir = tmp_path_factory.mktemp("ui-var")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            for stack in make_stack(data_dir, sqlite_databases.fresh()):
                ui = Ui(stack, browser)
                try:
                    yield ui
                finally:
                    ui.close_contexts()
        finally:
            browser.close()


SCRIPT_REPORTING = """
import os, random, sys, time
from automation_sdk import report
for step in range(int(os.environ.get("STEPS", "1"))):
    print("step", step, flush=True)
    time.sleep(float(os.environ.get("PAUSE", "0")))
jitter = float(os.environ.get("JITTER", "0")) * (random.random() - 0.5)
report.metric("score", float(os.environ.get("SCORE", "1")) + jitter)
report.output("variant", os.environ["AUTOMATION_VARIANT"])
print("done", flush=True)
if random.random() < float(os.environ.get("FAIL_P", "0")):
    sys.exit(1)
"""


_names = itertools.count(1)


def unique(prefix: str) -> str:
    """Names unique within a module's shared stack."""
    return f"{prefix}-{next(_names)}"


def text_of(page: Any, selector: str) -> str:
    return re.sub(r"\s+", " ", str(page.locator(selector).inner_text())).strip()
