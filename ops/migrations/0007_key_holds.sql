-- Per-key order past dead letters: when an event of key K is dead-lettered, later events of K
-- (for that processor) are held here, in order, unapplied, until every dead letter K waits on
-- is resolved; then they are released, in order, through the same ledger and handler.

-- The dead letters a held key waits on (a key is held while it has a row here).
CREATE TABLE key_holds (
    processor      text        NOT NULL,
    key            bytea       NOT NULL,
    dead_letter_id uuid        NOT NULL,
    held_since     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (processor, key, dead_letter_id)
);
CREATE INDEX key_holds_dead_letter ON key_holds (dead_letter_id);

-- Events held behind a dead letter, with their original record (decoded again on release).
CREATE TABLE held_events (
    seq              bigserial   PRIMARY KEY,
    processor        text        NOT NULL,
    key              bytea       NOT NULL,
    event_id         uuid        NOT NULL,
    event_type       text        NOT NULL,
    topic            text        NOT NULL,
    partition        integer     NOT NULL,
    "offset"         bigint      NOT NULL,
    record_timestamp bigint      NOT NULL,
    value            bytea,
    headers          jsonb       NOT NULL DEFAULT '[]'::jsonb,
    correlation_id   text,
    held_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (processor, event_id)
);
CREATE INDEX held_events_key ON held_events (processor, key, seq);

-- The ledger records the key of each applied event (what `holds` and `trace` show).
ALTER TABLE processed_events ADD COLUMN key bytea;
