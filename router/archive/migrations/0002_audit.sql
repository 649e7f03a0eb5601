-- The audit chain's head per source, next to the append-only records.
--
-- A batch of sealed records is appended in one transaction that first moves
-- this row from the record before the batch (seq, hash) to its last record
-- (compare-and-set: `UPDATE ... WHERE seq = <first seq - 1> AND hash = <first
-- prev>`). Two sealers that both believe they hold a source's lease serialise
-- on the row lock; the second one's UPDATE finds the row moved and changes
-- nothing, so its INSERT never runs and the chain in the database cannot fork,
-- nor can a batch be written twice. Unpartitioned and one row per source: the
-- records' own key (source, at, seq) cannot be unique on seq alone, because a
-- partitioned table's unique keys must hold its partition key.
CREATE TABLE audit_heads (
    source text PRIMARY KEY,
    seq bigint NOT NULL,
    hash text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- `router audit verify --archive` walks a source's records in seq order.
CREATE INDEX audit_records_by_seq ON audit_records (source, seq);

-- The head moves forward only: refused when it would go back or stay (the
-- writer's compare-and-set already ensures it; this makes a hand-edit that
-- rewinds it fail loudly instead of inviting a second copy of records).
CREATE FUNCTION audit_head_forward() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.source <> OLD.source OR NEW.seq <= OLD.seq THEN
        RAISE EXCEPTION 'audit head of % may only move forward (seq % to %)',
            OLD.source, OLD.seq, NEW.seq USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER audit_head_forward BEFORE UPDATE ON audit_heads
    FOR EACH ROW EXECUTE FUNCTION audit_head_forward();

GRANT SELECT, INSERT, UPDATE ON audit_heads TO router_archive_writer;
