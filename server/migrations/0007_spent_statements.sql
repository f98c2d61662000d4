-- Every signed upload statement is single use: its (key, nonce) is
-- recorded in the transaction that records it, and remembered until the
-- key can sign no more (its expiry plus the completion grace).
CREATE TABLE spent_statements (
    upload_key_id BIGINT NOT NULL REFERENCES upload_keys(id) ON DELETE CASCADE,
    nonce TEXT NOT NULL,
    remember_until BIGINT NOT NULL,
    PRIMARY KEY (upload_key_id, nonce)
);
CREATE INDEX spent_statements_until ON spent_statements(remember_until);
