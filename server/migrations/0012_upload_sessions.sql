-- Uploads sent in parts (docs/client.md, "Behind a proxy"): a session is
-- opened with the signed statement, its parts are stored as objects under
-- uploads/<id>/ as they arrive (on any replica), and completing it streams
-- them through the ingest in order. Abandoned sessions, and their objects,
-- are reclaimed by garbage collection once they can no longer complete.
CREATE TABLE upload_sessions (
    id TEXT PRIMARY KEY,
    cache_id BIGINT NOT NULL REFERENCES caches(id) ON DELETE CASCADE,
    -- The statement (UploadPathNarInfo JSON) exactly as received.
    info TEXT NOT NULL,
    -- Its key and nonce: one session per statement.
    key_id TEXT NOT NULL,
    statement_key TEXT NOT NULL UNIQUE,
    nar_size BIGINT NOT NULL,
    part_size BIGINT NOT NULL,
    -- Its key's not_after plus the completion grace.
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    -- While a replica completes it: others answer "retry" until then.
    completing_until BIGINT,
    -- Set when completed: the outcome a repeated completion answers.
    outcome TEXT
);
CREATE INDEX upload_sessions_expiry ON upload_sessions (expires_at);
CREATE INDEX upload_sessions_key ON upload_sessions (key_id);

CREATE TABLE upload_session_parts (
    session_id TEXT NOT NULL REFERENCES upload_sessions(id) ON DELETE CASCADE,
    part BIGINT NOT NULL,
    size BIGINT NOT NULL,
    PRIMARY KEY (session_id, part)
);
