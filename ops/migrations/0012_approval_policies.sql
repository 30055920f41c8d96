-- The approval policies in force: the newest published version of each policy document
-- (ApprovalPolicyUpserted, written by the `approval-policies` processor). While the table holds
-- no enterprise policy, processors route with the policy files they ship (schemas/policies).
CREATE TABLE approval_policies (
    policy_id    text        PRIMARY KEY,
    scope        text        NOT NULL,             -- ENTERPRISE, ENTITY, FACILITY
    scope_id     text,
    version      int         NOT NULL,
    document     text        NOT NULL,             -- the YAML, as published
    checksum     text        NOT NULL,             -- SHA-256 of the document
    published_at timestamptz NOT NULL,
    event_id     uuid        NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
