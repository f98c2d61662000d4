//! A request id per request: taken from the proxy's `X-Request-Id` when it
//! is a sane token (nginx's `$request_id`), else drawn here; echoed in the
//! response's `X-Request-Id` and carried by every log line about the
//! request (a tracing span). Written by hand: tower-http's request-id layer
//! would add a dependency for these twenty lines.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use rand::RngCore;
use tracing::Instrument;

pub const HEADER: &str = "x-request-id";

/// A proxy's id is kept only when it is short and plain: it goes into logs.
fn acceptable(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

fn fresh() -> String {
    let mut bytes = [0u8; 8];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

pub async fn layer(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|id| acceptable(id))
        .map_or_else(fresh, str::to_string);
    let span =
        tracing::info_span!("request", id = %id, method = %req.method(), path = %req.uri().path());
    let mut response = next.run(req).instrument(span).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_short_ids_are_kept() {
        assert!(acceptable("f3a9-01.b_c"));
        assert!(!acceptable(""));
        assert!(!acceptable(&"a".repeat(65)));
        assert!(!acceptable("a b"));
        assert!(!acceptable("a\nlevel=error"));
        assert_eq!(fresh().len(), 16);
    }
}
