"""The load-test workspace: the demo bank's routing with short wrap-ups (the day
is compressed) and as many agents as asked, their skills drawn like the demo's."""

from __future__ import annotations

import msgspec

from router.demo import demo_agents, demo_config

WORKSPACE = "loadtest"
# Locust's name for a creation the pool refused as queue full (its own outcome).
REFUSED = "POST /contacts (refused: queue full)"


def config(compress: float) -> dict[str, object]:
    """The demo config with wrap-ups and timeouts divided by `compress` (time runs faster)."""
    doc = msgspec.to_builtins(demo_config())
    for ch in doc["channels"].values():
        ch["wrap_up"] = round(ch.get("wrap_up", 0.0) / compress, 3)
        ch["offer_timeout"] = max(5.0, round(ch.get("offer_timeout", 20.0) / compress, 3))
    return doc  # type: ignore[no-any-return]


def agents(n: int) -> list[tuple[str, dict[str, object]]]:
    demo = demo_agents()
    out = []
    for i in range(n):
        _, a = demo[i % len(demo)]
        out.append(
            (
                f"lt-a{i:04d}",
                {
                    "skills": dict(a.skills),
                    "capacity": a.capacity,
                    "team": a.team,
                    "supervisor": a.supervisor,
                },
            )
        )
    return out
