-- Revocation. A revocation marks keys and/or upload records (never deletes
-- them: history stays visible, marked) and removes from the cache every path
-- left with no unrevoked record, noting it in revoked_paths (the feed fleets
-- check their stores against).
CREATE TABLE revocations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    actor TEXT NOT NULL,
    reason TEXT NOT NULL,
    selector TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

ALTER TABLE signing_keys ADD COLUMN revocation_id BIGINT REFERENCES revocations(id);
ALTER TABLE uploads ADD COLUMN revocation_id BIGINT REFERENCES revocations(id);

CREATE TABLE revoked_paths (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    cache_id BIGINT NOT NULL REFERENCES caches(id) ON DELETE CASCADE,
    store_path_hash TEXT NOT NULL,
    store_path TEXT NOT NULL,
    nar_hash TEXT NOT NULL,
    revocation_id BIGINT NOT NULL REFERENCES revocations(id),
    created_at BIGINT NOT NULL
);
CREATE INDEX revoked_paths_cache ON revoked_paths(cache_id, id);
