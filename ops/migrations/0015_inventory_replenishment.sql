-- Inventory and replenishment (stock-balances, issue 18): balances in the item's stocking unit
-- per location, item and lot with the lot's expiry; per (location, item) the position row that
-- serializes concurrent movements (row lock) and keeps the breach and stockout-risk states;
-- daily usage for days of supply; PO receipts seen as movements (on order); breach history.

ALTER TABLE stock_balances ADD COLUMN expiry_date date;

CREATE TABLE stock_positions (
    location_id  text        NOT NULL,
    item_id      text        NOT NULL,
    breached     boolean     NOT NULL DEFAULT false,  -- on hand + on order <= reorder point
    breach_seq   int         NOT NULL DEFAULT 0,      -- breaches so far (the next one: +1)
    risk_level   text        NOT NULL DEFAULT 'LOW',  -- the last StockoutRisk level emitted
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (location_id, item_id)
);

-- Stock issued per day (ISSUE movements, stocking unit, by the movement's UTC date).
CREATE TABLE stock_usage (
    location_id  text          NOT NULL,
    item_id      text          NOT NULL,
    day          date          NOT NULL,
    issued       numeric(18,3) NOT NULL,
    PRIMARY KEY (location_id, item_id, day)
);

-- RECEIPT movements whose reference_id names a purchase order (po_id or po_number): what of
-- the order has arrived, in the stocking unit; on order = open PO lines minus this.
CREATE TABLE stock_po_receipts (
    location_id  text          NOT NULL,
    item_id      text          NOT NULL,
    po_id        text          NOT NULL,
    received     numeric(18,3) NOT NULL,
    PRIMARY KEY (location_id, item_id, po_id)
);

CREATE TABLE replenishment_breaches (
    breach_id      uuid          PRIMARY KEY,
    location_id    text          NOT NULL,
    item_id        text          NOT NULL,
    seq            int           NOT NULL,
    on_hand        numeric(18,3) NOT NULL,
    on_order       numeric(18,3) NOT NULL,
    reorder_point  numeric(18,3) NOT NULL,
    requisition_id text,                              -- null: no contract to order from
    event_id       uuid          NOT NULL,            -- the movement that breached
    opened_at      timestamptz   NOT NULL,
    rearmed_at     timestamptz,
    UNIQUE (location_id, item_id, seq)
);
