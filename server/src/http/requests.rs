//! A connection's requests: how many are in flight (until their response
//! body is sent or dropped) and when the last one ended. A connection with
//! none in flight for `header-read-timeout` is closed, whatever else moves
//! on it: HTTP/2 PINGs and SETTINGS cost an attacker nothing and would
//! otherwise hold a connection slot forever (hyper's header timeout is
//! HTTP/1's alone). Written by hand: hyper has no such limit for HTTP/2.

use axum::body::Body;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;

#[derive(Clone)]
pub struct Requests(Arc<Inner>);

struct Inner {
    began: Instant,
    in_flight: AtomicUsize,
    /// When the count last fell to zero (or the connection began), in ms.
    quiet_since_ms: AtomicU64,
}

/// Held for as long as one request is in flight.
pub struct InFlight(Requests);

impl Drop for InFlight {
    fn drop(&mut self) {
        let inner = &(self.0).0;
        inner
            .quiet_since_ms
            .store(inner.began.elapsed().as_millis() as u64, Ordering::Relaxed);
        inner.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Default for Requests {
    fn default() -> Self {
        Requests(Arc::new(Inner {
            began: Instant::now(),
            in_flight: AtomicUsize::new(0),
            quiet_since_ms: AtomicU64::new(0),
        }))
    }
}

impl Requests {
    pub fn begin(&self) -> InFlight {
        self.0.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// Resolves once no request has been in flight for `limit`.
    pub async fn none_for(&self, limit: Duration) {
        loop {
            let wake = if self.0.in_flight.load(Ordering::Relaxed) > 0 {
                Instant::now() + limit
            } else {
                let quiet = Duration::from_millis(self.0.quiet_since_ms.load(Ordering::Relaxed));
                let deadline = self.0.began + quiet + limit;
                if Instant::now() >= deadline && self.0.in_flight.load(Ordering::Relaxed) == 0 {
                    return;
                }
                deadline
            };
            tokio::time::sleep_until(wake).await;
        }
    }
}

/// A response body that keeps its request in flight until it is sent.
pub struct TrackedBody {
    inner: Body,
    _in_flight: InFlight,
}

impl TrackedBody {
    pub fn new(inner: Body, in_flight: InFlight) -> Self {
        TrackedBody {
            inner,
            _in_flight: in_flight,
        }
    }
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn quiet_counts_only_while_nothing_is_in_flight() {
        let requests = Requests::default();
        let watch = {
            let r = requests.clone();
            tokio::spawn(async move { r.none_for(Duration::from_secs(10)).await })
        };
        tokio::time::sleep(Duration::from_secs(4)).await;
        let long = requests.begin();
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(!watch.is_finished(), "a request in flight keeps it open");
        drop(long);
        tokio::time::sleep(Duration::from_secs(9)).await;
        assert!(!watch.is_finished(), "9 s quiet");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(watch.is_finished(), "11 s quiet: closed");
    }
}
