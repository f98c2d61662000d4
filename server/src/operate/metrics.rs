//! `GET /metrics`: Prometheus's text format, for operators' alerts. One
//! registry per server state (prometheus-client has no global one, so
//! tests read their own server's counts). Every family is documented in
//! docs/operations.md; who may read them is `[metrics] allow`.

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use provenix_provenance::ErrorCode;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::error::ApiError;
use crate::state::AppState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteStatus {
    pub route: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Route {
    pub route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteCode {
    pub route: &'static str,
    pub code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Kind {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Source {
    pub source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolState {
    pub state: &'static str,
}

fn latency_buckets() -> impl Iterator<Item = f64> {
    // 0.25 ms to ~65 s: narinfo answers in the first buckets, uploads in
    // the last.
    prometheus_client::metrics::histogram::exponential_buckets(0.000_25, 2.0, 19)
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RouteStatus, Counter>,
    pub latency: Family<Route, Histogram, fn() -> Histogram>,
    pub refusals: Family<RouteCode, Counter>,
    pub received_bytes: Counter,
    pub sent_bytes: Counter,
    pub uploads: Family<Outcome, Counter>,
    pub upload_nar_bytes: Counter,
    pub storage_bytes: Family<Kind, Gauge>,
    pub keys_issued: Family<Kind, Counter>,
    pub revocations: Counter,
    pub revoked_paths: Counter,
    pub gc_runs: Counter,
    pub gc_duration: Histogram,
    pub gc_reclaimed_bytes: Counter,
    pub gc_expired_paths: Counter,
    pub gc_evicted_paths: Counter,
    pub log_integrated_entries: Counter,
    pub log_integration_failures: Counter,
    pub log_unpublished_entries: Gauge,
    pub internal_errors: Family<Source, Counter>,
    pub db_pool: Family<PoolState, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("provenix");
        let m = Metrics {
            requests: Family::default(),
            latency: Family::new_with_constructor(|| Histogram::new(latency_buckets())),
            refusals: Family::default(),
            received_bytes: Counter::default(),
            sent_bytes: Counter::default(),
            uploads: Family::default(),
            upload_nar_bytes: Counter::default(),
            storage_bytes: Family::default(),
            keys_issued: Family::default(),
            revocations: Counter::default(),
            revoked_paths: Counter::default(),
            gc_runs: Counter::default(),
            gc_duration: Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.01, 2.0, 16),
            ),
            gc_reclaimed_bytes: Counter::default(),
            gc_expired_paths: Counter::default(),
            gc_evicted_paths: Counter::default(),
            log_integrated_entries: Counter::default(),
            log_integration_failures: Counter::default(),
            log_unpublished_entries: Gauge::default(),
            internal_errors: Family::default(),
            db_pool: Family::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "http_requests",
            "Requests answered, by route class and HTTP status",
            m.requests.clone(),
        );
        r.register(
            "http_request_duration_seconds",
            "Time to the response's head (a NAR's body streams after), by route class",
            m.latency.clone(),
        );
        r.register(
            "refusals",
            "Refusals by route class and error code (the JSON code)",
            m.refusals.clone(),
        );
        r.register(
            "http_received_bytes",
            "Bytes received on client connections",
            m.received_bytes.clone(),
        );
        r.register(
            "http_sent_bytes",
            "Bytes sent on client connections",
            m.sent_bytes.clone(),
        );
        r.register(
            "uploads",
            "Accepted statements by outcome: uploaded, deduplicated (NAR held), exists (path held), vouched (a path a closure statement vouched for)",
            m.uploads.clone(),
        );
        r.register(
            "upload_nar_bytes",
            "NAR bytes of uploads that stored a path",
            m.upload_nar_bytes.clone(),
        );
        r.register(
            "storage_bytes",
            "At the last GC pass: NAR bytes of every NAR held (kind=nar) and stored bytes of their chunks (kind=stored); stored / nar is the dedup and compression ratio. Not per upload: that would tell a pusher whether another cache holds its content",
            m.storage_bytes.clone(),
        );
        r.register(
            "keys_issued",
            "Upload keys certified, by kind (oidc, token)",
            m.keys_issued.clone(),
        );
        r.register(
            "revocations",
            "Revocations committed",
            m.revocations.clone(),
        );
        r.register(
            "revoked_paths",
            "Paths revocations removed",
            m.revoked_paths.clone(),
        );
        r.register(
            "gc_runs",
            "Garbage collection passes of this process",
            m.gc_runs.clone(),
        );
        r.register(
            "gc_duration_seconds",
            "Duration of garbage collection passes",
            m.gc_duration.clone(),
        );
        r.register(
            "gc_reclaimed_bytes",
            "Stored bytes of the chunks garbage collection deleted",
            m.gc_reclaimed_bytes.clone(),
        );
        r.register(
            "gc_expired_paths",
            "Paths garbage collection removed past their retention",
            m.gc_expired_paths.clone(),
        );
        r.register(
            "log_integrated_entries",
            "Ledger entries this process integrated into caches' transparency logs",
            m.log_integrated_entries.clone(),
        );
        r.register(
            "log_integration_failures",
            "Integration passes that failed (the next pass retries from the ledger)",
            m.log_integration_failures.clone(),
        );
        r.register(
            "log_unpublished_entries",
            "Entries integrated but not yet in a published checkpoint, over all logs: publication waits for the witness quorum",
            m.log_unpublished_entries.clone(),
        );
        r.register(
            "gc_evicted_paths",
            "Paths garbage collection removed to bring a cache or the server under its maximum stored size",
            m.gc_evicted_paths.clone(),
        );
        r.register(
            "internal_errors",
            "Internal errors by source (database, storage, other)",
            m.internal_errors.clone(),
        );
        r.register(
            "db_pool_connections",
            "Database pool connections by state (idle, in_use), at scrape time",
            m.db_pool.clone(),
        );
        // Known label sets start at zero, so that a rate over them is
        // defined before the first event (Prometheus's advice).
        for outcome in ["uploaded", "deduplicated", "exists", "vouched"] {
            m.uploads.get_or_create(&Outcome { outcome }).inc_by(0);
        }
        for kind in ["oidc", "token"] {
            m.keys_issued.get_or_create(&Kind { kind }).inc_by(0);
        }
        for source in ["database", "storage", "other"] {
            m.internal_errors
                .get_or_create(&Source { source })
                .inc_by(0);
        }
        Metrics { registry, ..m }
    }

    fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String");
        out
    }
}

/// The class of a request's route, for labels: a bounded set, never the
/// path itself (cache names and hashes would make a family per path).
pub fn route_class(path: &str) -> &'static str {
    match path {
        "/health" | "/ready" => return "probe",
        "/metrics" => return "metrics",
        _ => {}
    }
    if let Some(api) = path.strip_prefix("/_api/v1/") {
        return match api {
            "get-missing-paths" => "missing-paths",
            "upload-path" => "upload",
            "upload-path/existing-nar" => "existing-nar",
            "closure-statements" => "closure-statement",
            "keys/exchange" => "exchange",
            "revoke" => "revoke",
            a if a.contains("/provenance/") || a.ends_with("/uploads") => "audit",
            _ => "api",
        };
    }
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    match (parts.next(), parts.next()) {
        (Some(_), Some("nix-cache-info")) => "nix-cache-info",
        (Some(_), Some(rest)) if rest.starts_with("nar/") => "nar",
        (Some(_), Some(rest)) if rest.ends_with(".narinfo") => "narinfo",
        _ => "other",
    }
}

/// Counts every answer: its route class and status, its latency to the
/// head, and for a refusal its code (and an internal error's source).
pub async fn layer(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let route = route_class(req.uri().path());
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    let m = &state.metrics;
    m.latency
        .get_or_create(&Route { route })
        .observe(started.elapsed().as_secs_f64());
    m.requests
        .get_or_create(&RouteStatus {
            route,
            status: response.status().as_u16(),
        })
        .inc();
    if let Some(refused) = response.extensions().get::<Refused>() {
        m.refusals
            .get_or_create(&RouteCode {
                route,
                code: refused.code.as_str(),
            })
            .inc();
        if let Some(source) = refused.internal {
            m.internal_errors.get_or_create(&Source { source }).inc();
        }
    }
    response
}

/// Left on an error response by [`ApiError`] for [`layer`] to count.
#[derive(Clone, Copy, Debug)]
pub struct Refused {
    pub code: ErrorCode,
    /// For an internal error: database, storage or other.
    pub internal: Option<&'static str>,
}

/// Whether a scrape may be answered: a peer in `[metrics] allow`, and not
/// relayed by a proxy (one on the same host would make every client look
/// like loopback).
pub fn may_scrape(allow: &[ipnet::IpNet], peer: Option<SocketAddr>, headers: &HeaderMap) -> bool {
    let proxied = headers.keys().any(|h| {
        let h = h.as_str();
        matches!(
            h,
            "forwarded" | "via" | "x-real-ip" | "x-client-ip" | "true-client-ip"
        ) || h.starts_with("x-forwarded-")
            || h.ends_with("-connecting-ip")
    });
    match peer {
        Some(peer) if !proxied => {
            let ip = match peer.ip() {
                std::net::IpAddr::V6(v6) => v6
                    .to_ipv4_mapped()
                    .map_or(std::net::IpAddr::V6(v6), std::net::IpAddr::V4),
                v4 => v4,
            };
            allow.iter().any(|net| net.contains(&ip))
        }
        _ => false,
    }
}

pub async fn metrics(
    State(state): State<Arc<AppState>>,
    req: Request,
) -> Result<Response, ApiError> {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(p)| *p);
    if !may_scrape(&state.config.metrics.allow, peer, req.headers()) {
        // The answer for an endpoint that does not exist.
        return Err(ApiError::new(ErrorCode::NotFound, "no such endpoint"));
    }
    let (size, idle) = state.db.pool_use();
    let m = &state.metrics;
    m.db_pool
        .get_or_create(&PoolState { state: "idle" })
        .set(idle as i64);
    m.db_pool
        .get_or_create(&PoolState { state: "in_use" })
        .set((size as usize).saturating_sub(idle) as i64);
    Ok((
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.render(),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_fall_in_a_bounded_set_of_classes() {
        for (path, class) in [
            ("/main/nix-cache-info", "nix-cache-info"),
            ("/main/0123456789abcdfghijklmnpqrsvwxyz.narinfo", "narinfo"),
            ("/main/nar/abc.nar.zst", "nar"),
            ("/_api/v1/upload-path", "upload"),
            ("/_api/v1/upload-path/existing-nar", "existing-nar"),
            ("/_api/v1/get-missing-paths", "missing-paths"),
            ("/_api/v1/closure-statements", "closure-statement"),
            ("/_api/v1/keys/exchange", "exchange"),
            ("/_api/v1/cache/main/provenance/abc", "audit"),
            ("/_api/v1/cache-config/main", "api"),
            ("/health", "probe"),
            ("/metrics", "metrics"),
            ("/", "other"),
            ("/main", "other"),
        ] {
            assert_eq!(route_class(path), class, "{path}");
        }
    }

    #[test]
    fn scrapes_come_from_allowed_peers_and_not_through_a_proxy() {
        let allow: Vec<ipnet::IpNet> = vec![
            "127.0.0.0/8".parse().unwrap(),
            "::1/128".parse().unwrap(),
            "10.1.0.0/16".parse().unwrap(),
        ];
        let none = HeaderMap::new();
        let at = |s: &str| Some(s.parse::<SocketAddr>().unwrap());
        assert!(may_scrape(&allow, at("127.0.0.1:5000"), &none));
        assert!(may_scrape(&allow, at("[::1]:5000"), &none));
        assert!(may_scrape(&allow, at("[::ffff:127.0.0.1]:5000"), &none));
        assert!(may_scrape(&allow, at("10.1.2.3:5000"), &none));
        assert!(!may_scrape(&allow, at("10.2.0.1:5000"), &none));
        assert!(!may_scrape(&allow, at("192.0.2.1:5000"), &none));
        assert!(!may_scrape(&allow, None, &none));
        for header in [
            "x-forwarded-for",
            "forwarded",
            "via",
            "x-real-ip",
            "x-forwarded-host",
            "cf-connecting-ip",
            "true-client-ip",
        ] {
            let mut proxied = HeaderMap::new();
            proxied.insert(header, "192.0.2.1".parse().unwrap());
            assert!(
                !may_scrape(&allow, at("127.0.0.1:5000"), &proxied),
                "{header}"
            );
        }
    }
}
