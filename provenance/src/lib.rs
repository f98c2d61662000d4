//! Pure formats and crypto shared by the provenix server and client.
//!
//! Nothing in this crate does I/O: every function takes bytes or strings and
//! returns values, so each format is tested with vectors produced by Nix.

pub mod attestation;
pub mod audit;
pub mod cache_info;
pub mod certificate_chain;
pub mod certificate_identity;
pub mod closure;
pub mod error_code;
pub mod exchange;
pub mod hash;
pub mod jwt;
pub mod nar;
pub mod narinfo;
pub mod nix_copy;
pub mod nixbase32;
pub mod pin;
pub mod revocation;
pub mod signing;
pub mod store_path;
pub mod tlog;
pub mod upload;
pub mod upload_parts;

pub use error_code::{ErrorBody, ErrorCode};
pub use hash::NarHash;
pub use narinfo::NarInfo;
pub use signing::{PublicKey, SecretKey};
pub use store_path::{StorePath, DEFAULT_STORE_DIR};
