-- Binary cache core. Times are Unix seconds; booleans are 0/1 so the same
-- queries read them on SQLite and PostgreSQL.
CREATE TABLE caches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    is_public BIGINT NOT NULL,
    priority BIGINT NOT NULL,
    store_dir TEXT NOT NULL,
    upstream_cache_key_names TEXT NOT NULL,
    retention_period BIGINT,
    created_at BIGINT NOT NULL
);

-- Signing keys of a cache. Every key whose retire_at is NULL or in the future
-- signs narinfo; rotation sets retire_at on the old key (the overlap).
CREATE TABLE cache_keys (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    cache_id BIGINT NOT NULL REFERENCES caches(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    secret TEXT NOT NULL,
    public_key TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    retire_at BIGINT
);
CREATE INDEX cache_keys_cache ON cache_keys(cache_id);

-- One row per distinct NAR, shared by every cache that holds it.
CREATE TABLE nars (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    nar_hash TEXT NOT NULL UNIQUE,
    nar_size BIGINT NOT NULL,
    compression TEXT NOT NULL,
    file_size BIGINT NOT NULL,
    num_chunks BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Content-defined chunks. object_key is unique per stored object; state is
-- 'valid' or 'deleting' (GC has claimed it).
CREATE TABLE chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    chunk_hash TEXT NOT NULL,
    compression TEXT NOT NULL,
    chunk_size BIGINT NOT NULL,
    file_size BIGINT NOT NULL,
    object_key TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL,
    last_used_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (chunk_hash, compression)
);

CREATE TABLE nar_chunks (
    nar_id BIGINT NOT NULL REFERENCES nars(id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    chunk_id BIGINT NOT NULL REFERENCES chunks(id),
    PRIMARY KEY (nar_id, seq)
);
CREATE INDEX nar_chunks_chunk ON nar_chunks(chunk_id);

-- A store path in a cache.
CREATE TABLE objects (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    cache_id BIGINT NOT NULL REFERENCES caches(id) ON DELETE CASCADE,
    store_path_hash TEXT NOT NULL,
    store_path TEXT NOT NULL,
    nar_id BIGINT NOT NULL REFERENCES nars(id),
    refs TEXT NOT NULL,
    deriver TEXT,
    ca TEXT,
    sigs TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_accessed_at BIGINT NOT NULL,
    UNIQUE (cache_id, store_path_hash)
);
CREATE INDEX objects_nar ON objects(nar_id);
