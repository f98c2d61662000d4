-- The CA certificate in each cache's log (docs/transparency-log.md): the
-- first key certified for a cache under a CA logs that CA's certificate
-- first, in the same transaction, and the key's entry names the CA's
-- entry (ca_index), so a verifier checks the key's certificate against a
-- CA the log holds rather than one the server hands it. A new CA shows in
-- the log as a new entry, for monitors and witnesses to see.
CREATE TABLE logged_cas (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    cache_id BIGINT NOT NULL REFERENCES caches(id) ON DELETE CASCADE,
    -- SHA-256 (hex) of cert_pem: one entry per CA per cache.
    fingerprint TEXT NOT NULL,
    cert_pem TEXT NOT NULL,
    -- The entry's index in the cache's log (its ledger seq - 1).
    log_index BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (cache_id, fingerprint)
);

-- The log index of the CA entry of the CA that certified the key.
ALTER TABLE upload_keys ADD COLUMN ca_index BIGINT;
