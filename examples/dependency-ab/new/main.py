"""Format a small table with tabulate; report how long it took and which version ran."""

import time

import tabulate
from automation_sdk import context, report

rows = context.payload.get("rows") or [["alpha", 1], ["beta", 22], ["gamma", 333]]
start = time.perf_counter()
for _ in range(2000):
    text = tabulate.tabulate(rows, headers=["name", "n"])
report.metric("format_ms", (time.perf_counter() - start) * 1000)
report.output("tabulate", tabulate.__version__)
print(text)
