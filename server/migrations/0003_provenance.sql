-- Provenance: every accepted upload statement, append-only. outcome is
-- 'uploaded' (the NAR was sent), 'deduplicated' (the server held the NAR) or
-- 'exists' (the cache already had the path with this NAR: another witness).
-- statement is the exact signed text, so anyone can re-verify the signature.
CREATE TABLE uploads (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    cache_id BIGINT NOT NULL REFERENCES caches(id) ON DELETE CASCADE,
    store_path_hash TEXT NOT NULL,
    store_path TEXT NOT NULL,
    nar_hash TEXT NOT NULL,
    nar_size BIGINT NOT NULL,
    signing_key_id BIGINT NOT NULL REFERENCES signing_keys(id),
    statement TEXT NOT NULL,
    signature TEXT NOT NULL,
    outcome TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX uploads_path ON uploads(cache_id, store_path_hash);
CREATE INDEX uploads_key ON uploads(signing_key_id);
CREATE INDEX uploads_time ON uploads(cache_id, created_at);

-- A signed upload of a path the cache holds with another NAR hash: refused
-- (409) and kept here for auditors, with both sides' identities reachable.
CREATE TABLE divergences (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    cache_id BIGINT NOT NULL REFERENCES caches(id) ON DELETE CASCADE,
    store_path_hash TEXT NOT NULL,
    store_path TEXT NOT NULL,
    existing_nar_hash TEXT NOT NULL,
    nar_hash TEXT NOT NULL,
    nar_size BIGINT NOT NULL,
    signing_key_id BIGINT NOT NULL REFERENCES signing_keys(id),
    statement TEXT NOT NULL,
    signature TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX divergences_cache ON divergences(cache_id, created_at);
