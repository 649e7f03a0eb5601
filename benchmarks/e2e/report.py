"""The report: medians over rounds, Markdown with the targets, Redis time by command."""

from __future__ import annotations

import argparse
import statistics
from typing import TYPE_CHECKING, Any

from benchmarks.e2e.common import TARGET_P99_MS, TARGET_SHARE

if TYPE_CHECKING:
    from benchmarks.e2e.bench import Bench


def redis_breakdown(info: dict[str, Any], requests: int, top: int = 12) -> str:
    """Redis time per request by command (commands run inside scripts included)."""
    stats = info.get("commandstats", {})
    lines = [
        "Redis time per request by command (script-invoked commands included; "
        "evalsha's own time includes theirs):"
    ]
    for cmd, v in sorted(stats.items(), key=lambda kv: -kv[1]["usec"])[:top]:
        lines.append(
            f"  {cmd:<14} {v['calls'] / requests:6.2f} calls/req "
            f"{v['usec'] / requests:8.1f} µs/req  ({v['usec'] / max(1, v['calls']):.1f} "
            f"µs/call)"
        )
    return "\n".join(lines)


def _median(rows: list[dict[str, Any]], key: str) -> float:
    value: float = statistics.median(r[key] for r in rows)
    return value


def summarize(bench: Bench) -> dict[str, Any]:
    """Medians over rounds per (path, loader) and the ratios to hello world."""
    out: dict[str, Any] = {"paths": {}, "ratios": {}, "evalsha": {}, "paired": {}, "c1": {}}
    for path in ("hello", "admission", "freed"):
        for tool in bench.tools:
            rows = [r for r in bench.results if r.get("path") == path and r.get("loader") == tool]
            if not rows:
                continue
            out["paths"][f"{path}/{tool}"] = {
                "rps": _median(rows, "rps"),
                "p50_ms": _median(rows, "p50_ms"),
                "p90_ms": _median(rows, "p90_ms"),
                "p99_ms": _median(rows, "p99_ms"),
                "rps_min": min(r["rps"] for r in rows),
                "rps_max": max(r["rps"] for r in rows),
                "server_cores": statistics.median(
                    r["cpu"].get("router", r["cpu"].get("hello", 0)) for r in rows
                ),
                "redis_cores": statistics.median(r["cpu"]["redis"] for r in rows),
                "loadgen_cores": statistics.median(r["cpu"]["loadgen"] for r in rows),
                "other_cores": statistics.median(r["cpu"]["other"] for r in rows),
                "server_cpu_us_per_req": _median(rows, "server_cpu_us_per_req"),
                "redis_cpu_us_per_req": _median(rows, "redis_cpu_us_per_req"),
                "rounds": len(rows),
            }
    for tool in bench.tools:
        h = out["paths"].get(f"hello/{tool}")
        for path in ("admission", "freed"):
            p = out["paths"].get(f"{path}/{tool}")
            if h and p:
                out["ratios"][f"{path}/{tool}"] = round(p["rps"] / h["rps"], 3)
    for path in ("admission", "freed"):
        rows = [r for r in bench.results if r.get("path") == f"paired-{path}"]
        if rows:
            out["paired"][path] = {
                "ratio": statistics.median(r["paired_ratio"] for r in rows),
                "rps": _median(rows, "rps"),
                "p50_ms": _median(rows, "p50_ms"),
                "p99_ms": _median(rows, "p99_ms"),
                "hello_rps": statistics.median(r["hello"]["rps"] for r in rows),
                "hello_p99_ms": statistics.median(r["hello"]["p99_ms"] for r in rows),
                "ratios": [r["paired_ratio"] for r in rows],
            }
    for path in ("hello", "admission", "freed"):
        rows = [r for r in bench.results if r.get("path") == f"c1-{path}"]
        if rows:
            out["c1"][path] = {
                k: _median(rows, k) for k in ("rps", "min_ms", "p10_ms", "p50_ms", "p99_ms")
            }
            out["c1"][path]["loader"] = rows[0]["loader"]
    evs = [r for r in bench.results if r.get("path") == "evalsha"]
    for k in ("sequential", "concurrent", "batched"):
        if evs:
            out["evalsha"][k] = {
                "ops_per_s": statistics.median(e[k]["ops_per_s"] for e in evs),
                "p50_us": statistics.median(e[k]["p50_us"] for e in evs),
                "p99_us": statistics.median(e[k]["p99_us"] for e in evs),
                "concurrency": evs[0][k]["concurrency"],
            }
    return out


def markdown(bench: Bench, meta: dict[str, Any], summary: dict[str, Any]) -> str:
    """The report: the run, throughput and latency, the ratios to hello world against
    the target, one request at a time, EVALSHA, Redis INFO per run, every run."""
    lines = [
        *_run_section(bench.args, meta),
        *_throughput_section(summary),
        *_ratios_section(summary),
        *_c1_section(summary),
        *_evalsha_section(summary),
        *_redis_section(bench.results),
        *_per_run_section(bench.results),
    ]
    return "\n".join(lines) + "\n"


def _run_section(a: argparse.Namespace, meta: dict[str, Any]) -> list[str]:
    m, v = meta["machine"], meta["versions"]
    return [
        "## Run",
        "",
        f"- date: {m['date']}",
        f"- machine: nproc={m['nproc']}, {m['cpu']}, {m['memory']}, kernel {m['kernel']}, "
        f"loadavg at start {m['loadavg_at_start']}",
        f"- Redis {meta['redis_version']} (private redis-server, no persistence); "
        + ", ".join(f"{k} {val}" for k, val in v.items()),
        f"- command: `{meta['command']}`",
        f"- concurrency {a.concurrency}, {a.duration:g} s measured after {a.warmup:g} s warm-up, "
        f"{a.rounds} round(s) (medians; rps range in brackets); admission: "
        f"{'auto' if a.agents <= 0 else a.agents} ready agents (one voice contact each; "
        f"see the per-run table for the matched share)",
    ]


def _throughput_section(summary: dict[str, Any]) -> list[str]:
    L = [
        "",
        "## Throughput and latency",
        "",
        "| path | loader | req/s | p50 ms | p90 ms | p99 ms | vs hello | server CPU (cores) "
        "| server µs/req | redis CPU | redis µs/req | loader CPU | other procs CPU |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, p in summary["paths"].items():
        path, tool = key.split("/")
        ratio = summary["ratios"].get(key)
        rng = f" [{p['rps_min']:.0f}-{p['rps_max']:.0f}]" if p["rounds"] > 1 else ""
        L.append(
            f"| {path} | {tool} | {p['rps']:.0f}{rng} | {p['p50_ms']:.2f} | {p['p90_ms']:.2f} "
            f"| {p['p99_ms']:.2f} | {'' if ratio is None else f'{100 * ratio:.0f}%'} "
            f"| {p['server_cores']:.2f} | {p['server_cpu_us_per_req']:.0f} "
            f"| {p['redis_cores']:.2f} | {p['redis_cpu_us_per_req']:.0f} "
            f"| {p['loadgen_cores']:.2f} | {p['other_cores']:.2f} |"
        )
    return L


def _ratios_section(summary: dict[str, Any]) -> list[str]:
    L = [
        "",
        "## Ratios and target",
        "",
        f"Target: admission ≥ {100 * TARGET_SHARE:.0f}% of hello world with p99 < "
        f"{TARGET_P99_MS:g} ms.",
        "",
        "| ratio | loader | value | p99 ms | target met |",
        "|---|---|---:|---:|---|",
    ]
    for key, ratio in summary["ratios"].items():
        path, tool = key.split("/")
        p99 = summary["paths"][key]["p99_ms"]
        met = ""
        if path == "admission":
            met = "yes" if ratio >= TARGET_SHARE and p99 < TARGET_P99_MS else "no"
        L.append(f"| {path} / hello | {tool} | {100 * ratio:.1f}% | {p99:.2f} | {met} |")
    for path, p in summary["paired"].items():
        met = ""
        if path == "admission":
            met = "yes" if p["ratio"] >= TARGET_SHARE and p["p99_ms"] < TARGET_P99_MS else "no"
        L.append(
            f"| {path} / hello, paired slices (hello {p['hello_rps']:.0f} req/s, "
            f"{path} {p['rps']:.0f} req/s) | python | {100 * p['ratio']:.1f}% "
            f"| {p['p99_ms']:.2f} | {met} |"
        )
    return L


def _c1_section(summary: dict[str, Any]) -> list[str]:
    if not summary["c1"]:
        return []
    h = summary["c1"].get("hello")
    L = [
        "",
        "## One request at a time (concurrency 1)",
        "",
        "| path | loader | req/s | min ms | p10 ms | p50 ms | p99 ms | p10 vs hello |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for path, c in summary["c1"].items():
        rel = f"{c['p10_ms'] / h['p10_ms']:.1f}x" if h and h["p10_ms"] else ""
        L.append(
            f"| {path} | {c['loader']} | {c['rps']:.0f} | {c['min_ms']:.3f} "
            f"| {c['p10_ms']:.3f} | {c['p50_ms']:.3f} | {c['p99_ms']:.2f} | {rel} |"
        )
    return L


def _evalsha_section(summary: dict[str, Any]) -> list[str]:
    if not summary["evalsha"]:
        return []
    L = [
        "",
        "## EVALSHA `return 1` (redis-py asyncio, hiredis, uvloop)",
        "",
        "| mode | callers | ops/s | p50 µs | p99 µs |",
        "|---|---:|---:|---:|---:|",
    ]
    for k, e in summary["evalsha"].items():
        L.append(
            f"| {k} | {e['concurrency']} | {e['ops_per_s']:.0f} | {e['p50_us']:.0f} "
            f"| {e['p99_us']:.0f} |"
        )
    return L


def _redis_section(results: list[dict[str, Any]]) -> list[str]:
    L = [
        "",
        "## Redis INFO per run",
        "",
        "| round | path | loader | instantaneous_ops_per_sec (mid-run) | EVALSHA calls/s "
        "| EVALSHA µs/call | commands/request | connections opened | used_memory after |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if r.get("path") not in ("admission", "freed", "evalsha"):
            continue
        ri = r["redis"]
        secs = r["cpu"]["wall_s"]
        per_req = ""
        if r.get("requests"):
            per_req = f"{ri['total_commands_processed'] / r['requests']:.1f}"
        L.append(
            f"| {r['round']} | {r['path']} | {r.get('loader', 'redis-py')} "
            f"| {ri['instantaneous_ops_per_sec']} | {ri['evalsha_calls'] / secs:.0f} "
            f"| {ri['evalsha_usec_per_call']:.1f} | {per_req} | {ri.get('connections_opened', '')} "
            f"| {ri['used_memory_human']} |"
        )
    return L


def _per_run_section(results: list[dict[str, Any]]) -> list[str]:
    outcomes = [
        r
        for r in results
        if r.get("path") in ("admission", "freed", "paired-admission", "paired-freed")
    ]
    L = [
        "",
        "## Per run",
        "",
        "| round | path | loader | req/s | p99 ms | errors / non-2xx | outcome "
        "| before: other procs cores, spin share | during: other procs + steal cores "
        "| attempts |",
        "|---:|---|---|---:|---:|---|---|---|---|---|",
    ]
    for r in [
        x
        for x in results
        if x.get("path") in ("hello", "admission", "freed", "paired-admission", "paired-freed")
    ]:
        errs = dict(r.get("errors") or {})
        bad = {k: v for k, v in (r.get("statuses") or {}).items() if not k.startswith("2")}
        errs.update(bad)
        out = r.get("outcome", {})
        if r.get("path", "").startswith("paired-"):
            oc = (
                f"hello in the same run: {r['hello']['rps']:.0f} req/s, p99 "
                f"{r['hello']['p99_ms']:.2f} ms; ratio {100 * r['paired_ratio']:.1f}%"
            )
        elif r in outcomes and r["path"] == "admission":
            oc = (
                f"{out['matched']} matched, {out['queued']} queued "
                f"({100 * out['matched_share']:.0f}% matched)"
            )
        elif r in outcomes:
            oc = f"{out['per_agent']} contacts/agent; ran out: {r.get('exhausted')}"
        else:
            oc = ""
        L.append(
            f"| {r['round']} | {r['path']} | {r['loader']} | {r['rps']:.0f} "
            f"| {r['p99_ms']:.2f} | {errs or 'none'} | {oc} "
            f"| {r.get('background_before', 0):.2f}, {r.get('spin_share_before', 0):.2f} "
            f"| {r['noise_cores']:.2f}{' NOISY' if r['noisy'] else ''} "
            f"| {r['attempts']} |"
        )
    return L
