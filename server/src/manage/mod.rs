//! Administering caches: create, configure, rotate keys, destroy, delete
//! a path, the trusted publishers of each cache and its pins.

pub mod caches;
pub mod pins;
pub mod publishers;
