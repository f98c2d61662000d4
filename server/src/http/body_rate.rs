//! A request body that must keep coming: while the server waits for it,
//! the client must send on average `min-body-rate` bytes per second, after
//! a grace. Only time the server spends waiting counts, so a busy server
//! never cuts off a client for its own slowness. A body sent a byte every
//! few seconds (holding a connection for hours) fails with a clear error;
//! tower-http's body timeout resets on every frame, so it would not.

use axum::body::Body;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

#[derive(Debug, thiserror::Error)]
#[error("the request body came slower than {min_rate} bytes per second ([http] min-body-rate): {received} bytes in {waited:?} of waiting")]
pub struct TooSlow {
    min_rate: u64,
    received: u64,
    waited: Duration,
}

pub struct MinRateBody {
    inner: Body,
    min_rate: u64,
    grace: Duration,
    received: u64,
    waited: Duration,
    wait_started: Option<Instant>,
    timer: Option<Pin<Box<Sleep>>>,
}

impl MinRateBody {
    /// `min_rate` 0 imposes nothing.
    pub fn new(inner: Body, min_rate: u64, grace: Duration) -> Self {
        MinRateBody {
            inner,
            min_rate,
            grace,
            received: 0,
            waited: Duration::ZERO,
            wait_started: None,
            timer: None,
        }
    }

    /// How long the server may wait in all, given what arrived so far.
    fn allowed_wait(&self) -> Duration {
        self.grace + Duration::from_secs_f64(self.received as f64 / self.min_rate as f64)
    }

    fn too_slow(&self, now: Instant) -> TooSlow {
        TooSlow {
            min_rate: self.min_rate,
            received: self.received,
            waited: self.waited + self.wait_started.map_or(Duration::ZERO, |s| now - s),
        }
    }
}

impl http_body::Body for MinRateBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                if let Some(started) = this.wait_started.take() {
                    this.waited += started.elapsed();
                }
                if let Some(Ok(data)) = frame.as_ref().map(|f| f.as_ref().map(Frame::data_ref)) {
                    this.received += data.map_or(0, |d| d.len() as u64);
                }
                Poll::Ready(frame)
            }
            Poll::Pending if this.min_rate == 0 => Poll::Pending,
            Poll::Pending => {
                let now = Instant::now();
                let started = *this.wait_started.get_or_insert(now);
                let deadline = started + this.allowed_wait().saturating_sub(this.waited);
                if now >= deadline {
                    return Poll::Ready(Some(Err(axum::Error::new(this.too_slow(now)))));
                }
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                timer.as_mut().reset(deadline);
                if timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Some(Err(axum::Error::new(this.too_slow(now)))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// `req` with its body held to the rate (a no-op for bodiless requests).
pub fn limit(
    req: axum::extract::Request,
    min_rate: u64,
    grace: Duration,
) -> axum::extract::Request {
    use http_body::Body as _;
    // Most requests (narinfo, NAR) have no body: leave them unwrapped, off
    // the hot path's allocations.
    if min_rate == 0 || req.body().is_end_stream() {
        return req;
    }
    req.map(|b| Body::new(MinRateBody::new(b, min_rate, grace)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    /// A body fed by hand: `send` a chunk, or drop the sender to end it.
    fn channel() -> (
        futures::channel::mpsc::UnboundedSender<Result<Bytes, std::io::Error>>,
        Body,
    ) {
        let (tx, rx) = futures::channel::mpsc::unbounded();
        (tx, Body::from_stream(rx))
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickle_is_cut_off_and_a_steady_body_is_not() {
        let (tx, body) = channel();
        let mut stream =
            Body::new(MinRateBody::new(body, 1024, Duration::from_secs(10))).into_data_stream();
        let reader = tokio::spawn(async move {
            let mut got = 0;
            while let Some(chunk) = stream.next().await {
                match chunk {
                    Ok(c) => got += c.len(),
                    Err(e) => return Err((got, e.to_string())),
                }
            }
            Ok(got)
        });
        // Steady: 4 KiB a second for 20 s stays well above 1 KiB/s.
        for _ in 0..20 {
            tx.unbounded_send(Ok(Bytes::from(vec![0u8; 4096]))).unwrap();
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        assert!(!reader.is_finished());
        // Then a byte every 5 s: the waiting outgrows what was sent.
        for _ in 0..40 {
            if reader.is_finished() {
                break;
            }
            tx.unbounded_send(Ok(Bytes::from_static(b"x"))).unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        let (got, why) = reader.await.unwrap().expect_err("cut off");
        assert!(got >= 20 * 4096, "{got}");
        assert!(why.contains("min-body-rate"), "{why}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_never_comes_fails_after_the_grace() {
        let (_tx, body) = channel();
        let mut stream =
            Body::new(MinRateBody::new(body, 1024, Duration::from_secs(30))).into_data_stream();
        let began = Instant::now();
        assert!(stream.next().await.unwrap().is_err());
        let waited = began.elapsed();
        assert!(
            waited >= Duration::from_secs(30) && waited < Duration::from_secs(31),
            "{waited:?}"
        );
    }
}
