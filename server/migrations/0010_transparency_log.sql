-- A transparency log per cache (docs/transparency-log.md): a Merkle tree
-- over the cache's ledger entries in ledger order (entry index = seq - 1),
-- integrated after commit by whichever replica takes the log's head row.

-- The cache's checkpoint keys: ed25519, apart from its Nix keys. The
-- newest one not retired signs. origin is the log's origin line (and the
-- key's name), fixed when the first key was made: a log keeps its
-- identity when the server's endpoint changes. secret: the seed, hex.
CREATE TABLE log_keys (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    cache_id BIGINT NOT NULL REFERENCES caches(id) ON DELETE CASCADE,
    origin TEXT NOT NULL,
    secret TEXT NOT NULL,
    verifier_key TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    retire_at BIGINT
);
CREATE INDEX log_keys_cache ON log_keys(cache_id);

-- Each entry as integrated: the exact bytes its leaf hashes.
CREATE TABLE log_entries (
    cache_id BIGINT NOT NULL REFERENCES caches(id) ON DELETE CASCADE,
    idx BIGINT NOT NULL,
    entry TEXT NOT NULL,
    PRIMARY KEY (cache_id, idx)
) WITHOUT ROWID;

-- The tree's stored hashes (hex), by stored hash index (Go's sumdb scheme:
-- tiles, roots and proofs are read from them).
CREATE TABLE log_hashes (
    cache_id BIGINT NOT NULL REFERENCES caches(id) ON DELETE CASCADE,
    idx BIGINT NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (cache_id, idx)
) WITHOUT ROWID;

-- How far each log is integrated, and its latest signed checkpoint; and
-- the latest published one (with its witnesses' cosignatures: the one
-- served), which trails it while witnesses are asked.
CREATE TABLE log_heads (
    cache_id BIGINT PRIMARY KEY REFERENCES caches(id) ON DELETE CASCADE,
    size BIGINT NOT NULL,
    root TEXT NOT NULL,
    checkpoint TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    published TEXT NOT NULL,
    published_size BIGINT NOT NULL
);

-- Every deletion of paths, for the log: GC's expiry and evictions (one row
-- per cache per batch) and explicit deletions. paths: JSON list of the
-- store paths deleted. reason: expired, evicted or deleted.
CREATE TABLE path_deletions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    cache_id BIGINT NOT NULL REFERENCES caches(id) ON DELETE CASCADE,
    reason TEXT NOT NULL,
    actor TEXT NOT NULL,
    paths TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX path_deletions_cache ON path_deletions(cache_id, created_at);
