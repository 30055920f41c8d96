-- The dead-letter workbench (`supplybus dlq`): an operator's corrected payload kept beside the
-- original bytes, why a dead letter was parked or skipped, and a log of everything that
-- happened to each dead letter (replays and their outcomes, dry runs, parks, skips, edits,
-- failures again) that `dlq show` and `trace` read. Nothing is ever deleted.

ALTER TABLE dead_letters
    ADD COLUMN edited_value  bytea,        -- the corrected record a replay uses (original kept)
    ADD COLUMN edited_at     timestamptz,
    ADD COLUMN status_reason text;         -- why it was parked or skipped (resolved)

CREATE INDEX dead_letters_listing ON dead_letters (status, processor, topic, error_code);
CREATE INDEX dead_letters_failed_at ON dead_letters (last_failed_at);

CREATE TABLE dead_letter_log (
    id             bigserial   PRIMARY KEY,
    dead_letter_id uuid        NOT NULL,
    at             timestamptz NOT NULL DEFAULT now(),
    actor          text        NOT NULL,      -- who (OS user, or the runtime)
    -- replay, dry-run, park, unpark, skip, edit, failed (a re-delivery or replay failing again)
    action         text        NOT NULL,
    -- applied, already-applied, failed-again, would-apply, would-fail, done
    outcome        text        NOT NULL,
    detail         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    correlation_id text
);
CREATE INDEX dead_letter_log_dead_letter ON dead_letter_log (dead_letter_id, id);
CREATE INDEX dead_letter_log_correlation ON dead_letter_log (correlation_id);
