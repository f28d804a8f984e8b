"""Automation SDK.

Inside a run (standard library only)::

    from automation_sdk import context, report
    report.metric("score", 0.93)
    report.output("summary", f"handled {context.payload.get('ticket')}")

Outside, ``automation_sdk.client`` is the HTTP client and ``automation`` the CLI;
they are imported only when used, so the in-run part needs nothing installed.
"""

__version__ = "0.1.0"
