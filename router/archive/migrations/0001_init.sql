-- The history archive: what leaves Redis once it is finished, kept for years.
-- Every table is partitioned by day (retention drops whole partitions, per data
-- class); every key holds the event's own time, never the time it was written,
-- so a batch written twice (after a crash) lands on the same rows.

-- Every event of every workspace, once: the Redis stream id is the event's id,
-- and `at` is the stream id's milliseconds.
CREATE TABLE events (
    ws text NOT NULL,
    id text NOT NULL,
    at timestamptz NOT NULL,
    type text NOT NULL,
    contact text,
    doc jsonb NOT NULL,
    -- when the archiver wrote it (its transaction's start): at - archived_at is
    -- the archive's lag, which benchmarks and operators read back
    archived_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (ws, at, id)
) PARTITION BY RANGE (at);
CREATE INDEX events_by_contact ON events (ws, contact, at) WHERE contact IS NOT NULL;

-- One row per finished contact, written when it ends and again when a late
-- action (resolution, rating) changes it; no personal fields (they stay sealed in
-- Redis until the contact leaves it). Times are the contact's own, from Redis TIME.
CREATE TABLE contacts (
    ws text NOT NULL,
    id text NOT NULL,
    ended_at timestamptz NOT NULL,
    outcome text NOT NULL,
    channel text NOT NULL,
    tier text,
    intent text,
    customer_id text,
    gateway text,
    pools text[] NOT NULL DEFAULT '{}',
    pool text,
    stages text,
    stage smallint,
    rules text[] NOT NULL DEFAULT '{}',
    priority_offset_ms bigint,
    agent text,
    team text,
    created_at timestamptz NOT NULL,
    enqueued_at timestamptz NOT NULL,
    offered_at timestamptz,
    answered_at timestamptz,
    resolved_at timestamptz,
    wait_ms bigint,
    handle_ms bigint,
    sla_policy text,
    sla jsonb NOT NULL DEFAULT '{}',
    csat smallint,
    nps smallint,
    followup_of text,
    PRIMARY KEY (ws, ended_at, id)
) PARTITION BY RANGE (ended_at);
CREATE INDEX contacts_by_id ON contacts (ws, id);

-- Each SLA clock's outcome, once per contact and clock.
CREATE TABLE sla_outcomes (
    ws text NOT NULL,
    contact text NOT NULL,
    clock text NOT NULL,
    policy text NOT NULL,
    outcome text NOT NULL,
    started_at timestamptz NOT NULL,
    stopped_at timestamptz NOT NULL,
    target_ms bigint,
    elapsed_ms bigint,
    steps smallint NOT NULL DEFAULT 0,
    PRIMARY KEY (ws, stopped_at, contact, clock)
) PARTITION BY RANGE (stopped_at);

-- The hash-chained audit records, append-only: `record` is the sealed record's
-- JSON exactly as hashed, so verify recomputes the chain from these bytes.
CREATE TABLE audit_records (
    source text NOT NULL,
    seq bigint NOT NULL,
    at timestamptz NOT NULL,
    record text NOT NULL,
    hash text NOT NULL,
    PRIMARY KEY (source, at, seq)
) PARTITION BY RANGE (at);

CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit records are append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
-- Triggers fire for every role, owners and superusers included; retention
-- detaches and drops whole partitions, which fires neither.
CREATE TRIGGER audit_no_update_or_delete BEFORE UPDATE OR DELETE ON audit_records
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit_records
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();

-- A day's partition of one of the tables above, made when first needed. It runs
-- as the tables' owner (the writer role may not create tables) and only for them.
CREATE FUNCTION archive_day_partition(parent regclass, day date) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    name text := format('%s_%s', parent::text, to_char(day, 'YYYYMMDD'));
BEGIN
    IF parent NOT IN ('events'::regclass, 'contacts'::regclass, 'sla_outcomes'::regclass,
                      'audit_records'::regclass) THEN
        RAISE EXCEPTION '% is not an archive table', parent;
    END IF;
    EXECUTE format(
        'CREATE TABLE IF NOT EXISTS %I PARTITION OF %s FOR VALUES FROM (%L) TO (%L)',
        name, parent, day::timestamp AT TIME ZONE 'UTC', (day + 1)::timestamp AT TIME ZONE 'UTC');
    RETURN name;
END
$$;

-- The role the routers write with: everything it needs, and on the audit
-- records INSERT and SELECT only. Grant it to the routers' login role.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'router_archive_writer') THEN
        CREATE ROLE router_archive_writer NOLOGIN;
    END IF;
END
$$;
GRANT SELECT, INSERT ON events, contacts, sla_outcomes TO router_archive_writer;
GRANT UPDATE ON contacts TO router_archive_writer;  -- a rating given after archiving
GRANT SELECT, INSERT ON audit_records TO router_archive_writer;
GRANT EXECUTE ON FUNCTION archive_day_partition(regclass, date) TO router_archive_writer;
