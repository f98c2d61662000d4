-- NAR files PUT by Nix's own HTTP binary cache upload (`nix copy --to
-- http://...`), waiting for the narinfo PUT that makes them a path
-- (docs/nix-copy.md). file is the name Nix gives (the file's SHA-256 and
-- compression, checked on arrival); the bytes are stored as
-- nix-copy/<id>. GC reclaims a staged file an hour after its PUT unless a
-- narinfo is being ingested from it (claimed_until).
CREATE TABLE staged_nars (
    id TEXT PRIMARY KEY,
    cache_id BIGINT NOT NULL REFERENCES caches(id) ON DELETE CASCADE,
    file TEXT NOT NULL,
    file_size BIGINT NOT NULL,
    uploaded_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    claimed_until BIGINT,
    UNIQUE (cache_id, file)
);
CREATE INDEX staged_nars_age ON staged_nars (created_at);
