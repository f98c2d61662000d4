//! Administering caches: create, configure, rotate keys, destroy, delete
//! a path, and the trusted publishers of each cache.

pub mod caches;
pub mod publishers;
