"""What the history report tests share: the service with an archive, a
workspace config whose pools have known service-level thresholds and an SLA
ladder, and reading a report over HTTP."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.support.client import SUP, small_config, supervisor_headers

CARDS_SL, LOANS_SL = 1.0, 20.0  # service-level thresholds (seconds)


def report_config(tz: str) -> dict[str, Any]:
    cfg = small_config(sla="std")
    cfg["timezone"] = tz
    cfg["surveys"] = {"kinds": ["csat", "nps"]}
    cfg["skills"] = ["cards", "loans", "fx"]
    cfg["channels"]["chat"]["max_wait"] = 1.0  # an unanswered chat expires after 1 s
    cfg["pools"]["cards"]["service_level"] = {"percent": 80, "seconds": CARDS_SL}
    cfg["pools"]["loans"]["service_level"] = {"percent": 80, "seconds": LOANS_SL}
    # nobody has the fx skill: contacts wait there until they move on or expire
    cfg["pools"]["fx"] = {"skills": [{"skill": "fx", "min": 1}], "channels": ["voice", "chat"]}
    cfg["rules"] = [
        {"name": "loan", "when": {"intent": ["loan"]}, "stages": [{"pools": ["loans"]}]},
        {"name": "fx", "when": {"intent": ["fx"]}, "stages": [{"pools": ["fx"]}]},
        {
            "name": "mortgage",
            "when": {"intent": ["mortgage"]},
            "stages": [{"pools": ["fx"]}, {"pools": ["cards"], "after": 0.3}],
        },
    ]
    notify = {"do": "notify", "to": ["role:supervisor"]}
    cfg["sla_policies"] = {
        "std": {
            "answer": {
                "target": 1.0,
                "ladder": [
                    {"at": 0.5, "actions": [notify]},
                    {"at": 1, "actions": [{"do": "boost", "seconds": 10}]},
                    {"after": 0.2, "actions": [notify]},
                ],
            }
        }
    }
    return cfg


def sup_of(*teams: str) -> dict[str, str]:
    return supervisor_headers("sup1", list(teams))


async def get_report(api: Any, ws: str, report: str, headers: Any = SUP, **q: str) -> Any:
    """The report; a 503 (the replica still making the archive's schema, as just
    after start) is retried after its Retry-After, for up to 10 s."""
    for _ in range(10):
        r = await api.get(f"/v1/workspaces/{ws}/reports/{report}", params=q, headers=headers)
        if r.status != 503:
            break
        await asyncio.sleep(min(1.0, float(r.headers.get("Retry-After", "1"))))
    assert r.status == 200, await r.text()
    return await r.json()
