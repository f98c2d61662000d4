//! Serving the Nix binary cache protocol: `nix-cache-info`, narinfo signed
//! at fetch time with the cache's keys, and NARs streamed from their packs.

pub mod binary_cache;
pub mod cache_keys;
pub mod pack_reads;
pub mod signed_narinfo;
pub mod stored_tiles;
pub mod tile_memo;
pub mod tlog;
