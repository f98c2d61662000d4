//! A TCP proxy the tests put between provenixd and its S3 server, and turn
//! faults on and off in: every request answered 503, connections reset, or
//! connections stalled (accepted, never answered). A fault applies to new
//! connections and to bytes still flowing on open ones, so kept-alive
//! connections of the server's S3 client see it too. Written here because
//! the fault is in the transport: a proxy crate would hide it.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Fault {
    /// Bytes pass both ways.
    None = 0,
    /// Every request gets `503 Service Unavailable` (S3's "slow down").
    ServerError = 1,
    /// Connections are reset (RST) on their next bytes.
    Reset = 2,
    /// Connections are held open and nothing more is forwarded.
    Stall = 3,
}

impl Fault {
    fn from_u8(v: u8) -> Fault {
        match v {
            1 => Fault::ServerError,
            2 => Fault::Reset,
            3 => Fault::Stall,
            _ => Fault::None,
        }
    }
}

pub struct FaultProxy {
    /// `http://127.0.0.1:PORT`, to use as the S3 endpoint.
    pub endpoint: String,
    mode: Arc<AtomicU8>,
}

impl FaultProxy {
    /// Proxies to `upstream` (`http://HOST:PORT`) from a thread of its own
    /// (so sync and async tests alike can use it), which lives as long as
    /// the test process.
    pub fn start(upstream: &str) -> FaultProxy {
        let upstream = upstream
            .strip_prefix("http://")
            .expect("an http:// upstream")
            .to_string();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let mode = Arc::new(AtomicU8::new(Fault::None as u8));
        let m = mode.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = TcpListener::from_std(listener).unwrap();
                while let Ok((client, _)) = listener.accept().await {
                    let (m, upstream) = (m.clone(), upstream.clone());
                    tokio::spawn(async move { serve(client, &upstream, m).await });
                }
            });
        });
        FaultProxy { endpoint, mode }
    }

    pub fn set(&self, fault: Fault) {
        self.mode.store(fault as u8, Ordering::SeqCst);
    }
}

fn reset(s: TcpStream) {
    // A zero linger makes close send RST at once: it does not block.
    #[allow(deprecated)]
    let _ = s.set_linger(Some(Duration::ZERO));
    drop(s);
}

async fn stall(mut s: TcpStream) {
    // Read and drop whatever comes until the client gives up.
    let mut buf = [0u8; 16 * 1024];
    while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
}

async fn serve(mut client: TcpStream, upstream: &str, mode: Arc<AtomicU8>) {
    let fault = || Fault::from_u8(mode.load(Ordering::SeqCst));
    let mut up = match fault() {
        Fault::Reset => return reset(client),
        Fault::Stall => return stall(client).await,
        Fault::ServerError => return answer_503(client).await,
        Fault::None => match TcpStream::connect(upstream).await {
            Ok(s) => s,
            Err(_) => return reset(client),
        },
    };
    let _ = client.set_nodelay(true);
    let _ = up.set_nodelay(true);
    let mut from_client = vec![0u8; 64 * 1024];
    let mut from_up = vec![0u8; 64 * 1024];
    loop {
        let (n, to_upstream) = tokio::select! {
            r = client.read(&mut from_client) => (r, true),
            r = up.read(&mut from_up) => (r, false),
        };
        let n = match n {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        match fault() {
            Fault::None => {}
            Fault::Reset => {
                reset(up);
                return reset(client);
            }
            Fault::Stall => {
                drop(up);
                return stall(client).await;
            }
            // Mid-connection there is no clean place for an answer.
            Fault::ServerError if !to_upstream => {
                reset(up);
                return reset(client);
            }
            Fault::ServerError => {
                drop(up);
                return answer_503(client).await;
            }
        }
        let written = if to_upstream {
            up.write_all(&from_client[..n]).await
        } else {
            client.write_all(&from_up[..n]).await
        };
        if written.is_err() {
            return;
        }
    }
}

async fn answer_503(mut client: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    // Wait for a request's first bytes, then answer and close.
    if matches!(client.read(&mut buf).await, Ok(n) if n > 0) {
        let body = "<Error><Code>SlowDown</Code><Message>fault injected</Message></Error>";
        let _ = client
            .write_all(
                format!(
                    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            )
            .await;
        let _ = client.shutdown().await;
    }
}
