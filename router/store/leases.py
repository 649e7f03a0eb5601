"""Redis leases: one replica at a time does a shared job (sealing the audit
trail, exporting the shared metrics); another takes over when it stops renewing
or gives the lease back. Both scripts compare the owner, so a replica never
renews or releases a lease another one holds."""

from __future__ import annotations

from importlib import resources


def _lua(name: str) -> str:
    return resources.files("router.store").joinpath("lua", name + ".lua").read_text("utf-8")


# KEYS: [1] lease   ARGV: [1] owner, [2] lease ms   Returns 1 when held.
LEASE_LUA = _lua("lease")
# KEYS: [1] lease   ARGV: [1] owner   Returns 1 when it was ours.
RELEASE_LUA = _lua("lease_release")
