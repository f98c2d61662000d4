//! The HTTP server itself, under the router: accepting connections and
//! bounding what each may hold (`[http]` in server.toml). axum::serve has
//! no header timeout, header size limit, idle timeout or connection cap,
//! so connections are served with hyper-util's builder directly.

pub mod body_rate;
pub mod connections;
pub mod idle;
pub mod requests;

pub use connections::serve;
pub use idle::Traffic;
