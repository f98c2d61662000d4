//! The baseline: nginx from Debian's packages serving the same bytes from
//! disk that provenix serves (the narinfo, the NAR as served, nix-cache-info).

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub struct Nginx {
    child: Child,
    pub url: String,
}

impl Nginx {
    /// Serves `root` on a free loopback port.
    pub fn start(work: &Path, root: &Path) -> Result<Nginx> {
        let dir = work.join("nginx");
        std::fs::create_dir_all(dir.join("tmp"))?;
        let port = free_port()?;
        let d = dir.display();
        // A production-like static setup: sendfile, keep-alive, no access log
        // (provenix writes none per request either).
        let conf = format!(
            "daemon off;
worker_processes auto;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_body_temp_path {d}/tmp;
    proxy_temp_path {d}/tmp;
    fastcgi_temp_path {d}/tmp;
    uwsgi_temp_path {d}/tmp;
    scgi_temp_path {d}/tmp;
    types {{ text/x-nix-narinfo narinfo; }}
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        root {};
    }}
}}
",
            root.display()
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf)?;
        let child = Command::new(nginx_binary()?)
            .arg("-c")
            .arg(&conf_path)
            .arg("-p")
            .arg(&dir)
            .stdout(Stdio::null())
            .spawn()
            .context("cannot start nginx")?;
        let nginx = Nginx {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        for _ in 0..100 {
            if crate::curl_status(&format!("{}/", nginx.url)).is_ok() {
                return Ok(nginx);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        bail!("nginx did not start; see {}/error.log", d)
    }
}

/// A free loopback port (bound, then released for nginx to take).
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn nginx_binary() -> Result<PathBuf> {
    for p in ["/usr/sbin/nginx", "/usr/bin/nginx"] {
        if Path::new(p).exists() {
            return Ok(p.into());
        }
    }
    bail!("nginx is not installed (scripts/bench.sh installs Debian's nginx-light)")
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // TERM to the master stops its workers too (KILL would orphan them).
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}
