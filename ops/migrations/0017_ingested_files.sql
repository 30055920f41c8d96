-- Legacy file drops (producers/files, `supplybus ingest files`): the files ingested, by content.
-- A file whose content (sha256) was ingested for an event type is recognised when it is dropped
-- again and reported "already ingested" (nothing is published twice; its event ids would repeat
-- anyway). A failed file (over its reject limit) is recorded too, and may be dropped again.
CREATE TABLE ingested_files (
    content_sha256 text        NOT NULL,
    event_type     text        NOT NULL,
    file_name      text        NOT NULL,
    mapping        text        NOT NULL,
    status         text        NOT NULL CHECK (status IN ('done', 'failed')),
    lines          bigint      NOT NULL,
    accepted       bigint      NOT NULL,
    rejected       bigint      NOT NULL,
    reason         text,
    first_seen_at  timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (content_sha256, event_type)
);
