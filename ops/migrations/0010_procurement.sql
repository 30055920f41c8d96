-- Requisition to purchase order: the read models of the procurement processors.
-- Who writes what: `requisitions` writes requisitions (one row per requisition, its placed
-- lines and route); `approvals` writes approval_steps and approval_inbox and moves the
-- requisition's status through approval; `purchase-orders` writes purchase_orders, po_lines,
-- po_numbers and po_deliveries; the PO dispatcher delivers po_deliveries.

CREATE TABLE requisitions (
    requisition_id  text          PRIMARY KEY,
    entity_id       text          NOT NULL,
    facility_id     text,
    requester_id    text          NOT NULL,
    cost_center_id  text          NOT NULL,
    urgency         text          NOT NULL,        -- STAT, URGENT, ROUTINE
    priority        text          NOT NULL,        -- the envelope's: CRITICAL travels on lanes
    need_by         date,
    total           numeric(18,4) NOT NULL,
    currency        text          NOT NULL,
    -- VALIDATED -> PENDING_APPROVAL -> APPROVED -> ORDERED (-> CANCELLED); REJECTED; DENIED
    status          text          NOT NULL,
    flags           text[]        NOT NULL DEFAULT '{}',
    budget_status   text,
    reasons         jsonb,                         -- a rejection's reasons
    lines           jsonb         NOT NULL,        -- placed lines: supplier, unit price
    route           jsonb,                         -- approvals.routing.Route.to_json()
    policy_versions text[]        NOT NULL DEFAULT '{}',
    correlation_id  text          NOT NULL,
    submitted_at    timestamptz   NOT NULL,
    event_id        uuid          NOT NULL,        -- the RequisitionSubmitted
    updated_at      timestamptz   NOT NULL DEFAULT now()
);
CREATE INDEX requisitions_status ON requisitions (status);
CREATE INDEX requisitions_correlation ON requisitions (correlation_id);

CREATE TABLE approval_steps (
    requisition_id text        NOT NULL REFERENCES requisitions,
    step           int         NOT NULL,           -- 1, 2, ... in route order
    role           text        NOT NULL,           -- the role the route demanded
    roles          text[]      NOT NULL,           -- who may decide: role + escalation roles
    reason         text        NOT NULL,
    rule_id        text        NOT NULL,
    sla_minutes    int         NOT NULL,
    authority      numeric(18,4) NOT NULL,         -- the authority limit a decider needs
    -- WAITING (an earlier step is open), PENDING, FALLBACK (nobody could decide: alert),
    -- GRANTED, DENIED
    status         text        NOT NULL,
    requested_at   timestamptz,
    request_event_id uuid,                         -- the ApprovalRequested of the step
    due_at         timestamptz,
    escalations    int         NOT NULL DEFAULT 0,
    decided_by     text,
    on_behalf_of   text,
    decided_at     timestamptz,
    comment        text,
    PRIMARY KEY (requisition_id, step)
);
CREATE INDEX approval_steps_open ON approval_steps (status, due_at)
    WHERE status IN ('PENDING', 'FALLBACK');

-- A decision that arrived before its step was requested (redelivery, reordering, a foreign
-- producer): kept, and applied when the step opens.
CREATE TABLE approval_inbox (
    seq            bigserial   NOT NULL,           -- arrival order
    event_id       uuid        PRIMARY KEY,
    requisition_id text        NOT NULL,
    step           int         NOT NULL,
    event_type     text        NOT NULL,
    record         jsonb       NOT NULL,           -- events.jsonio form of the record
    received_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX approval_inbox_requisition ON approval_inbox (requisition_id, step);

-- PO numbers per legal entity: PO-<entity suffix>-000001, gapless (the sequence row is
-- locked and advanced in the issuing transaction).
CREATE TABLE po_numbers (
    entity_id text   PRIMARY KEY,
    last      bigint NOT NULL
);

CREATE TABLE purchase_orders (
    po_id               text          PRIMARY KEY,
    po_number           text          NOT NULL UNIQUE,
    requisition_id      text          NOT NULL REFERENCES requisitions,
    entity_id           text          NOT NULL,
    facility_id         text,
    supplier_id         text          NOT NULL,
    cost_center_id      text          NOT NULL,
    ship_to_location_id text          NOT NULL,
    total               numeric(18,4) NOT NULL,
    currency            text          NOT NULL,
    status              text          NOT NULL,    -- ISSUED, ACKNOWLEDGED, CANCELLED
    priority            text          NOT NULL,
    budget_period       text          NOT NULL,
    correlation_id      text          NOT NULL,
    issued_at           timestamptz   NOT NULL,
    cancelled_reason    text,
    updated_at          timestamptz   NOT NULL DEFAULT now()
);
CREATE INDEX purchase_orders_requisition ON purchase_orders (requisition_id);

CREATE TABLE po_lines (
    po_id          text          NOT NULL REFERENCES purchase_orders,
    line_number    int           NOT NULL,
    requisition_line int         NOT NULL,
    item_id        text          NOT NULL,
    quantity       numeric(12,3) NOT NULL,
    uom            text          NOT NULL,
    unit_price     numeric(18,4) NOT NULL,
    currency       text          NOT NULL,
    cost_center_id text          NOT NULL,
    need_by        date,
    PRIMARY KEY (po_id, line_number)
);

-- The outbound delivery of each PO to the supplier / ERP (the PO dispatcher's work queue).
CREATE TABLE po_deliveries (
    po_id            text        PRIMARY KEY REFERENCES purchase_orders,
    po_number        text        NOT NULL,
    document         jsonb       NOT NULL,         -- what the target receives (docs/outbound-po.md)
    status           text        NOT NULL DEFAULT 'PENDING',   -- PENDING, DELIVERED, CANCELLED
    attempts         int         NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now(),
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_attempt_at  timestamptz,
    last_error       text,
    alerted_at       timestamptz,                  -- pending past the alert time
    delivered_at     timestamptz,
    delivered_to     text
);
CREATE INDEX po_deliveries_pending ON po_deliveries (next_attempt_at) WHERE status = 'PENDING';
