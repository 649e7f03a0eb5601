"""End-to-end benchmark of the contact router against its own baselines, in one command.

    .venv/bin/python -m benchmarks.e2e                       # ~2 min, prints a report
    .venv/bin/python -m benchmarks.e2e --md /tmp/e2e.md --json /tmp/e2e.json
    .venv/bin/python -m benchmarks.e2e --rounds 3 --profile /tmp/e2e-prof

What runs (every server and load generator is its own process on loopback):
  hello       baseline 1: benchmarks/hello_server.py (aiohttp + uvloop, one process)
  evalsha     baseline 2: EVALSHA of `return 1` via redis-py asyncio (benchmarks/evalsha.py)
  admission   POST /v1/workspaces/{ws}/contacts on `python -m router serve` (one process)
              with a private redis-server (router.store.local.LocalRedis); a pool of ready
              agents takes the first contacts, the rest queue
  freed       POST .../contacts/{cid}/complete: every agent is busy and has a queue of
              waiting contacts; each completion hands the agent its next contact inside
              the same script (agent-freed path)
Each HTTP path is driven at fixed concurrency by the aiohttp-client load generator
(benchmarks/loadgen.py) and, when installed, by wrk (apt-get install wrk). The load
generator, the server and redis-server share the machine's cores: the report gives
each one's CPU use and that of every other process during the measured window.
"""
