-- Outbox rows that can never be published (too large, invalid topic...) are parked with their
-- reason instead of blocking the relay; they stay in the table for an operator.
ALTER TABLE outbox
    ADD COLUMN parked_at   timestamptz,
    ADD COLUMN park_code   text,          -- librdkafka error name, e.g. MSG_SIZE_TOO_LARGE
    ADD COLUMN park_reason text;

-- The relay's queue: neither sent nor parked.
DROP INDEX outbox_unsent;
CREATE INDEX outbox_pending ON outbox (id) WHERE sent_at IS NULL AND parked_at IS NULL;
CREATE INDEX outbox_parked ON outbox (id) WHERE parked_at IS NOT NULL;

COMMENT ON COLUMN outbox.headers IS
    'every Kafka header of the record as [[name, base64], ...]; the relay publishes them as stored';

-- Rows written before headers were stored get the routing headers the relay used to rebuild,
-- plus sb-fingerprint where the value is in single-object encoding (C3 01 + 8-byte fingerprint).
UPDATE outbox o SET headers = (
    SELECT coalesce(jsonb_agg(jsonb_build_array(h.name,
               replace(encode(convert_to(h.val, 'UTF8'), 'base64'), E'\n', '')) ORDER BY h.ord),
           '[]'::jsonb)
    FROM (VALUES
        (1, 'sb-event-id', o.event_id::text),
        (2, 'sb-event-type', o.event_type),
        (3, 'sb-fingerprint', CASE WHEN substring(o.value FROM 1 FOR 2) = '\xc301'::bytea
                                   THEN encode(substring(o.value FROM 3 FOR 8), 'hex') END),
        (4, 'sb-correlation-id', o.correlation_id),
        (5, 'sb-priority', o.priority),
        (6, 'traceparent', o.traceparent),
        (7, 'sb-causation-id', o.causation_id)
    ) AS h(ord, name, val)
    WHERE h.val IS NOT NULL
)
WHERE o.headers IS NULL AND o.sent_at IS NULL AND o.event_id IS NOT NULL;
