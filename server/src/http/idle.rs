//! A connection's last activity: every read or write that moves a byte
//! stamps it, and [`Activity::idle_for`] resolves once nothing has moved
//! for a given time. Written by hand: the timeouts hyper has cover headers,
//! not a connection stalled mid-body or a client that stopped reading.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// When a byte last moved, in milliseconds since the connection began.
#[derive(Clone)]
pub struct Activity {
    began: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Activity {
    fn stamp(&self) {
        let ms = self.began.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Resolves when no byte has moved for `limit`.
    pub async fn idle_for(&self, limit: Duration) {
        loop {
            let last = self.began + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let deadline = last + limit;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// Bytes moved on client connections, for the metrics.
#[derive(Clone, Default)]
pub struct Traffic {
    pub received: prometheus_client::metrics::counter::Counter,
    pub sent: prometheus_client::metrics::counter::Counter,
}

/// An I/O stream that stamps its [`Activity`] and counts its [`Traffic`].
pub struct WatchedIo<T> {
    inner: T,
    activity: Activity,
    traffic: Traffic,
}

impl<T> WatchedIo<T> {
    pub fn new(inner: T) -> Self {
        Self::counting(inner, Traffic::default())
    }

    pub fn counting(inner: T, traffic: Traffic) -> Self {
        WatchedIo {
            inner,
            activity: Activity {
                began: Instant::now(),
                last_ms: Arc::new(AtomicU64::new(0)),
            },
            traffic,
        }
    }

    pub fn activity(&self) -> Activity {
        self.activity.clone()
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WatchedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        if read > 0 {
            self.activity.stamp();
            self.traffic.received.inc_by(read as u64);
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WatchedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            if n > 0 {
                self.activity.stamp();
                self.traffic.sent.inc_by(n as u64);
            }
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = r {
            if n > 0 {
                self.activity.stamp();
                self.traffic.sent.inc_by(n as u64);
            }
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn idle_resolves_only_after_a_quiet_stretch() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut watched = WatchedIo::new(a);
        let activity = watched.activity();
        let idle = tokio::spawn(async move { activity.idle_for(Duration::from_secs(10)).await });
        tokio::time::sleep(Duration::from_secs(6)).await;
        b.write_all(b"x").await.unwrap();
        let mut byte = [0u8; 1];
        watched.read_exact(&mut byte).await.unwrap();
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert!(!idle.is_finished(), "a byte 6 s ago keeps it alive");
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(idle.is_finished(), "11 s quiet: idle");
    }
}
