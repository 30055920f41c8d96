-- Finance: committed and actual spend per cost center and budget period, written by the
-- `budget-spend` processor (consumers/finance). budget_entries holds every applied
-- BudgetCommitted / BudgetReleased / BudgetActualized, one row per event; budget_spend is their
-- aggregate per (cost center, period), updated set-based in the same transaction:
--   committed = sum(COMMITTED) - sum(RELEASED) - sum(ACTUALIZED)
--   actual    = sum(ACTUALIZED)
-- The budget itself is master data (cost_center_budgets, migration 0008).

CREATE TABLE budget_entries (
    event_id       uuid          PRIMARY KEY,
    cost_center_id text          NOT NULL,
    period         text          NOT NULL,         -- YYYY-MM
    kind           text          NOT NULL CHECK (kind IN ('COMMITTED', 'RELEASED', 'ACTUALIZED')),
    amount         numeric(18,4) NOT NULL CHECK (amount >= 0),
    currency       text          NOT NULL,
    reference_type text          NOT NULL,         -- REQUISITION, PURCHASE_ORDER, INVOICE
    reference_id   text          NOT NULL,
    occurred_at    timestamptz   NOT NULL,
    reason         text,                           -- a release's reason, e.g. PO_CANCELLED
    correlation_id text          NOT NULL,
    applied_at     timestamptz   NOT NULL DEFAULT now()
);
CREATE INDEX budget_entries_period ON budget_entries (cost_center_id, period);
-- What is still committed for a reference (the over-release check) is read by this index.
CREATE INDEX budget_entries_reference
    ON budget_entries (reference_id, reference_type, cost_center_id, period);

CREATE TABLE budget_spend (
    cost_center_id text          NOT NULL,
    period         text          NOT NULL,
    committed      numeric(18,4) NOT NULL DEFAULT 0,
    actual         numeric(18,4) NOT NULL DEFAULT 0,
    currency       text          NOT NULL,
    entries        bigint        NOT NULL DEFAULT 0,
    updated_at     timestamptz   NOT NULL DEFAULT now(),
    PRIMARY KEY (cost_center_id, period)
);
