"""A workspace's config history: every accepted version, listed, read back and
restored by a roll-back.

`config_put.lua` writes each version into `{ws:<name>}:config:versions` in the
same call that bumps the version (`<v>` the document, `<v>:meta` who, when, the
description and, for a roll-back, the version restored), so the history never
misses or invents one. Versions are immutable once written; reads are one
read-only script each (`config_versions.lua`, `config_version.lua`).

Redis keeps the latest `kept` versions only (`ROUTER_CONFIG_VERSIONS_KEPT`,
100 by default): the same call drops the one falling off, so Redis memory is
bounded by live work, not by history. With an archive every version is also in
PostgreSQL (`router/archive/configs.py`, written by the archiver from the
`config.updated` event); reads ask it, through an `Archive` the caller passes,
for versions Redis no longer holds. Without one those are 404.

A workspace whose current version was written before the history was kept has
no history yet: its current version is read from the config hash (listed and
shown like any other) and enters the history at the next write, in that write's
call. Older versions than that one are gone and never listed.

A roll-back is a new version with the old document, through `Engine.put_config`
like any config change: agents are re-synced, running SLA clocks re-planned.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Protocol

import msgspec
from msgspec import Meta, Struct

from router.routing.config import RoutingConfig, StoredConfig
from router.routing.configstore import ConfigStore
from router.routing.library import Scripts
from router.routing.validation import parse_config
from router.runtime.errors import FieldProblem, InvalidInput, NotFound
from router.store.batch import ScriptBatcher
from router.store.keys import WsKeys

PAGE_DEFAULT = 20
PAGE_MAX = 100


class VersionInfo(Struct, frozen=True):
    """One version of the history without its document."""

    version: int
    updated_at: float  # epoch seconds (Redis TIME)
    actor: str
    description: str = ""
    # the version whose document this one restored (a roll-back), else null
    rollback_of: int | None = None


class VersionPage(Struct, frozen=True):
    """Newest first; `next` is the `before` of the next page, null on the last."""

    versions: list[VersionInfo]
    next: int | None


class ConfigVersion(Struct, frozen=True):
    """One whole version: the shape of `GET /v1/workspaces/{ws}` and its origin."""

    version: int
    updated_at: float
    actor: str
    config: RoutingConfig
    rollback_of: int | None = None


class RollbackIn(Struct, forbid_unknown_fields=True, frozen=True):
    """Put this version's document back as a new version."""

    version: Annotated[int, Meta(ge=1, le=2**53)]


# `<v>:meta` as config_put.lua writes it (updated_at in milliseconds)
class VersionMeta(Struct, frozen=True):
    version: int
    updated_at: int
    actor: str
    description: str = ""
    rollback_of: int | None = None


_META = msgspec.json.Decoder(VersionMeta)
_DOC = msgspec.json.Decoder(RoutingConfig)


def _info(meta: VersionMeta) -> VersionInfo:
    return VersionInfo(
        version=meta.version,
        updated_at=meta.updated_at / 1000,
        actor=meta.actor,
        description=meta.description,
        rollback_of=meta.rollback_of,
    )


def _unkept(version: int, doc: str, updated_at: str, actor: str) -> VersionMeta:
    """The meta of a current version written before the history was kept."""
    description = msgspec.json.decode(doc).get("description", "")
    return VersionMeta(version, int(updated_at), actor, str(description))


class Archive(Protocol):
    """Versions Redis no longer keeps, read from the history archive; raises
    `Unavailable` (503) when the archive cannot be read."""

    async def older(self, ws_name: str, below: int, limit: int) -> list[VersionMeta]:
        """Up to `limit` archived versions below `below`, newest first."""
        ...

    async def one(self, ws_name: str, version: int) -> tuple[VersionMeta, bytes | None] | None:
        """The archived version and its document (None: recorded as never copied)."""
        ...


class Owner(Protocol):
    """What the history needs of the engine (`router/routing/engine.py`), which owns it."""

    scripts: Scripts
    batcher: ScriptBatcher
    configs: ConfigStore

    async def put_config(
        self,
        ws_name: str,
        cfg: RoutingConfig,
        actor: str,
        expected: int | None = None,
        rollback_of: int | None = None,
    ) -> StoredConfig: ...


class ConfigHistory:
    def __init__(self, engine: Owner, kept: int = 100) -> None:
        self._engine = engine
        self.kept = kept  # versions Redis keeps (config_put.lua drops older ones)

    async def _call(self, name: str, ws_name: str, args: Sequence[Any]) -> Any:
        ws = WsKeys(ws_name)
        keys = (ws.config, ws.config_versions)
        return await self._engine.batcher.call(self._engine.scripts[name], keys, args)

    async def versions(
        self, ws_name: str, before: int | None, limit: int, archive: Archive | None = None
    ) -> VersionPage:
        """Up to `limit` versions older than `before` (default: from the current):
        those Redis keeps, then older ones from the archive."""
        await self._engine.configs.get(ws_name)  # 404 for an unknown workspace
        res = await self._call("config_versions", ws_name, [before or 0, limit])
        infos: list[VersionInfo] = []
        current = int(res[0])
        for entry in res[2:]:
            if isinstance(entry, list):  # the current one, from before the history
                infos.append(_info(_unkept(current, *entry)))
            else:
                infos.append(_info(_META.decode(entry)))
        more = bool(res[1]) and bool(infos)
        below = infos[-1].version if infos else min(before or current + 1, current + 1)
        if archive is not None and not more and below > 1 and current:
            # Redis ended its window here: the rest (and whether there is more)
            # comes from the archive; one row past the page says there is
            want = limit - len(infos)
            older = await archive.older(ws_name, below, want + 1)
            infos += [_info(m) for m in older[:want]]
            more = len(older) > want and bool(infos)
        return VersionPage(versions=infos, next=infos[-1].version if more else None)

    async def _read(
        self, ws_name: str, version: int, field: str, archive: Archive | None
    ) -> tuple[VersionMeta, bytes]:
        current = (await self._engine.configs.get(ws_name)).version
        res = await self._call("config_version", ws_name, [version])
        if res:
            doc = res[1]
            meta = _META.decode(res[0]) if res[0] else _unkept(version, doc, res[2], res[3])
            return meta, doc.encode() if isinstance(doc, str) else doc
        if version >= current:
            raise NotFound(f"config version {version} does not exist", field=field)
        if archive is None:
            raise NotFound(
                f"config version {version} fell out of the kept window: Redis keeps the "
                f"latest {self.kept} versions, and no history archive is configured",
                field=field,
            )
        found = await archive.one(ws_name, version)
        if found is None:
            raise NotFound(
                f"config version {version} is neither among the latest {self.kept} "
                "nor in the history archive",
                field=field,
            )
        meta, archived = found
        if archived is None:
            raise NotFound(
                f"config version {version} left Redis before the archive could copy it",
                field=field,
            )
        return meta, archived

    async def version(
        self,
        ws_name: str,
        version: int,
        field: str = "version",
        archive: Archive | None = None,
    ) -> ConfigVersion:
        """One whole version; `field` names the parameter a 404 blames."""
        meta, doc = await self._read(ws_name, version, field, archive)
        return ConfigVersion(
            version=meta.version,
            updated_at=meta.updated_at / 1000,
            actor=meta.actor,
            config=_DOC.decode(doc),
            rollback_of=meta.rollback_of,
        )

    async def rollback(
        self,
        ws_name: str,
        version: int,
        actor: str,
        expected: int | None = None,
        archive: Archive | None = None,
    ) -> StoredConfig:
        """Version `version`'s document (its webhook secrets included) as a new version."""
        _, doc = await self._read(ws_name, version, "version", archive)
        try:  # checked again: today's checks may refuse what an old version held
            cfg = parse_config(doc)
        except InvalidInput as exc:
            raise InvalidInput(
                [
                    FieldProblem(
                        "version", f"version {version} is no longer valid: {p.field}: {p.message}"
                    )
                    for p in exc.problems
                ]
            ) from None
        return await self._engine.put_config(ws_name, cfg, actor, expected, rollback_of=version)
