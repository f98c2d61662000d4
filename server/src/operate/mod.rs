//! What operators and their orchestrators ask of a running server: liveness
//! and readiness probes, metrics, and the request id that ties a response
//! to its log lines.

pub mod metrics;
pub mod probes;
pub mod request_id;
