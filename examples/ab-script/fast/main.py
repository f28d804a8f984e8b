"""Challenger: handle the payload's items in one batch."""

import time

from automation_sdk import context, report

items = context.payload.get("items", list(range(20)))
start = time.perf_counter()
time.sleep(0.005)  # stands in for one batched call
total = sum(int(item) for item in items)
elapsed_ms = (time.perf_counter() - start) * 1000

print(f"variant {context.variant}: {len(items)} items, total {total}")
report.metric("latency_ms", elapsed_ms)
report.metric("items", len(items))
report.output("total", total)
