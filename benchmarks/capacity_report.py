"""The capacity search's measurements beyond the load generator's own (router
loop lag and GC pauses, hello world at the step's request rate) and its report
(Markdown table, plot). See benchmarks/capacity.py.

CPU is stated two ways: per lifecycle completed in the measured window (router
summed over replicas, Redis apart), which carries over to other machines, and as
throughput on this one (lifecycles a second, cores used). Hello world's CPU per
request, at the same HTTP request rate in the same run, turns the router's into
a ratio: router µs per lifecycle ÷ (hello µs per request x requests per
lifecycle), once counting HTTP requests only (create, accept, complete: the
issue's target, ≤ 4) and once counting the WebSocket pushes as requests too.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.hello_rate import hello_phase


def pause_counts(hosts: list[str]) -> Counter[str]:
    """The routers' event-loop lag histogram and GC pauses (router/runtime/pauses.py), summed."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    out: Counter[str] = Counter()
    for host in hosts:
        with urllib.request.urlopen(host + "/metrics", timeout=10) as resp:
            text = resp.read().decode()
        for fam in text_string_to_metric_families(text):
            for smp in fam.samples:
                if smp.name == "router_event_loop_lag_seconds_bucket":
                    out["lag_le_" + smp.labels["le"]] += smp.value
                elif smp.name in ("router_gc_pause_seconds_sum", "router_gc_pause_seconds_count"):
                    kind = "sum" if smp.name.endswith("_sum") else "count"
                    out[f"{kind}_gen{smp.labels['generation']}"] += smp.value
    return out


def pause_report(before: Counter[str], after: Counter[str]) -> dict[str, Any]:
    """During one step: share of 100 ms loop ticks that ran over 5 / 25 ms late, the
    worst lag bucket reached, and GC pauses by generation (count, total ms)."""
    d = {k: after[k] - before[k] for k in after}
    ticks = d.get("lag_le_+Inf", 0)
    bounds = sorted((float(k[7:]), v) for k, v in d.items()
                    if k.startswith("lag_le_") and k != "lag_le_+Inf")  # fmt: skip
    worst = next((b for b, v in bounds if v >= ticks), float("inf")) if ticks else 0.0
    under = dict(bounds)
    return {
        "router_loop_ticks": int(ticks),
        "router_loop_late_5ms": round(1 - under.get(0.005, 0) / ticks, 4) if ticks else None,
        "router_loop_late_25ms": round(1 - under.get(0.025, 0) / ticks, 4) if ticks else None,
        "router_loop_lag_max_bucket_ms": worst * 1000,
        "router_gc": {g: {"count": int(d.get(f"count_gen{g}", 0)),
                          "ms": round(d.get(f"sum_gen{g}", 0) * 1000, 1)} for g in "012"},
    }  # fmt: skip


def compare_hello(res: dict[str, Any], duration: float, warmup: float) -> None:
    """Runs hello world at the step's HTTP request rate (from the step's own counts),
    over a keep-alive pool of the size the step opened, for the step's window length;
    adds its CPU per request and the router's ratio to it to `res`."""
    rate = res.get("http_requests_per_s", 0.0)
    if not rate:
        return
    pool = max(1, res.get("connections", {}).get("http", 1))
    hello = hello_phase(rate, duration, warmup, pool)
    res["hello"] = hello
    per_req = hello.get("cpu_us_per_request", {}).get("hello")
    router = res.get("cpu_us_per_lifecycle", {}).get("router")
    reqs = res.get("requests_per_lifecycle", {})
    if per_req and router and reqs.get("http"):
        res["router_vs_hello"] = {
            "http": round(router / (per_req * reqs["http"]), 2),
            "http_and_ws": round(router / (per_req * (reqs["http"] + reqs["ws_messages"])), 2),
        }


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (lat, thr) = plt.subplots(1, 2, figsize=(12, 4.5))
    for res in results:
        rows = [s for s in res["steps"] if "create" in s]
        x = [s["offered_rate"] for s in rows]
        n = res["replicas"]
        lat.plot(x, [s["create"]["p99_ms"] for s in rows], "o-", label=f"{n} router: create p99")
        lat.plot(x, [s["create"]["p50_ms"] for s in rows], "o:", label=f"{n} router: create p50")
        if all("decision" in s for s in rows):
            lat.plot(x, [s["decision"]["p99_ms"] for s in rows], "s--",
                     label=f"{n} router: decision p99")  # fmt: skip
        thr.plot(x, [s["lifecycles_per_s"] for s in rows], "o-", label=f"{n} router")
    lat.set_yscale("log")
    lat.set_xlabel("offered contacts per second")
    lat.set_ylabel("latency, ms (log)")
    lat.legend(fontsize=8)
    lat.grid(True, which="both", alpha=0.3)
    top = max(s["offered_rate"] for r in results for s in r["steps"])
    thr.plot([0, top], [0, top], color="grey", lw=0.8, ls="--", label="offered")
    thr.set_xlabel("offered contacts per second")
    thr.set_ylabel("full lifecycles completed per second")
    thr.legend(fontsize=8)
    thr.grid(True, alpha=0.3)
    fig.suptitle("Capacity search (2-core machine; Redis, routers and load generator share it)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def late(s: dict[str, Any]) -> str:
    share = s.get("pauses", {}).get("router_loop_late_5ms")
    return "-" if share is None else f"{share:.1%}"


def gc_text(s: dict[str, Any]) -> str:
    gcs = s.get("pauses", {}).get("router_gc")
    if not gcs:
        return "-"
    return ", ".join(f"g{g}: {v['count']}, {v['ms']:.0f}" for g, v in gcs.items())


def window_cols(s: dict[str, Any]) -> str:
    """The measured window's columns: CPU µs per lifecycle (router, Redis by /proc and
    inside commands, load generator), requests per lifecycle, hello world, ratios,
    lifecycles per router core-second, other processes' cores."""
    us = s.get("cpu_us_per_lifecycle")
    if not us:
        return "| - " * 8
    req = s.get("requests_per_lifecycle", {})
    hello = s.get("hello", {}).get("cpu_us_per_request", {}).get("hello", "-")
    ratio = s.get("router_vs_hello", {})
    cores = s.get("cpu_window", {}).get("cores", {})
    per_core = round(1e6 / us["router"]) if us.get("router") else "-"
    return (f"| {us.get('router', '-')} | {us.get('redis', '-')} / {us.get('redis_scripts', '-')} "
            f"| {us.get('loadgen', '-')} | {req.get('http', '-')} + {req.get('ws_messages', '-')} "
            f"| {hello} | {ratio.get('http', '-')} / {ratio.get('http_and_ws', '-')} "
            f"| {per_core} | {cores.get('other', '-')} ")  # fmt: skip


def probe_text(s: dict[str, Any]) -> str:
    """benchmarks/sleep_probe.py beside the load: the tail any process saw."""
    p = s.get("sleep_probe")
    text = f"{p['p99_ms']} / {p['max_ms']}, {p['steal_cores']}" if p else "-"
    waits = s.get("cpu_window", {}).get("run_queue_wait")
    if waits:
        text += "; " + ", ".join(f"{k} {v:.1%}" for k, v in waits.items())
    return text


def markdown(results: list[dict[str, Any]]) -> str:
    lines = ["| routers | offered/s | lifecycles/s | create p50 / p99 ms | decision p50 / p99 ms "
             "| accept p99 ms | complete p99 ms | errors | router cores | Redis cores "
             "| loadgen cores | Redis µs / lifecycle | router loop >5 ms late "
             "| router GC pauses (n, ms) | loadgen lag p99 ms "
             "| idle process late p99 / max ms, steal cores; waited for a CPU (window share) "
             "| window: router µs / lifecycle | Redis µs / lifecycle (CPU / in scripts) "
             "| loadgen µs / lifecycle | HTTP + WS messages / lifecycle | hello µs / request "
             "| router ÷ hello (HTTP / HTTP + WS) | lifecycles / router core-s "
             "| other procs cores | verdict |",
             "|" + "---|" * 25]  # fmt: skip
    for res in results:
        for s in res["steps"] + ([res["half"] | {"verdict": "half load"}] if res["half"] else []):
            c = s["cpu_cores"]
            routers = sum(v for k, v in c.items() if k.startswith("router"))

            def lat(kind: str, s: dict[str, Any] = s) -> str:
                v = s.get(kind)
                return f"{v['p50_ms']} / {v['p99_ms']}" if v else "-"

            lines.append(
                f"| {res['replicas']} | {s['offered_rate']:.0f} | {s['lifecycles_per_s']} "
                f"| {lat('create')} | {lat('decision')} "
                f"| {s.get('accept', {}).get('p99_ms', '-')} "
                f"| {s.get('complete', {}).get('p99_ms', '-')} | {s['error_rate']:.2%} "
                f"| {routers:.2f} | {c.get('redis', 0):.2f} | {c.get('loadgen', 0):.2f} "
                f"| {s.get('redis_us_per_lifecycle', '-')} | {late(s)} | {gc_text(s)} "
                f"| {s.get('loadgen_loop_lag', {}).get('p99_ms', '-')} | {probe_text(s)} "
                f"{window_cols(s)}"
                f"| {s['verdict']} |"
            )
    return "\n".join(lines)
