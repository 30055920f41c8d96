-- A dead letter is its own record whatever offsets do: after a broker reset offsets restart at
-- 0, so (processor, topic, partition, offset) no longer identifies a record. The identity is a
-- digest of the record itself (where it was read, its timestamp, key and value): a re-delivery
-- of the same record is the same dead letter (attempts + 1); a new record at a reused offset is
-- a new one. Each dead letter also gets a stable id, sent as header sb-dlq-id on the DLQ topic
-- so that consumers of that at-least-once topic can dedupe.
ALTER TABLE dead_letters ADD COLUMN record_digest text;
ALTER TABLE dead_letters ADD COLUMN dead_letter_id uuid;
UPDATE dead_letters SET record_digest = 'legacy-' || id, dead_letter_id = gen_random_uuid();
ALTER TABLE dead_letters ALTER COLUMN record_digest SET NOT NULL;
ALTER TABLE dead_letters ALTER COLUMN dead_letter_id SET NOT NULL;
ALTER TABLE dead_letters DROP CONSTRAINT dead_letters_processor_topic_partition_offset_key;
ALTER TABLE dead_letters ADD CONSTRAINT dead_letters_identity UNIQUE (processor, record_digest);
ALTER TABLE dead_letters ADD CONSTRAINT dead_letters_id_unique UNIQUE (dead_letter_id);
CREATE INDEX dead_letters_source ON dead_letters (processor, topic, partition, "offset");
