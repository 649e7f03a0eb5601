"""Processes of a run: waiting for HTTP, stopping, versions and the machine."""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import redis


def wait_http(
    url: str,
    timeout: float = 30.0,
    proc: subprocess.Popen[bytes] | None = None,
    headers: dict[str, str] | None = None,
) -> None:
    req = urllib.request.Request(url, headers=headers or {})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(req, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer 200 within {timeout} s")


def stop_proc(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def versions() -> dict[str, str]:
    import aiohttp
    import uvloop

    out = {
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "uvloop": uvloop.__version__,  # type: ignore[attr-defined]  # set, not re-exported
        "redis-py": redis.__version__,
    }
    try:
        import hiredis

        out["hiredis"] = hiredis.__version__
    except ImportError:
        out["hiredis"] = "not installed"
    wrk = shutil.which("wrk")
    if wrk:
        res = subprocess.run([wrk, "--version"], capture_output=True, text=True, check=False)
        out["wrk"] = (res.stdout or res.stderr).split("Copyright")[0].strip()
    return out


def machine() -> dict[str, str]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "memory": mem,
        "kernel": platform.release(),
        "loadavg_at_start": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
    }


def wait_http_auth(url: str, timeout: float = 15.0) -> None:
    """Until the router knows the workspace (its config cache refreshes every second)."""
    wait_http(url, timeout, headers={"Authorization": "Bearer demo-supervisor"})
