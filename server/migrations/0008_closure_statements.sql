-- A closure statement: one signed statement by which a push vouches for the
-- paths of its closure the cache already holds (provenance/src/closure.rs),
-- instead of an upload record per path per push. statement is the exact
-- signed text, zstd-compressed; paths is how many it lists.
CREATE TABLE closure_statements (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    cache_id BIGINT NOT NULL REFERENCES caches(id) ON DELETE CASCADE,
    upload_key_id BIGINT NOT NULL REFERENCES upload_keys(id),
    statement BLOB NOT NULL,
    signature TEXT NOT NULL,
    paths BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX closure_statements_key ON closure_statements(upload_key_id);
CREATE INDEX closure_statements_time ON closure_statements(cache_id, created_at);

-- The stored paths a closure statement vouched for: one small row per path
-- per push. Path ids are never reused, so a row outliving its path (deleted,
-- expired, revoked) vouches for nothing; GC purges such rows. The statement
-- itself stays.
CREATE TABLE vouches (
    path_id BIGINT NOT NULL,
    statement_id BIGINT NOT NULL REFERENCES closure_statements(id) ON DELETE CASCADE,
    PRIMARY KEY (path_id, statement_id)
) WITHOUT ROWID;
