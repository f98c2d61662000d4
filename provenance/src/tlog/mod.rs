//! A cache's transparency log, to the C2SP specifications: entries
//! (`entry.rs`, provenix's own versioned encoding), the RFC 6962 Merkle
//! tree over them kept as stored hashes (`tree.rs`), tile and entry
//! bundle paths and bodies (`tiles.rs`, c2sp.org/tlog-tiles), and signed
//! checkpoints (`checkpoint.rs`, c2sp.org/tlog-checkpoint and signed-note).
//!
//! The Merkle math is `tlog_tiles` (Cloudflare's port of Go's
//! golang.org/x/mod/sumdb/tlog, which Go's checksum database runs on) and
//! the note format `signed_note` (its companion): both are what the
//! specifications were written from, so provenix's log is what other C2SP
//! tools read. Nothing here does I/O: the server hands in the hashes a
//! computation reads (see [`tree::indexes_read_by`]).

pub mod checkpoint;
pub mod entry;
pub mod proof;
pub mod tiles;
pub mod tree;
pub mod upload_check;
pub mod witness;

pub use tlog_tiles::{Hash, Tile};
