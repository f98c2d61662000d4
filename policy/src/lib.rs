//! Pure authorization decisions for provenix. No I/O: the server asks these
//! functions and acts on the answer, so every rule is unit-tested here.

pub mod access;
pub mod cache_name;
pub mod limits;
pub mod log_monitor;
pub mod permissions;
pub mod publisher;
pub mod retention;
pub mod upload_key;

pub use access::{
    decide, session_permission, Action, CacheFacts, CallerFacts, Decision, Disclosure, Refusal,
    SessionCredential,
};
pub use cache_name::{validate_cache_name, CacheNameError};
pub use permissions::{CachePermissions, Permission};
pub use publisher::{find_match, may_explain_refusal, Mismatch, Publisher};
pub use upload_key::{check_completion, check_session_key, check_upload_key, UploadKeyFacts};
