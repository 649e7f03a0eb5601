"""Redis failover: what the write guarantee buys, and how long creations fail.

Runs the failover scenario of the high-availability test
(tests/support/failover_runs.py: a Sentinel group of a primary, two replicas and
three sentinels; two router processes; a gateway creating 8 contacts/s and 8
agent desktops accepting and completing them; the primary killed with SIGKILL
6 s in and restarted at its address 8 s later) `--runs` times with
`ROUTER_REDIS_WAIT_REPLICAS=1` and with 0, with the replicas in step and with the
replication stream held back for `--lag` seconds before the kill (the replicas
fall behind, as over a slow link), and reports per setting:

- acknowledged writes lost: contacts answered 2xx that are gone, accepts
  answered 2xx without their assignment in the record, completions answered
  2xx whose contact is not completed;
- the unavailability window: seconds from the kill to the first creation
  answered 2xx (a probe creates a contact every 100 ms without retries),
  p50 and max over the runs; the sentinels' promotion time beside it; and how
  long creations failed in all after the kill (with `WAIT 1` they also fail while
  no replica is in sync with the new primary yet) and when the last one did.

    .venv/bin/python -m benchmarks.failover            # 5 runs each
    .venv/bin/python -m benchmarks.failover --runs 1
    .venv/bin/python -m benchmarks.failover --cluster  # a shard's primary instead

`--deploy-timings` runs `WAIT 1` with the sentinels timed as in deploy/
(`down-after-milliseconds` 5000, `failover-timeout` 30000) instead of the test's
1000 and 10000.

`--cluster` runs the same load against a Redis Cluster of three primaries with
two replicas each (`cluster-node-timeout` 1000 ms) and kills the primary that
holds the workspace, with `WAIT 1` and `WAIT 0`, the replicas in step.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import tempfile
from pathlib import Path
from typing import Any

from tests.support.failover_runs import failover_under_load


def lost(out: dict[str, Any]) -> dict[str, int]:
    final, events = out["final"], out["events"]
    assigned = {(e["contact"], e.get("agent")) for e in events if e["type"] == "contact.assigned"}
    acks = [(cid, a, agent) for cid, done in out["acted"].items() for a, agent in done]
    accepts = [(cid, agent) for cid, a, agent in acks if a == "accept"]
    completions = [cid for cid, a, _ in acks if a == "complete" and cid in final]
    return {
        "contacts": sum(1 for state in final.values() if state == 404),
        "accepts": sum(1 for pair in accepts if pair not in assigned),
        "completions": sum(1 for cid in completions if final[cid] != "completed"),
        "acknowledged": len(out["created"]) + len(acks),
    }


async def one_setting(
    runs: int,
    wait: int,
    lag: float,
    cluster: bool = False,
    timings: tuple[int, int] = (1000, 10000),
) -> dict[str, Any]:
    rows = []
    for i in range(runs):
        with tempfile.TemporaryDirectory(prefix="failover-") as tmp:
            out = await failover_under_load(
                Path(tmp), wait_replicas=wait, lag=lag, cluster=cluster, timings=timings
            )
        row = {
            "lost": lost(out),
            "unavailable_s": round(out["unavailable_s"], 2),
            "failed_s_total": round(out["failed_after"][0], 1),
            "last_failure_s": round(out["failed_after"][1], 1),
            "slowest_probe_s": round(out["slowest_probe_s"], 2),
            "promoted_s": round(out["promoted_s"], 2),
            "webhooks_missing": len(out["webhooks_missing"]),
            "statuses": {str(k): v for k, v in out["statuses"].items()},
        }
        print(f"WAIT {wait} lag {lag} run {i + 1}: {json.dumps(row)}", flush=True)
        rows.append(row)
    windows = [r["unavailable_s"] for r in rows]
    return {
        "runs": rows,
        "unavailable_p50_s": statistics.median(windows),
        "unavailable_max_s": max(windows),
        "lost_total": {
            k: sum(r["lost"][k] for r in rows)
            for k in ("contacts", "accepts", "completions", "acknowledged")
        },
    }


async def run(runs: int, lag: float, cluster: bool, deploy_timings: bool) -> dict[str, Any]:
    results: dict[str, Any] = {}
    if cluster:
        for wait in (1, 0):
            results[f"wait_{wait}_cluster"] = await one_setting(runs, wait, 0.0, cluster=True)
        return results
    if deploy_timings:  # the deploy files' sentinels, WAIT 1, replicas in step
        results["wait_1_deploy_timings"] = await one_setting(runs, 1, 0.0, timings=(5000, 30000))
        return results
    for behind in (0.0, lag):
        for wait in (1, 0):
            results[f"wait_{wait}_lag_{behind}"] = await one_setting(runs, wait, behind)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--lag", type=float, default=0.9, help="seconds the replicas fall behind before the kill"
    )
    parser.add_argument("--cluster", action="store_true", help="a Redis Cluster's shard")
    parser.add_argument(
        "--deploy-timings",
        action="store_true",
        help="sentinels as in deploy/: down-after 5000 ms, failover-timeout 30000 ms",
    )
    args = parser.parse_args()
    results = asyncio.run(run(args.runs, args.lag, args.cluster, args.deploy_timings))
    results["machine"] = f"{platform.node()} {platform.machine()} {platform.python_version()}"
    print(json.dumps(results, indent=1))
    for key, r in results.items():
        if not key.startswith("wait_"):
            continue
        print(
            f"{key}: lost {r['lost_total']}; unavailable p50 {r['unavailable_p50_s']} s, "
            f"max {r['unavailable_max_s']} s"
        )


if __name__ == "__main__":
    main()
