"""Control: handle the payload's items one at a time (the current way)."""

import time

from automation_sdk import context, report

items = context.payload.get("items", list(range(20)))
start = time.perf_counter()
total = 0
for item in items:
    time.sleep(0.002)  # stands in for one call per item
    total += int(item)
elapsed_ms = (time.perf_counter() - start) * 1000

print(f"variant {context.variant}: {len(items)} items, total {total}")
report.metric("latency_ms", elapsed_ms)
report.metric("items", len(items))
report.output("total", total)
