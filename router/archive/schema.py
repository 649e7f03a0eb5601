"""The archive's schema: versioned SQL files applied in order, each once.

`router/archive/migrations/NNNN_<what>.sql` are applied by `migrate()` (from
`router archive migrate`, or by a replica at start) in one transaction under
an advisory lock, so replicas starting together apply each file once and a
failed file leaves nothing half done. `archive_schema` records each applied
version with the SHA-256 of its file: a file changed after it was applied, or
a database newer than this router knows, stops the migration with a message
that says which.
"""

from __future__ import annotations

from dataclasses import dataclass
from hashlib import sha256
from importlib import resources

from psycopg import AsyncConnection

# pg_advisory_xact_lock key: "router archive schema" as a number (any constant
# the application owns would do; this one is its name's first 8 bytes).
LOCK_KEY = int.from_bytes(b"rtrarchv", "big") & 0x7FFF_FFFF_FFFF_FFFF

VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS archive_schema (
    version integer PRIMARY KEY,
    name text NOT NULL,
    sha256 text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


class SchemaError(Exception):
    """The database's schema cannot be brought to this router's version."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def digest(self) -> str:
        return sha256(self.sql.encode()).hexdigest()


def migrations() -> list[Migration]:
    """The migrations shipped with this router, in version order."""
    found = []
    for entry in resources.files("router.archive").joinpath("migrations").iterdir():
        stem, _, ext = entry.name.partition(".")
        number, _, name = stem.partition("_")
        if ext == "sql" and number.isdigit():
            found.append(Migration(int(number), name, entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise SchemaError(f"migrations must be numbered 1..n: {[m.version for m in found]}")
    return found


async def applied(conn: AsyncConnection) -> dict[int, str]:
    """Applied version -> SHA-256 of its file (empty for a new database)."""
    cur = await conn.execute("SELECT to_regclass('archive_schema') IS NOT NULL")
    row = await cur.fetchone()
    if not (row and row[0]):
        return {}
    cur = await conn.execute("SELECT version, sha256 FROM archive_schema ORDER BY version")
    return {int(v): str(d) for v, d in await cur.fetchall()}


async def migrate(conn: AsyncConnection) -> list[int]:
    """Applies what is missing; returns the versions applied now (empty: up to date)."""
    known = migrations()
    done: list[int] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        have = await applied(conn)
        if not have:
            # only for a new database: the routers' role (router_archive_writer)
            # may not create tables, and starts on an up-to-date schema without
            await conn.execute(VERSION_TABLE)
        newest = max(have, default=0)
        if newest > len(known):
            raise SchemaError(
                f"the archive is at schema version {newest}, newer than this router's "
                f"{len(known)}: run a router at least as new"
            )
        for m in known:
            if m.version in have:
                if have[m.version] != m.digest:
                    raise SchemaError(
                        f"migration {m.version} ({m.name}) differs from the one applied: "
                        "applied migrations must never change; add a new one"
                    )
                continue
            await conn.execute(m.sql.encode())  # no parameters: several statements at once
            await conn.execute(
                "INSERT INTO archive_schema (version, name, sha256) VALUES (%s, %s, %s)",
                (m.version, m.name, m.digest),
            )
            done.append(m.version)
    return done
