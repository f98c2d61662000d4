-- Chunks are stored packed: many chunks of one upload in one object, each at
-- its own offset (object_offset). object_key therefore stops being unique.
-- SQLite cannot drop a UNIQUE constraint, so the table is rebuilt the way
-- SQLite's documentation prescribes (foreign keys off, outside the migrator's
-- transaction, checked before commit). Rows keep their ids.
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;
CREATE TABLE chunks_packed (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    chunk_hash TEXT NOT NULL,
    compression TEXT NOT NULL,
    chunk_size BIGINT NOT NULL,
    file_size BIGINT NOT NULL,
    object_key TEXT NOT NULL,
    object_offset BIGINT NOT NULL DEFAULT 0,
    state TEXT NOT NULL,
    last_used_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (chunk_hash, compression)
);
INSERT INTO chunks_packed (id, chunk_hash, compression, chunk_size, file_size, object_key, object_offset, state, last_used_at, created_at)
    SELECT id, chunk_hash, compression, chunk_size, file_size, object_key, 0, state, last_used_at, created_at FROM chunks;
DROP TABLE chunks;
ALTER TABLE chunks_packed RENAME TO chunks;
CREATE INDEX chunks_object_key ON chunks(object_key);
COMMIT;
PRAGMA foreign_keys = ON;
