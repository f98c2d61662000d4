//! Accepting connections and serving each with the limits of `[http]`:
//! at most `max-connections` at once (the rest wait in the kernel's listen
//! backlog, costing the server nothing), headers within
//! `header-read-timeout` and `max-header-size`, no connection without a
//! request in flight for `header-read-timeout` (HTTP/1 and HTTP/2 alike),
//! and none with no byte moving for `idle-timeout`.

use anyhow::Result;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::idle::{Traffic, WatchedIo};
use super::requests::{Requests, TrackedBody};
use crate::config::HttpConfig;

/// How long in-flight requests may finish after shutdown is asked for.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

fn builder(http: &HttpConfig) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    // hyper's read buffer is where headers accumulate: its cap is the
    // header limit (431 beyond), and hyper's floor is 8 KiB.
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(http.header_read_timeout)
        .max_buf_size(http.max_header_size.max(8192));
    // No keep-alive PINGs: their traffic would keep a stalled connection
    // looking busy to the idle timer.
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(http.max_header_size).unwrap_or(u32::MAX));
    b
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets the
/// requests in flight finish (up to [`SHUTDOWN_GRACE`]).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    http: &HttpConfig,
    traffic: Traffic,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let builder = builder(http);
    let slots = Arc::new(Semaphore::new(http.max_connections));
    let graceful = GracefulShutdown::new();
    let idle_timeout = http.idle_timeout;
    // hyper's header timeout already covers HTTP/1 (and fires first);
    // this is the same promise for HTTP/2, whose idle streams it lacks.
    let no_request_timeout = http.header_read_timeout;
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot?,
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, say: wait rather than spin.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Small writes (narinfo answers) leave at once, not after Nagle's wait.
        let _ = stream.set_nodelay(true);
        let io = WatchedIo::counting(stream, traffic.clone());
        let activity = io.activity();
        let requests = Requests::default();
        let service = {
            let (app, requests) = (app.clone(), requests.clone());
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                // Who is on the other end (`/metrics` is answered by peer).
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                let in_flight = requests.begin();
                let mut app = app.clone();
                async move {
                    let response = tower_service::Service::call(&mut app, req).await?;
                    Ok::<_, std::convert::Infallible>(
                        response.map(|body| TrackedBody::new(body, in_flight)),
                    )
                }
            })
        };
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(io), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _slot = slot;
            tokio::select! {
                served = conn => if let Err(e) = served {
                    tracing::debug!("connection ended: {e}");
                },
                () = activity.idle_for(idle_timeout) => {
                    tracing::debug!("closing a connection idle for {idle_timeout:?}");
                }
                () = requests.none_for(no_request_timeout) => {
                    tracing::debug!("closing a connection without a request for {no_request_timeout:?}");
                }
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still running {SHUTDOWN_GRACE:?} after shutdown; closing them");
    }
    Ok(())
}
