-- Database polling (producers/polling, `supplybus ingest db`): where each polled table stands.
-- The watermark of a (source, table) is updated in the same transaction as the outbox rows of
-- the events it read, so a crash between reading and marking loses nothing and doubles nothing.
CREATE TABLE polling_watermarks (
    source         text        NOT NULL,
    source_table   text        NOT NULL,
    mode           text        NOT NULL CHECK (mode IN ('key', 'updated')),
    last_key       text,          -- key mode: the largest key read (as text)
    last_updated   timestamptz,   -- updated mode: the largest updated-at read (<= source clock)
    accepted       bigint      NOT NULL DEFAULT 0,
    rejected       bigint      NOT NULL DEFAULT 0,
    last_poll_at   timestamptz,
    PRIMARY KEY (source, source_table)
);

-- Updated mode: the rows read inside the look-back window, by (row key, updated-at), so that a
-- window read again publishes nothing twice. Pruned once the window has moved past them.
CREATE TABLE polling_seen (
    source         text        NOT NULL,
    source_table   text        NOT NULL,
    row_key        text        NOT NULL,
    updated_at     timestamptz NOT NULL,
    PRIMARY KEY (source, source_table, updated_at, row_key)
);

-- Rows that could not become an event (mapping or validation failed): kept with the reason,
-- never blocking the table. One row per (row key, updated-at): a re-read adds nothing.
CREATE TABLE polling_rejects (
    source         text        NOT NULL,
    source_table   text        NOT NULL,
    row_key        text        NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT '-infinity',  -- '-infinity' in key mode
    reason         text        NOT NULL,
    message        text        NOT NULL,
    rejected_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, source_table, row_key, updated_at)
);
