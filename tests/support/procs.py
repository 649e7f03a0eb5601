"""Router replicas as real OS processes (`python -m router serve`) for multi-process tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from router.runtime.settings import DEMO_JWT_SECRET, demo_token_spec
from router.store.local import free_port

ROOT = Path(__file__).resolve().parents[2]


def _python() -> str:
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


class Replica:
    """One `router serve` process on a free loopback port, logging to a file."""

    def __init__(
        self,
        redis_url: str,
        log_dir: Path,
        index: int,
        env: dict[str, str] | None = None,
        client_ssl: ssl.SSLContext | None = None,
        root: Path = ROOT,
    ) -> None:
        """`client_ssl`: the replica serves HTTPS (ROUTER_TLS_* in `env`), reached with it.
        `root`: the source tree it runs (another checkout, to compare builds)."""
        self.port = free_port()
        self.root = root
        self.client_ssl = client_ssl
        self.url = f"{'https' if client_ssl else 'http'}://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"replica-{index}.log"
        self.env = dict(os.environ)
        # the tests' signed agent tokens (tests/support/client.py agent_headers) verify here
        self.env.update(
            {
                "REDIS_URL": redis_url,
                "ROUTER_TOKENS": demo_token_spec(),
                "ROUTER_JWT_SECRET": DEMO_JWT_SECRET,
                "PYTHONUNBUFFERED": "1",
                **(env or {}),
            }
        )
        self.proc = self._spawn()

    def _spawn(self) -> subprocess.Popen[bytes]:
        with self.log_path.open("ab") as log:
            return subprocess.Popen(
                [
                    _python(),
                    "-m",
                    "router",
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                ],
                cwd=self.root,  # `-m router` imports from the working directory first
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def log_tail(self, limit: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-limit:]
        except OSError:
            return ""

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after `grace` seconds; returns the exit code."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


def start_replicas(
    redis_url: str, log_dir: Path, count: int, env: dict[str, str] | None = None
) -> list[Replica]:
    replicas: list[Replica] = []
    try:
        for i in range(count):
            replicas.append(Replica(redis_url, log_dir, i, env))
    except BaseException:
        stop_replicas(replicas)
        raise
    return replicas


def stop_replicas(replicas: list[Replica]) -> None:
    for r in replicas:  # signal all first so they shut down in parallel
        if r.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                r.proc.send_signal(signal.SIGTERM)
    for r in replicas:
        r.stop()


async def wait_ready(replicas: list[Replica], within: float = 60.0) -> None:
    """Waits until every replica answers GET /readyz with 200."""
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as http:
        for r in replicas:
            while True:
                if r.proc.poll() is not None:
                    raise RuntimeError(
                        f"replica on port {r.port} exited with {r.proc.returncode}:\n{r.log_tail()}"
                    )
                with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                    async with http.get(
                        r.url + "/readyz",
                        ssl=r.client_ssl or True,
                        timeout=aiohttp.ClientTimeout(total=2),
                    ) as resp:
                        if resp.status == 200:
                            break
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"replica on port {r.port} not ready within {within} s:\n{r.log_tail()}"
                    )
                await asyncio.sleep(0.1)
