//! Pure authorization decisions for provenix. No I/O: the server asks these
//! functions and acts on the answer, so every rule is unit-tested here.

pub mod cache_name;
pub mod permissions;
pub mod publisher;

pub use cache_name::{validate_cache_name, CacheNameError};
pub use permissions::{CachePermissions, Permission};
pub use publisher::{find_match, Mismatch, Publisher};
