-- Retention: whole daily partitions are dropped once they are entirely older
-- than their class's window (router/archive/retention.py). The routers' role
-- may not drop tables; it calls `archive_drop_partitions`, which runs as the
-- tables' owner and drops only what the guard below allows.

-- How old (whole days before today, UTC) a partition's last day must be
-- before a role other than the tables' owner may drop it; set by the owner,
-- only readable by the writer role. NULL: such a role may never drop that
-- table's partitions, only the owner may (`router archive prune` run with the
-- owner's URL).
--
-- Why a floor the owner keeps, rather than trusting the windows the writer is
-- given: those come from the workspaces' configs in Redis, which an admin
-- token, or anyone reaching Redis or holding the writer's password, can
-- change; the audit trail must not be erasable early that way. The audit
-- window defaults to "keep", so audit_records start at NULL (the writer never
-- drops them; an owner who wants retention there sets e.g. 2557 days, seven
-- years). The other tables start at 0: the workspaces' windows decide, and an
-- owner may raise the floor to bound what a compromised writer can erase.
CREATE TABLE archive_retention_floor (
    tbl text PRIMARY KEY
        CHECK (tbl IN ('events', 'contacts', 'sla_outcomes', 'audit_records')),
    min_days integer CHECK (min_days >= 0)
);
INSERT INTO archive_retention_floor (tbl, min_days) VALUES
    ('events', 0), ('contacts', 0), ('sla_outcomes', 0), ('audit_records', NULL);
REVOKE ALL ON archive_retention_floor FROM PUBLIC;
GRANT SELECT ON archive_retention_floor TO router_archive_writer;

-- The latest day the calling login may pass to `archive_drop_partitions` for
-- `parent` (its partitions ending on or before that day's midnight, UTC, may
-- go); NULL: none. The owner (or a superuser): any day up to today, so never
-- today's partition, which is still being written. Anyone else: today minus
-- the owner's floor. `session_user` is the login role: inside a SECURITY
-- DEFINER function `current_user` is the definer, and the login is what a
-- caller cannot change.
CREATE FUNCTION archive_drop_limit(parent regclass) RETURNS date
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    today date := (now() AT TIME ZONE 'UTC')::date;
    floor_days integer;
BEGIN
    IF parent NOT IN ('events'::regclass, 'contacts'::regclass, 'sla_outcomes'::regclass,
                      'audit_records'::regclass) THEN
        RAISE EXCEPTION '% is not an archive table', parent;
    END IF;
    IF pg_has_role(session_user, (SELECT relowner FROM pg_class WHERE oid = parent), 'MEMBER') THEN
        RETURN today;
    END IF;
    SELECT min_days INTO floor_days FROM archive_retention_floor WHERE tbl = parent::text;
    RETURN today - floor_days;  -- NULL when the floor is NULL (or missing)
END
$$;

-- Drops every partition of `parent` that ends on or before `before` (midnight
-- UTC), entirely older than that day; returns the names dropped. Refused, with
-- nothing dropped, when `before` is past the caller's limit above.
--  - timezone UTC: the partition bounds below are printed, then read back, in it;
--  - lock_timeout: dropping a partition takes an ACCESS EXCLUSIVE lock on its
--    parent, and a DROP waiting for it (behind a long read) would queue every
--    archive INSERT behind itself; it gives up instead, and the next round
--    tries again;
--  - an advisory lock: two callers at once take turns, the second sees what
--    the first dropped (the replicas' lease makes this rare).
CREATE FUNCTION archive_drop_partitions(parent regclass, before date) RETURNS SETOF text
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public, pg_temp SET timezone = 'UTC' SET lock_timeout = '5s' AS $$
DECLARE
    latest date := archive_drop_limit(parent);
    part record;
BEGIN
    IF latest IS NULL THEN
        RAISE EXCEPTION 'partitions of % may be dropped only by its owner', parent
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF before > latest THEN
        RAISE EXCEPTION 'partitions of % ending after % may not be dropped (asked: before %)',
            parent, latest, before USING ERRCODE = 'insufficient_privilege';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('archive_drop_partitions'));
    FOR part IN
        SELECT c.oid::regclass::text AS rel,
               substring(pg_get_expr(c.relpartbound, c.oid)
                         FROM 'TO \(''([^'']+)''\)')::timestamptz AS upper_bound
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = parent
        ORDER BY 2
    LOOP
        -- a DEFAULT or unbounded partition has no upper bound: never dropped here
        CONTINUE WHEN part.upper_bound IS NULL
            OR part.upper_bound > before::timestamp AT TIME ZONE 'UTC';
        EXECUTE format('DROP TABLE %s', part.rel);
        RETURN NEXT part.rel;
    END LOOP;
END
$$;

-- Functions are executable by PUBLIC unless revoked.
REVOKE ALL ON FUNCTION archive_drop_limit(regclass) FROM PUBLIC;
REVOKE ALL ON FUNCTION archive_drop_partitions(regclass, date) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION archive_drop_limit(regclass) TO router_archive_writer;
GRANT EXECUTE ON FUNCTION archive_drop_partitions(regclass, date) TO router_archive_writer;

-- A replica checks the schema's versions at start (router/archive/schema.py):
-- with the writer's login it may read them, and needs nothing more when the
-- owner has applied every version (`router archive migrate`).
GRANT SELECT ON archive_schema TO router_archive_writer;
