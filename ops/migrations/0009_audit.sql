-- The tamper-evident audit trail (ADR 0011): every state change of a business entity, appended
-- to a hash chain per entity. consumers/audit/chain.py documents the canonical form hashed.

-- The newest entry of each entity: appenders lock this row, so two transactions never fork a
-- chain; verification compares it with the newest row (a deleted tail shows).
CREATE TABLE audit_heads (
    entity_type text COLLATE "C" NOT NULL,
    entity_id   text COLLATE "C" NOT NULL,
    seq         bigint           NOT NULL,
    hash        text             NOT NULL,
    PRIMARY KEY (entity_type, entity_id)
);

CREATE TABLE audit_log (
    entity_type    text COLLATE "C" NOT NULL,
    entity_id      text COLLATE "C" NOT NULL,
    seq            bigint           NOT NULL CHECK (seq > 0),
    at             timestamptz      NOT NULL,
    actor          text             NOT NULL,
    action         text             NOT NULL,
    reason         text             NOT NULL,
    rule_ids       text[]           NOT NULL,
    rule_version   text             NOT NULL,
    detail         jsonb            NOT NULL,
    event_id       text             NOT NULL,
    correlation_id text             NOT NULL,
    prev_hash      text             NOT NULL,
    hash           text             NOT NULL,
    recorded_at    timestamptz      NOT NULL DEFAULT now(),  -- not hashed: when it was stored
    PRIMARY KEY (entity_type, entity_id, seq),
    UNIQUE (entity_type, entity_id, event_id, action)  -- a re-applied event appends nothing
);
CREATE INDEX audit_log_entity_id ON audit_log (entity_id);
CREATE INDEX audit_log_correlation ON audit_log (correlation_id);

-- Append-only for everyone who does not disable the triggers (the hash chain catches those).
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only (%)', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
