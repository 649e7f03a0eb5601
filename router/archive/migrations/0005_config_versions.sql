-- Every accepted routing config version, kept for years: Redis keeps only the
-- latest ones (ROUTER_CONFIG_VERSIONS_KEPT). Written by the event archiver when
-- it archives the workspace's `config.updated` event (router/archive/configs.py),
-- the document read from Redis in the same batch; a batch written twice adds
-- nothing. A version that left Redis before the archive read it is recorded
-- with no document (`document IS NULL`), so the hole is on record. Not
-- partitioned by day: configs are few, and retention never drops them.
CREATE TABLE config_versions (
    workspace text NOT NULL,
    version bigint NOT NULL,
    updated_at timestamptz NOT NULL,
    actor text NOT NULL,
    description text NOT NULL DEFAULT '',
    -- the version whose document this one restored (a roll-back), else NULL
    rollback_of bigint,
    -- the document as stored (webhook secrets included, as in Redis); NULL: missing
    document jsonb,
    PRIMARY KEY (workspace, version)
);
GRANT SELECT, INSERT ON config_versions TO router_archive_writer;
