-- Retention (`supplybus db prune`, ADR 0008): indexes that let a prune find old rows in
-- bounded chunks without scanning the tables, and the time a dead letter was resolved.

-- The ledger in processing order: a prune walks it from the oldest row (new rows land at the
-- right edge, so the claim pays almost nothing for it; measured in `make bench`).
CREATE INDEX processed_events_processed_at ON processed_events (processed_at);

-- Sent rows by the time they were sent (unsent rows have no sent_at; parked rows are never
-- deleted, so they are not in this index at all).
CREATE INDEX outbox_sent_at ON outbox (sent_at) WHERE sent_at IS NOT NULL AND parked_at IS NULL;

-- A dead letter's audit period runs from its resolution (replayed or resolved), whoever
-- changes the status: set by a trigger, cleared if the dead letter is opened again.
ALTER TABLE dead_letters ADD COLUMN resolved_at timestamptz;
UPDATE dead_letters SET resolved_at = last_failed_at WHERE status IN ('replayed', 'resolved');

CREATE FUNCTION dead_letters_resolved_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status IN ('replayed', 'resolved') THEN
        IF TG_OP = 'INSERT' OR OLD.status NOT IN ('replayed', 'resolved') THEN
            NEW.resolved_at := coalesce(NEW.resolved_at, now());
        END IF;
    ELSE
        NEW.resolved_at := NULL;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER dead_letters_resolved_at BEFORE INSERT OR UPDATE OF status ON dead_letters
    FOR EACH ROW EXECUTE FUNCTION dead_letters_resolved_at();

CREATE INDEX dead_letters_resolved ON dead_letters (resolved_at)
    WHERE status IN ('replayed', 'resolved');
