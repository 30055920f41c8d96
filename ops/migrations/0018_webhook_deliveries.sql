-- Webhook deliveries accepted by `supplybus serve webhook` (producers/webhook/intake.py).
-- A row is written in the same transaction as the event's outbox row, so a delivery is either
-- durable with its event or not there at all. The unique keys make intake idempotent:
--   delivery_id       the provider's delivery id (X-Supplybus-Delivery): a retry is a duplicate;
--   event_id          one event per id, whichever delivery carried it;
--   signature_sha256  the same signed request under another delivery id (a replay) is a duplicate.
CREATE TABLE webhook_deliveries (
    delivery_id      text        PRIMARY KEY,
    event_id         uuid        NOT NULL UNIQUE,
    event_type       text        NOT NULL,
    body_sha256      bytea       NOT NULL,   -- a retry must carry the same body (else 409)
    signature_sha256 bytea       NOT NULL UNIQUE,
    received_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_deliveries_received ON webhook_deliveries (received_at);
