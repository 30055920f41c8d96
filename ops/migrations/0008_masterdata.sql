-- Master-data read models (consumers/masterdata), from the masterdata.* compacted topics.
-- Each master row keeps the newest version by the envelope's (occurred_at, event_id): a late
-- or re-delivered older upsert never overwrites it. Child rows (units, prices, budgets, levels,
-- delegations) are replaced together with their master row.

CREATE TABLE suppliers (
    supplier_id  text        PRIMARY KEY,
    name         text        NOT NULL,
    status       text        NOT NULL,            -- ACTIVE, INACTIVE, BLOCKED
    tax_id       text,
    currency     text        NOT NULL,
    entity_ids   text[]      NOT NULL,            -- legal entities allowed to buy from it
    occurred_at  timestamptz NOT NULL,
    event_id     uuid        NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE items (
    item_id        text        PRIMARY KEY,
    gtin           text        NOT NULL,
    description    text        NOT NULL,
    category       text        NOT NULL,          -- MED_SURG, PHARMACY, CONTROLLED_SUBSTANCE, ...
    base_uom       text        NOT NULL,
    lot_controlled boolean     NOT NULL,
    orderable      boolean     NOT NULL,
    occurred_at    timestamptz NOT NULL,
    event_id       uuid        NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX items_gtin ON items (gtin);

-- Units an item is known in, with the factor in base units (the base unit itself: 1).
CREATE TABLE item_units (
    item_id  text          NOT NULL REFERENCES items ON DELETE CASCADE,
    uom      text          NOT NULL,
    factor   numeric(12,3) NOT NULL CHECK (factor > 0),
    PRIMARY KEY (item_id, uom)
);

CREATE TABLE contract_prices (
    item_id     text          NOT NULL REFERENCES items ON DELETE CASCADE,
    supplier_id text          NOT NULL,
    uom         text          NOT NULL,
    valid_from  date          NOT NULL,
    valid_to    date,                             -- last day; null: open-ended
    amount      numeric(18,4) NOT NULL,
    currency    text          NOT NULL,
    PRIMARY KEY (item_id, supplier_id, uom, valid_from)
);
CREATE INDEX contract_prices_supplier ON contract_prices (supplier_id, item_id);

CREATE TABLE facilities (
    facility_id      text        PRIMARY KEY,
    name             text        NOT NULL,
    owning_entity_id text        NOT NULL,
    kind             text        NOT NULL,        -- HOSPITAL, CLINIC, WAREHOUSE, SITE
    timezone         text        NOT NULL,
    occurred_at      timestamptz NOT NULL,
    event_id         uuid        NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- Legal entities as the facilities name them (there is no entity event of its own).
CREATE VIEW legal_entities AS
SELECT owning_entity_id AS entity_id,
       array_agg(facility_id ORDER BY facility_id) AS facility_ids
FROM facilities
GROUP BY owning_entity_id;

CREATE TABLE locations (
    location_id  text        PRIMARY KEY,
    facility_id  text        NOT NULL,
    name         text        NOT NULL,
    kind         text        NOT NULL,            -- STOREROOM, PAR_AREA, PHARMACY, OR, DOCK
    occurred_at  timestamptz NOT NULL,
    event_id     uuid        NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE par_levels (
    location_id          text          NOT NULL REFERENCES locations ON DELETE CASCADE,
    item_id              text          NOT NULL,
    par                  numeric(12,3) NOT NULL,
    par_uom              text          NOT NULL,
    reorder_point        numeric(12,3) NOT NULL,
    reorder_point_uom    text          NOT NULL,
    reorder_quantity     numeric(12,3) NOT NULL,
    reorder_quantity_uom text          NOT NULL,
    PRIMARY KEY (location_id, item_id)
);

CREATE TABLE cost_centers (
    cost_center_id   text        PRIMARY KEY,
    owning_entity_id text        NOT NULL,
    facility_id      text,
    name             text        NOT NULL,
    status           text        NOT NULL,        -- OPEN, CLOSED
    grant_funded     boolean     NOT NULL,
    occurred_at      timestamptz NOT NULL,
    event_id         uuid        NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE cost_center_budgets (
    cost_center_id text          NOT NULL REFERENCES cost_centers ON DELETE CASCADE,
    period         text          NOT NULL,        -- e.g. 2026-11
    amount         numeric(18,4) NOT NULL,
    currency       text          NOT NULL,
    PRIMARY KEY (cost_center_id, period)
);

CREATE TABLE approvers (
    approver_id      text          PRIMARY KEY,
    name             text          NOT NULL,
    owning_entity_id text          NOT NULL,
    roles            text[]        NOT NULL,      -- MANAGER, DIRECTOR, VP, CFO, ...
    limit_amount     numeric(18,4) NOT NULL,      -- authority limit
    limit_currency   text          NOT NULL,
    cost_center_ids  text[]        NOT NULL,
    facility_ids     text[]        NOT NULL,      -- both empty: the whole legal entity
    active           boolean       NOT NULL,
    occurred_at      timestamptz   NOT NULL,
    event_id         uuid          NOT NULL,
    updated_at       timestamptz   NOT NULL DEFAULT now()
);

CREATE TABLE approver_delegations (
    approver_id text NOT NULL REFERENCES approvers ON DELETE CASCADE,
    delegate_id text NOT NULL,
    from_date   date NOT NULL,                    -- inclusive
    to_date     date NOT NULL,                    -- inclusive
    PRIMARY KEY (approver_id, delegate_id, from_date)
);
