"""Promised against actual waits: how well GET /contacts/{id}/position
predicts when a queued caller is answered.

Gateways read the position of a sample of the contacts they queue right after
creating them and append `{"id", "promised"}` lines to `LT_PROMISES` (one
file shared by every Locust process: short appends). After the run, each
promise is joined with the contact's events: the actual wait is its first
`contact.assigned` (answered) minus its `contact.created`, both Redis TIME.
Contacts never answered (abandoned, expired) are counted, not scored.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

SAMPLE = float(os.environ.get("LT_PROMISE_SAMPLE", "0.05"))  # of queued contacts


def remember(path: str, cid: str, promised: float) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"id": cid, "promised": promised}) + "\n")


def _p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


def accuracy(path: Path, events: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and p90 absolute error (s) of the promised waits of the sample."""
    promised: dict[str, float] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            row = json.loads(line)
            promised[row["id"]] = float(row["promised"])
    created: dict[str, int] = {}
    answered: dict[str, int] = {}
    for e in events:
        cid = e.get("contact")
        if cid not in promised:
            continue
        if e["type"] == "contact.created":
            created[cid] = int(e["at"])
        elif e["type"] == "contact.assigned" and cid not in answered:
            answered[cid] = int(e["at"])
    actual = {
        c: (answered[c] - created[c]) / 1000 for c in promised if c in answered and c in created
    }
    errors = [abs(actual[c] - promised[c]) for c in actual]
    return {
        "sampled": len(promised),
        "answered": len(errors),
        "never_answered": len(promised) - len(errors),
        "mean_abs_error_s": round(sum(errors) / len(errors), 2) if errors else None,
        "p90_abs_error_s": round(_p90(errors), 2) if errors else None,
        "mean_actual_s": round(sum(actual.values()) / len(actual), 2) if actual else None,
        "mean_promised_s": (
            round(sum(promised[c] for c in actual) / len(actual), 2) if actual else None
        ),
    }
