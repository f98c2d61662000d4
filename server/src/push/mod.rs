//! Pushing: the upload endpoints, the check that a signed statement may
//! go to its cache, the pipeline that chunks, hashes, compresses and packs
//! a NAR, and the commit that makes it visible (retried on conflicts);
//! `parts.rs` takes a NAR in parts for servers behind body-limited proxies;
//! `nix_copy.rs` takes Nix's own HTTP binary cache upload (`nix copy --to`).

pub mod authorize;
pub mod chunk_hash;
pub mod closure;
pub mod commit;
pub mod nix_copy;
pub mod parts;
pub mod pipeline;
pub mod upload;
