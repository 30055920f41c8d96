-- The processor runtime's tables: idempotency ledger, transactional outbox, dead letters.

-- One row per (processor, event) ever applied: the exactly-once guard.
CREATE TABLE processed_events (
    processor    text        NOT NULL,
    event_id     uuid        NOT NULL,
    topic        text        NOT NULL,
    partition    integer     NOT NULL,
    "offset"     bigint      NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (processor, event_id)
);

-- Events a processor emitted, written in the same transaction as its effects.
-- The relay publishes unsent rows in id order and marks them sent.
CREATE TABLE outbox (
    id             bigserial   PRIMARY KEY,
    topic          text        NOT NULL,
    key            bytea,
    value          bytea,
    headers        jsonb,                 -- extra headers as [[name, base64], ...] (dead letters)
    event_id       uuid,                  -- null for a dead letter that could not be decoded
    event_type     text,
    correlation_id text,
    causation_id   text,
    priority       text,
    traceparent    text,
    source         text        NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    sent_at        timestamptz
);
CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL;
CREATE INDEX outbox_correlation ON outbox (correlation_id);

-- Every record a processor could not apply, with its original bytes and lineage.
CREATE TABLE dead_letters (
    id               bigserial   PRIMARY KEY,
    processor        text        NOT NULL,
    topic            text        NOT NULL,
    partition        integer     NOT NULL,
    "offset"         bigint      NOT NULL,
    record_timestamp timestamptz,
    key              bytea,
    value            bytea,
    headers          jsonb       NOT NULL DEFAULT '[]'::jsonb,  -- [[name, base64], ...]
    event_id         uuid,
    event_type       text,
    correlation_id   text,
    error_class      text        NOT NULL,
    error_code       text        NOT NULL,
    message          text        NOT NULL,
    stack_digest     text        NOT NULL,
    attempts         integer     NOT NULL DEFAULT 1,
    first_failed_at  timestamptz NOT NULL DEFAULT now(),
    last_failed_at   timestamptz NOT NULL DEFAULT now(),
    dlq_topic        text        NOT NULL,
    status           text        NOT NULL DEFAULT 'open'
                     CHECK (status IN ('open', 'parked', 'replayed', 'resolved')),
    UNIQUE (processor, topic, partition, "offset")
);
CREATE INDEX dead_letters_status ON dead_letters (status, processor);
CREATE INDEX dead_letters_correlation ON dead_letters (correlation_id);
