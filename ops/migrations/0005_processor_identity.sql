-- A processor's stored identity (ADR 0007). Its name is its consumer groups
-- (`<prefix>.<name>` and `<prefix>.<name>.critical`) and its ledger namespace, so a name that
-- changes in code would be a new processor replaying the retained topics. The runner registers
-- each processor on its first run; `supplybus processors rename` is the only way to rename one.
CREATE TABLE processors (
    name           text        PRIMARY KEY,
    consumes       text[]      NOT NULL,   -- event types, as last declared
    start_position text        NOT NULL    -- where it started: earliest, latest or an ISO-8601 time
                   CHECK (start_position IN ('earliest', 'latest')
                          OR start_position ~ '^\d{4}-\d{2}-\d{2}T'),
    registered_at  timestamptz NOT NULL DEFAULT now(),
    renamed_from   text,                   -- the name before the last rename
    renamed_at     timestamptz,
    renaming_to    text                    -- set while a rename is under way (it finishes it)
);

-- Processors that ran before identities were stored started at the earliest record; their
-- event types are filled in when they next start.
INSERT INTO processors (name, consumes, start_position, registered_at)
SELECT processor, '{}', 'earliest', min(at)
FROM (
    SELECT processor, min(processed_at) AS at FROM processed_events GROUP BY processor
    UNION ALL
    SELECT processor, min(first_failed_at) FROM dead_letters GROUP BY processor
) AS seen
GROUP BY processor;
