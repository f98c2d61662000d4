//! provenixd: the provenix binary cache daemon. docs/architecture.md has
//! the map of these modules and the flows through them.

pub mod access;
pub mod audit;
pub mod clock;
pub mod config;
pub mod db;
pub mod error;
pub mod http;
pub mod identity;
pub mod maintenance;
pub mod manage;
pub mod operate;
pub mod push;
pub mod router;
pub mod serve;
pub mod state;
pub mod storage;
pub mod witness;

pub use router::router;
