-- Growth limits. A cache's max_stored_size (bytes of compressed NAR it may
-- hold; NULL: no limit of its own) is enforced by GC evicting the least
-- recently used paths no pin holds (server/src/maintenance/gc.rs).
ALTER TABLE caches ADD COLUMN max_stored_size BIGINT;
CREATE INDEX paths_last_accessed ON paths(last_accessed_at, id);

-- Pins: a named path a cache keeps, with its closure, from every GC
-- (retention and size). Re-pinning a name adds a revision; the name's
-- keep_revisions newest revisions are kept, older ones dropped.
CREATE TABLE pins (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    cache_id BIGINT NOT NULL REFERENCES caches(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    revision BIGINT NOT NULL,
    store_path TEXT NOT NULL,
    store_path_hash TEXT NOT NULL,
    keep_revisions BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (cache_id, name, revision)
);

-- Every change of a pin, with who made it: the history auditors read and
-- the ledger numbers (entry kind 'pin-change'). dropped is a JSON array of
-- the store paths whose revisions the change released.
CREATE TABLE pin_changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    cache_id BIGINT NOT NULL REFERENCES caches(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    action TEXT NOT NULL,
    store_path TEXT,
    keep_revisions BIGINT,
    dropped TEXT NOT NULL,
    actor TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX pin_changes_cache ON pin_changes(cache_id, id);
