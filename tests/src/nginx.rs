//! A real nginx (Debian's, installed by scripts/test-all.sh) as the
//! reverse proxy in front of provenix replicas, configured as NixOS
//! configures one: `client_max_body_size 10m`, request bodies buffered,
//! round-robin over the upstreams.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct ReverseProxy {
    child: Child,
    pub url: String,
    dir: tempfile::TempDir,
}

/// A free loopback port (bound, then released for nginx to take), so the
/// servers behind the proxy can be told its URL before it starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn nginx_binary() -> PathBuf {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect(
            "nginx is not installed: run the tests through scripts/test-all.sh, which installs it",
        )
}

impl ReverseProxy {
    /// Proxies 127.0.0.1:`port` to `upstreams` (`http://HOST:PORT` URLs)
    /// with bodies limited to `max_body` (nginx syntax: "10m").
    pub fn start(port: u16, upstreams: &[&str], max_body: &str) -> ReverseProxy {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().display();
        std::fs::create_dir_all(dir.path().join("tmp")).unwrap();
        let servers: String = upstreams
            .iter()
            .map(|u| format!("        server {};\n", u.trim_start_matches("http://")))
            .collect();
        // As root, workers would run as nobody and could not write the
        // test's private temp directory.
        let user = if is_root() { "user root;" } else { "" };
        let conf = format!(
            "daemon off;
{user}
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 256; }}
http {{
    log_format upstreams '$request_method $uri $status $upstream_addr';
    access_log {d}/access.log upstreams;
    client_body_temp_path {d}/tmp;
    proxy_temp_path {d}/tmp;
    fastcgi_temp_path {d}/tmp;
    uwsgi_temp_path {d}/tmp;
    scgi_temp_path {d}/tmp;
    upstream provenix {{
{servers}    }}
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size {max_body};
        location / {{
            proxy_pass http://provenix;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_set_header Host $http_host;
            proxy_read_timeout 300s;
        }}
    }}
}}
"
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(nginx_binary())
            .arg("-c")
            .arg(&conf_path)
            .arg("-p")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start nginx");
        let proxy = ReverseProxy {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
        };
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return proxy;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("nginx did not start: {}", proxy.error_log());
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    /// nginx's access log: one line per request it proxied or refused,
    /// `METHOD URI STATUS UPSTREAM`.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl Drop for ReverseProxy {
    fn drop(&mut self) {
        // TERM to the master stops its workers too (KILL would orphan them).
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- nginx error log ----\n{}", self.error_log());
        }
    }
}
