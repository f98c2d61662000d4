-- Identity exchange: the server's CA, trusted publishers, short-term keys,
-- and OIDC token ids already used.

-- One row (id = 1), made by the first server to start.
CREATE TABLE certificate_authority (
    id BIGINT PRIMARY KEY,
    key_pem TEXT NOT NULL,
    cert_pem TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- spec: JSON of provenix_policy::Publisher.
CREATE TABLE trusted_publishers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    cache_id BIGINT NOT NULL REFERENCES caches(id) ON DELETE CASCADE,
    spec TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX trusted_publishers_cache ON trusted_publishers(cache_id);

-- Short-term signing keys, one per exchange. Kept after expiry: provenance
-- records name them. kind is 'oidc' or 'token'; claims is JSON. repository,
-- repository_id, workflow (file name), workflow_ref and run_id are copied
-- out of the claims so audits can filter on them in SQL.
CREATE TABLE signing_keys (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key_id TEXT NOT NULL UNIQUE,
    public_key TEXT NOT NULL UNIQUE,
    cache_id BIGINT NOT NULL REFERENCES caches(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    issuer TEXT NOT NULL,
    subject TEXT NOT NULL,
    publisher_id BIGINT,
    claims TEXT NOT NULL,
    repository TEXT,
    repository_id TEXT,
    workflow TEXT,
    workflow_ref TEXT,
    run_id TEXT,
    certificate TEXT NOT NULL,
    not_before BIGINT NOT NULL,
    not_after BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX signing_keys_cache ON signing_keys(cache_id, created_at);
CREATE INDEX signing_keys_repository ON signing_keys(repository_id);

-- An OIDC token exchanges once: its jti is kept until it expires, in the
-- database, so neither a restart nor another replica reopens a replay.
CREATE TABLE used_tokens (
    issuer TEXT NOT NULL,
    jti TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (issuer, jti)
);
CREATE INDEX used_tokens_expiry ON used_tokens(expires_at);
