//! What auditors and admins read and do about history: provenance records,
//! keys issued, divergences, the in-toto export, revocation and its feed.

pub mod provenance;
pub mod revocation;
