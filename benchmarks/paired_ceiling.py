"""Two builds' Redis CPU per lifecycle side by side: `benchmarks.redis_ceiling`
from each tree at the same time, each on its own redis-server.

    git worktree add --detach /tmp/base main
    .venv/bin/python -m benchmarks.paired_ceiling --base /tmp/base [--rounds 6]

`benchmarks.paired` compares whole stacks at 150 lifecycles/s, where a router's
share dominates and Redis' fixed costs (its cron, 2,000 idle desktops'
connections) are spread over few lifecycles: a change of 10 µs in the scripts
is 1% there. This drives the scripts alone (the routers' engine in the
benchmark process, no HTTP), open loop at `--rate`, so the scripts' cost is
most of what Redis spends. Both builds run in the same window; which starts
first swaps every round; the ratio (this tree over the base) is read per round,
and the median printed. The builds must share the data layout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from tests.support.procs import ROOT


def _start(tree: Path, a: argparse.Namespace, out: Path) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "benchmarks.redis_ceiling", "--agents", str(a.agents),
           "--rate", str(a.rate), "--duration", str(a.duration), "--warmup", str(a.warmup),
           "--workspace", a.workspace, "--json", str(out)]  # fmt: skip
    if a.archived:
        cmd.append("--archived")
    env = {"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"}
    return subprocess.Popen(cmd, cwd=tree, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env=env)  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", type=Path, required=True, help="the other build's source tree")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--rate", type=float, default=600.0, help="lifecycles/s, each build")
    p.add_argument("--agents", type=int, default=2000)
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--warmup", type=float, default=5.0)
    p.add_argument("--workspace", choices=["loadtest", "demo"], default="demo")
    p.add_argument("--archived", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    trees = {"base": a.base.resolve(), "this": ROOT}
    print(f"this tree {ROOT} against base {trees['base']}: {a.workspace} workspace"
          f"{' archived' if a.archived else ''}, {a.rate:.0f} lifecycles/s each, "
          f"{a.agents} agents each")  # fmt: skip
    rounds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(a.rounds):
            order = ["base", "this"] if n % 2 == 0 else ["this", "base"]
            files = {k: Path(tmp) / f"{k}-{n}.json" for k in order}
            procs = {k: _start(trees[k], a, files[k]) for k in order}
            for k, proc in procs.items():
                _, err = proc.communicate()
                if proc.returncode != 0:
                    raise RuntimeError(f"{k}: redis_ceiling failed:\n{err[-3000:]}")
            got = {k: json.loads(files[k].read_text()) for k in order}
            us = {k: float(got[k]["redis_cpu_us_per_lifecycle"]) for k in order}
            cmds = {k: float(got[k]["redis_commands_per_lifecycle"]) for k in order}
            ratio = us["this"] / us["base"]
            rounds.append({"round": n, "us": us, "commands": cmds, "ratio": ratio})
            print(f"  round {n}: Redis µs/lifecycle base {us['base']:.1f}, this {us['this']:.1f} "
                  f"(x{ratio:.3f}); commands {cmds['base']:.1f} -> {cmds['this']:.1f}")  # fmt: skip
    med = statistics.median(r["ratio"] for r in rounds)
    print(f"median of rounds, this ÷ base: Redis x{med:.3f}")
    if a.out:
        a.out.write_text(json.dumps({"rounds": rounds, "median": med}, indent=2) + "\n")


if __name__ == "__main__":
    main()
