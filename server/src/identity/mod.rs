//! Who is calling and what they are given: access tokens (JWT), the caller
//! of a request, OIDC verification, the CA that certifies upload keys, and
//! the exchange of a token for an upload key.

pub mod ca;
pub mod caller;
pub mod exchange;
pub mod oidc;
pub mod token;
