-- Chunks are stored packed: many chunks of one upload in one object, each at
-- its own offset (object_offset). object_key therefore stops being unique.
ALTER TABLE chunks DROP CONSTRAINT chunks_object_key_key;
ALTER TABLE chunks ADD COLUMN object_offset BIGINT NOT NULL DEFAULT 0;
CREATE INDEX chunks_object_key ON chunks(object_key);
