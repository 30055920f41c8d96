-- Receiving (consumers/inventory/receiving.py, processor `receiving`): purchase orders as
-- receiving knows them (from PurchaseOrderIssued / PurchaseOrderCancelled), the cumulative
-- received / rejected / accepted quantity per PO line, receipts and their lines, and the
-- receipts that arrived before their purchase order (applied when it arrives).

CREATE TABLE receiving_orders (
    po_id               text        PRIMARY KEY,
    po_number           text,                       -- null until the PO's issue is seen
    entity_id           text,
    supplier_id         text,
    ship_to_location_id text,
    issued_event_id     uuid,                       -- the PurchaseOrderIssued; null: not yet
    status              text        NOT NULL,       -- OPEN, CANCELLED
    cancelled_reason    text,
    updated_at          timestamptz NOT NULL DEFAULT now()
);

-- Per PO line, in the line's unit: what all its receipts brought. `received` is the good
-- quantity delivered (accepted or not: over the allowance, missing lot), `rejected` what the
-- dock refused, `accepted` what went into stock (never above ordered * (1 + allowance)).
CREATE TABLE receiving_po_lines (
    po_id        text          NOT NULL REFERENCES receiving_orders,
    line_number  int           NOT NULL,
    item_id      text          NOT NULL,
    ordered      numeric(12,3) NOT NULL,
    uom          text          NOT NULL,
    unit_price   numeric(18,4) NOT NULL,
    currency     text          NOT NULL,
    received     numeric(12,3) NOT NULL DEFAULT 0,
    rejected     numeric(12,3) NOT NULL DEFAULT 0,
    accepted     numeric(12,3) NOT NULL DEFAULT 0,
    PRIMARY KEY (po_id, line_number)
);

CREATE TABLE receipts (
    receipt_id     text        PRIMARY KEY,
    po_id          text        NOT NULL REFERENCES receiving_orders,
    location_id    text        NOT NULL,
    received_at    timestamptz NOT NULL,
    event_id       uuid        NOT NULL,            -- the GoodsReceived
    correlation_id text        NOT NULL,
    digest         text        NOT NULL,            -- of its content: a resend is recognised
    discrepancies  int         NOT NULL,
    waited         boolean     NOT NULL,            -- arrived before its purchase order
    applied_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX receipts_po ON receipts (po_id);

-- Each line as received (`line_index`: its position in the GoodsReceived, from 1). Quantities
-- in `uom`, the PO line's unit; `received`/`rejected` are null when the receipt's unit did not
-- convert (then `uom` is the receipt's and nothing was accepted).
CREATE TABLE receipt_lines (
    receipt_id       text          NOT NULL REFERENCES receipts,
    line_index       int           NOT NULL,
    po_line_number   int           NOT NULL,
    item_id          text          NOT NULL,
    uom              text          NOT NULL,
    received         numeric(12,3),
    rejected         numeric(12,3),
    accepted         numeric(12,3) NOT NULL,
    received_as      numeric(12,3) NOT NULL,        -- as the dock wrote it
    received_as_uom  text          NOT NULL,
    lot_number       text,
    expiry_date      date,
    rejection_reason text,
    discrepancies    text[]        NOT NULL DEFAULT '{}',
    movement_id      uuid,                          -- the StockMovement of the accepted part
    PRIMARY KEY (receipt_id, line_index)
);

CREATE TABLE receipts_waiting (
    seq            bigserial   NOT NULL,            -- arrival order
    receipt_id     text        PRIMARY KEY,
    po_id          text        NOT NULL,
    event_id       uuid        NOT NULL,
    digest         text        NOT NULL,
    record         jsonb       NOT NULL,            -- the GoodsReceived (events.jsonio form)
    waiting_since  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX receipts_waiting_po ON receipts_waiting (po_id, seq);
