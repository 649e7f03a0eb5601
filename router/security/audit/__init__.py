"""Tamper-evident audit trail: sealing, segment export, verification, retention.

Every event of a workspace (`{ws:<name>}:events`) and every denied request
(`router:access`) is sealed, in stream order, into a hash chain held in Redis
(`records`, `sealer`), optionally exported to append-only segment files with a
manifest (`segments`), and checked by `router audit verify` (`verify`, `cli`).
"""
