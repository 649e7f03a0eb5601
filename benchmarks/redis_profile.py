"""Redis time per full lifecycle, by script and command, at one offered rate.

Starts a private redis-server and `--replicas` routers with `--agents` agent
desktops (the capacity search's set-up), switches SLOWLOG to log every command
(`slowlog-log-slower-than 0`), runs one open-loop step of
`benchmarks/lifecycle.py` and prints Redis' own execution time per completed
lifecycle, FCALL and EVALSHA calls named by function or script. Commands run inside a script are
logged as well, so they are listed apart (their time is already in the
script's). Logging every command costs Redis time itself: read the shares, not
the absolute sum.

    .venv/bin/python -m benchmarks.redis_profile --rate 300 --agents 5000
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import redis

from benchmarks.capacity import setup, step
from router.api.ratelimit import COUNT_LUA
from router.routing.library import Scripts
from router.runtime.settings import DEMO_JWT_SECRET
from router.security.audit.sealer import SEAL_LUA
from router.store.leases import LEASE_LUA, RELEASE_LUA
from router.store.local import LocalRedis
from tests.support.procs import start_replicas, stop_replicas, wait_ready


def script_names(url: str) -> dict[str, str]:
    from hashlib import sha1

    names = {s.sha: n for n, s in Scripts().scripts.items()}
    for name, text in (("audit seal", SEAL_LUA), ("lease", LEASE_LUA),
                       ("lease release", RELEASE_LUA)):  # fmt: skip
        names[sha1(text.encode()).hexdigest()] = name
    names[sha1(COUNT_LUA.encode()).hexdigest()] = "rate limit counts"
    return names


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=float, default=300.0)
    p.add_argument("--agents", type=int, default=5000)
    p.add_argument("--replicas", type=int, default=1)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--within", action="store_true", help="commands each script runs, per call")
    a = p.parse_args()
    local = LocalRedis()
    procs = start_replicas(local.url, Path(tempfile.mkdtemp(prefix="redis-profile-")),
                           a.replicas, {"ROUTER_LOG_LEVEL": "WARNING"})  # fmt: skip
    try:
        asyncio.run(wait_ready(procs))
        asyncio.run(setup(local.url, a.agents))
        time.sleep(1.5)
        r = redis.Redis.from_url(local.url)
        r.config_set("slowlog-log-slower-than", 0)
        r.config_set("slowlog-max-len", 2_000_000)
        r.slowlog_reset()
        run = argparse.Namespace(agents=a.agents, duration=a.duration, warmup=3.0, handle=0.0,
                                 jwt_secret=DEMO_JWT_SECRET)  # fmt: skip
        res = step(run, [x.url for x in procs], a.rate, "rp", {}, local.url)
        entries = r.slowlog_get(2_000_000)
        names = script_names(local.url)
        scripts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        inner: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        fired: dict[str, int] = defaultdict(int)  # timer kinds in the fire calls' arguments
        # commands a script runs are logged before the script itself (newest first here)
        within: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
        pending: list[tuple[str, int]] = []
        for e in reversed(entries):
            cmd = e["command"].decode(errors="replace").split(" ")
            name = cmd[0].upper()
            into = scripts if name in ("EVALSHA", "EVAL", "FCALL") else inner
            if name == "EVALSHA":
                name = names.get(cmd[1], "script " + cmd[1][:8])
            elif name == "FCALL":  # routing functions: `<name>_<digest>`
                name = cmd[1].rsplit("_", 1)[0]
                if name == "fire":  # FCALL fire 3 <3 keys> member due ... (SLOWLOG keeps 32)
                    for member in cmd[6::2]:
                        fired[member.split("|", 1)[0]] += 1
            into[name][0] += 1
            into[name][1] += int(e["duration"])
            if into is inner:
                pending.append((name, int(e["duration"])))
            else:
                for cmd_name, us in pending:
                    within[name][cmd_name][0] += 1
                    within[name][cmd_name][1] += us
                pending = []
        # every lifecycle of the run, warm-up and tail included, ends in one complete
        done = max(1, scripts.get("complete", [0])[0])
        print(f"{a.rate:.0f}/s offered, {a.agents} agents, {a.replicas} router(s): "
              f"{done} lifecycles; Redis µs per lifecycle "
              f"(create p99 {res.get('create', {}).get('p99_ms')} ms)")  # fmt: skip
        for title, table in (
            ("scripts", scripts),
            ("other commands (mostly inside the scripts above)", inner),
        ):
            total = sum(us for _, us in table.values())
            print(f"\n| {title} | calls / lifecycle | µs per call | µs / lifecycle | share |")
            print("|---|---:|---:|---:|---:|")
            for name, (n, us) in sorted(table.items(), key=lambda kv: -kv[1][1])[:15]:
                print(f"| {name} | {n / done:.2f} | {us / n:.1f} | {us / done:.1f} "
                      f"| {us / max(1, total):.1%} |")  # fmt: skip
        if a.within:
            for script, cmds in sorted(within.items(), key=lambda kv: -scripts[kv[0]][1]):
                calls = max(1, scripts[script][0])
                print(
                    f"\n{script}, commands per call (µs per call):",
                    ", ".join(
                        f"{c} {n / calls:.1f} ({us / calls:.0f})"
                        for c, (n, us) in sorted(cmds.items(), key=lambda kv: -kv[1][1])
                    ),
                )
        if fired:
            print(
                "\ntimers fired, by kind (first ~13 a call, as SLOWLOG keeps them):",
                ", ".join(f"{k} {n / done:.2f}/lifecycle" for k, n in sorted(fired.items())),
            )
    finally:
        stop_replicas(procs)
        local.stop()


if __name__ == "__main__":
    main()
