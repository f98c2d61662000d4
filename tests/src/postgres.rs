//! A PostgreSQL cluster of one test's own, for faults the shared one must
//! not see: stopped and started again on the same port while a server uses
//! it. Debian's binaries, run as the postgres user when the tests run as
//! root (PostgreSQL refuses to run as root).

use std::path::PathBuf;
use std::process::Command;

use crate::run;

pub struct OwnPostgres {
    pub url: String,
    dir: tempfile::TempDir,
    port: u16,
    bin: PathBuf,
}

fn as_postgres(program: PathBuf) -> Command {
    if unsafe { libc::geteuid() } == 0 {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

impl OwnPostgres {
    pub fn start() -> OwnPostgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL is installed by scripts/test-all.sh")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .max()
            .expect("a PostgreSQL version");
        let dir = tempfile::Builder::new()
            .prefix("provenix-own-pg")
            .tempdir_in("/tmp")
            .unwrap();
        if unsafe { libc::geteuid() } == 0 {
            run(Command::new("chown").arg("postgres").arg(dir.path()));
        }
        let (ok, _, err) = run(as_postgres(bin.join("initdb"))
            .arg("-D")
            .arg(dir.path().join("data"))
            .args(["-A", "trust", "-U", "postgres", "--no-sync"]));
        assert!(ok, "initdb: {err}");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pg = OwnPostgres {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            dir,
            port,
            bin,
        };
        pg.start_again();
        pg
    }

    /// Starts the stopped cluster on its port.
    pub fn start_again(&self) {
        let (ok, _, err) = run(as_postgres(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .arg("-l")
            .arg(self.dir.path().join("log"))
            .args(["-w", "start", "-o"])
            .arg(format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1",
                self.port,
                self.dir.path().display()
            )));
        assert!(ok, "pg_ctl start: {err}");
    }

    /// Stops it the way a crash or a failover does: at once, every
    /// connection cut.
    pub fn stop(&self) {
        let (ok, _, err) = run(as_postgres(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"]));
        assert!(ok, "pg_ctl stop: {err}");
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = as_postgres(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .output();
    }
}
