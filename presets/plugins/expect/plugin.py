"""expect: score a text against checks; the A/B metric for prompt quality.

Every check (each ``contains`` and ``not_contains`` entry, ``regex``,
``min_length``, ``max_length``) passes or fails; ``score`` is the share that
passed (1.0 with no checks). Metrics ``score``, ``passed``, ``checks``,
``length``; output ``failed`` lists the checks that failed.
"""

from __future__ import annotations

import re
from typing import Any


def _checks(text: str, config: dict[str, Any]) -> list[tuple[str, bool]]:
    fold = (lambda s: s) if config.get("case_sensitive") else str.casefold
    haystack = fold(text)
    results = [(f"contains {w!r}", fold(w) in haystack) for w in config.get("contains", [])]
    results += [
        (f"not_contains {w!r}", fold(w) not in haystack) for w in config.get("not_contains", [])
    ]
    if "regex" in config:
        flags = 0 if config.get("case_sensitive") else re.IGNORECASE
        results.append(
            (f"regex {config['regex']!r}", re.search(config["regex"], text, flags) is not None)
        )
    if "min_length" in config:
        results.append((f"min_length {config['min_length']}", len(text) >= config["min_length"]))
    if "max_length" in config:
        results.append((f"max_length {config['max_length']}", len(text) <= config["max_length"]))
    return results


def run(context: Any, config: dict[str, Any]) -> dict[str, Any]:
    text = context.render(config["text"], "text")
    checks = _checks(text, config)
    passed = sum(1 for _, ok in checks if ok)
    score = passed / len(checks) if checks else 1.0
    failed = [name for name, ok in checks if not ok]
    context.metric("score", score)
    minimum = config.get("min_score")
    if minimum is not None and score < minimum:
        raise context.Failed(f"score {score:.3f} is below min_score {minimum}: failed {failed}")
    return {
        "outputs": {"failed": failed},
        "metrics": {"passed": passed, "checks": len(checks), "length": len(text)},
    }
