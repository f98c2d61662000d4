-- Names with one meaning each, before a transparency log freezes them:
-- a store path in a cache is a path (was "object", which also meant a
-- stored pack); a short-term key certified by the CA is an upload key (was
-- "signing key", which also meant a cache's Nix key); a chunk's bytes lie
-- in a pack (pack_key, pack_offset).
ALTER TABLE objects RENAME TO paths;
DROP INDEX objects_nar;
CREATE INDEX paths_nar ON paths(nar_id);

ALTER TABLE signing_keys RENAME TO upload_keys;
DROP INDEX signing_keys_cache;
DROP INDEX signing_keys_repository;
CREATE INDEX upload_keys_cache ON upload_keys(cache_id, created_at);
CREATE INDEX upload_keys_repository ON upload_keys(repository_id);

ALTER TABLE uploads RENAME COLUMN signing_key_id TO upload_key_id;
ALTER TABLE divergences RENAME COLUMN signing_key_id TO upload_key_id;

ALTER TABLE chunks RENAME COLUMN object_key TO pack_key;
ALTER TABLE chunks RENAME COLUMN object_offset TO pack_offset;
DROP INDEX chunks_object_key;
CREATE INDEX chunks_pack_key ON chunks(pack_key);

-- The ledger: every entry of a cache's append-only history (an upload key
-- certified, an upload record, a divergence, a revocation), numbered per
-- cache in the order the transactions that wrote them committed, with no
-- gaps. The number is taken from ledger_heads in the writing transaction,
-- as its last statement: the row lock it takes is held until commit, so
-- appenders to one cache commit one after another (server/src/db/ledger.rs).
CREATE TABLE ledger_heads (
    cache_id BIGINT PRIMARY KEY REFERENCES caches(id) ON DELETE CASCADE,
    last_seq BIGINT NOT NULL
);
CREATE TABLE ledger (
    cache_id BIGINT NOT NULL REFERENCES caches(id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    kind TEXT NOT NULL,
    record_id BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (cache_id, seq)
);
CREATE INDEX ledger_record ON ledger(kind, record_id);

-- History written before the ledger, in time order (ties: keys before the
-- records they signed, then by id): its commit order was never recorded.
INSERT INTO ledger (cache_id, seq, kind, record_id, created_at)
SELECT cache_id,
       ROW_NUMBER() OVER (PARTITION BY cache_id ORDER BY created_at, rank, record_id),
       kind, record_id, created_at
FROM (
    SELECT cache_id, 'upload-key' AS kind, id AS record_id, created_at, 0 AS rank FROM upload_keys
    UNION ALL
    SELECT cache_id, 'upload', id, created_at, 1 FROM uploads
    UNION ALL
    SELECT cache_id, 'divergence', id, created_at, 2 FROM divergences
    UNION ALL
    SELECT touched.cache_id, 'revocation', r.id, r.created_at, 3
    FROM revocations r JOIN (
        SELECT cache_id, revocation_id FROM upload_keys WHERE revocation_id IS NOT NULL
        UNION
        SELECT cache_id, revocation_id FROM uploads WHERE revocation_id IS NOT NULL
        UNION
        SELECT cache_id, revocation_id FROM revoked_paths
    ) touched ON touched.revocation_id = r.id
) history;

INSERT INTO ledger_heads (cache_id, last_seq)
SELECT cache_id, MAX(seq) FROM ledger GROUP BY cache_id;
