-- Inventory read model: on-hand stock per location, item and lot.
CREATE TABLE stock_balances (
    location_id   text          NOT NULL,
    item_id       text          NOT NULL,
    lot_number    text          NOT NULL DEFAULT '',
    uom           text          NOT NULL,
    on_hand       numeric(18,3) NOT NULL DEFAULT 0,
    movements     bigint        NOT NULL DEFAULT 0,
    updated_at    timestamptz   NOT NULL DEFAULT now(),
    PRIMARY KEY (location_id, item_id, lot_number)
);
