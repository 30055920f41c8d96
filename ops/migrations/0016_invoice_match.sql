-- Three-way match and payment authorization (consumers/finance/matching_processor.py, the
-- `invoice-match` processor, and consumers/finance/payment.py). Its own view of what was
-- ordered and received, fed by the events (PurchaseOrderIssued, GoodsReceived,
-- ReceivingDiscrepancy), so that an invoice, a receipt or a PO may arrive in any order.

-- A PO as invoice-match knows it (from PurchaseOrderIssued; the purchase-orders tables when
-- they have it, for the budget period and the cost center per line).
CREATE TABLE match_orders (
    po_id          text        PRIMARY KEY,
    po_number      text        NOT NULL,
    entity_id      text        NOT NULL,
    supplier_id    text        NOT NULL,
    currency       text        NOT NULL,
    budget_period  text        NOT NULL,
    status         text        NOT NULL DEFAULT 'ISSUED',   -- ISSUED, CANCELLED
    correlation_id text        NOT NULL,
    known_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE match_order_lines (
    po_id          text          NOT NULL REFERENCES match_orders,
    line_number    int           NOT NULL,
    item_id        text          NOT NULL,
    quantity       numeric(12,3) NOT NULL,
    uom            text          NOT NULL,
    unit_price     numeric(18,4) NOT NULL,
    currency       text          NOT NULL,
    cost_center_id text          NOT NULL,
    PRIMARY KEY (po_id, line_number)
);

-- Each received PO line as the receipt said it (unit as received; converted when matched).
CREATE TABLE match_receipts (
    receipt_id     text          NOT NULL,
    po_line_number int           NOT NULL,
    po_id          text          NOT NULL,
    item_id        text          NOT NULL,
    accepted       numeric(12,3) NOT NULL,
    uom            text          NOT NULL,
    event_id       uuid          NOT NULL,
    PRIMARY KEY (receipt_id, po_line_number)
);
CREATE INDEX match_receipts_po ON match_receipts (po_id);

-- ReceivingDiscrepancy per PO: DAMAGED and WRONG_ITEM hold the payment (a disputed receipt).
CREATE TABLE match_discrepancies (
    event_id       uuid        PRIMARY KEY,
    po_id          text        NOT NULL,
    receipt_id     text        NOT NULL,
    po_line_number int         NOT NULL,
    kind           text        NOT NULL,
    note           text
);
CREATE INDEX match_discrepancies_po ON match_discrepancies (po_id);

-- One row per invoice: the exception queue is the rows in WAITING or EXCEPTION.
--   WAITING    no PO yet, or not enough received: re-evaluated when a PO or receipt arrives
--   EXCEPTION  failed the match (PRICE_VARIANCE, CURRENCY, DUPLICATE_INVOICE, ...): a person
--              resolves it (`supplybus exceptions resolve`)
--   MATCHED    matched (clean, within tolerance, or accepted): InvoiceMatched, BudgetActualized
--   REJECTED   rejected by a person: never paid
CREATE TABLE invoices (
    invoice_id     text          PRIMARY KEY,
    invoice_number text          NOT NULL,
    supplier_id    text          NOT NULL,
    po_id          text          NOT NULL,
    entity_id      text          NOT NULL,
    invoice_date   date          NOT NULL,
    total          numeric(18,4) NOT NULL,
    currency       text          NOT NULL,
    lines          jsonb         NOT NULL,       -- the invoice lines (decimals as strings)
    envelope       jsonb         NOT NULL,       -- the InvoiceReceived's: what it emits is caused by it
    status         text          NOT NULL,
    reasons        jsonb         NOT NULL DEFAULT '[]',   -- [{code, po_line_number, message}]
    duplicate_of   text,                         -- the invoice it repeats or resembles
    tolerance_applied boolean    NOT NULL DEFAULT false,
    matched_total  numeric(18,4),
    resolved_by    text,
    resolution     text,                         -- ACCEPT, REJECT
    resolution_reason text,
    received_at    timestamptz   NOT NULL,       -- the InvoiceReceived's occurred_at
    updated_at     timestamptz   NOT NULL DEFAULT now()
);
CREATE INDEX invoices_po ON invoices (po_id);
CREATE INDEX invoices_number ON invoices (supplier_id, invoice_number);
CREATE INDEX invoices_queue ON invoices (status) WHERE status IN ('WAITING', 'EXCEPTION');

-- What invoice-match actualized per PO and cost center (so that an overrun is committed first).
CREATE TABLE match_actuals (
    po_id          text          NOT NULL,
    cost_center_id text          NOT NULL,
    actualized     numeric(18,4) NOT NULL DEFAULT 0,
    PRIMARY KEY (po_id, cost_center_id)
);

-- The payment of a matched invoice: exactly one row per invoice, so PaymentAuthorized is
-- emitted at most once whatever is replayed. HELD (holds listed) -> AUTHORIZED.
CREATE TABLE invoice_payments (
    invoice_id     text          PRIMARY KEY REFERENCES invoices,
    payment_id     text          NOT NULL UNIQUE,
    status         text          NOT NULL CHECK (status IN ('HELD', 'AUTHORIZED')),
    holds          text[]        NOT NULL DEFAULT '{}',
    amount         numeric(18,4) NOT NULL,
    currency       text          NOT NULL,
    authorized_by  text,
    authorized_at  timestamptz,
    event_id       uuid,                         -- the PaymentAuthorized
    updated_at     timestamptz   NOT NULL DEFAULT now()
);

-- The payment-run files for the ERP (one per authorization, docs/outbound-payments.md),
-- written by the payment dispatcher (consumers/finance/payment_dispatch.py).
CREATE TABLE payment_deliveries (
    payment_id      text        PRIMARY KEY,
    invoice_id      text        NOT NULL UNIQUE,
    file_name       text        NOT NULL,
    document        jsonb       NOT NULL,
    status          text        NOT NULL DEFAULT 'PENDING',   -- PENDING, DELIVERED
    attempts        int         NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    delivered_at    timestamptz,
    delivered_to    text
);
CREATE INDEX payment_deliveries_pending ON payment_deliveries (next_attempt_at)
    WHERE status = 'PENDING';
