//! Private Nix stores, made and read with Debian's nix-bin (Nix 2.8) as root
//! with no daemon: `--store DIR` per store, an isolated NIX_CONF_DIR, and a
//! fresh narinfo cache (XDG_CACHE_HOME) for every client call.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::run;

pub struct NixStore {
    pub dir: tempfile::TempDir,
}

impl Default for NixStore {
    fn default() -> Self {
        Self::new()
    }
}

fn nixbase32(bytes: &[u8]) -> String {
    provenix_provenance::nixbase32::encode(bytes)
}

impl NixStore {
    pub fn new() -> NixStore {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("conf")).unwrap();
        std::fs::write(
            dir.path().join("conf/nix.conf"),
            "substituters =\nbuild-users-group =\nsandbox = false\nexperimental-features = nix-command\n",
        )
        .unwrap();
        NixStore { dir }
    }

    /// The `--store` argument.
    pub fn root(&self) -> String {
        self.dir.path().join("root").display().to_string()
    }

    /// A `nix`/`nix-store` command isolated from the machine's config.
    pub fn nix(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        let cache = tempfile::tempdir().unwrap().keep();
        c.env("NIX_CONF_DIR", self.dir.path().join("conf"))
            .env("XDG_CACHE_HOME", cache)
            .env("XDG_CONFIG_HOME", self.dir.path().join("userconf"))
            .env_remove("NIX_REMOTE");
        c
    }

    fn physical(&self, store_path: &str) -> PathBuf {
        PathBuf::from(format!("{}{}", self.root(), store_path))
    }

    /// Registers an input-addressed path (Nix demands a signature to
    /// substitute it) holding `files`, referencing `refs`. The hash part is
    /// derived from `name` and a nonce, as no derivation is built.
    pub fn add_input_addressed(
        &self,
        name: &str,
        files: &[(&str, &[u8])],
        refs: &[&str],
    ) -> String {
        let nonce = format!("{name}-{:?}-{}", self.dir.path(), std::process::id());
        let digest = Sha256::digest(nonce.as_bytes());
        let store_path = format!("/nix/store/{}-{name}", nixbase32(&digest[..20]));
        let phys = self.physical(&store_path);
        std::fs::create_dir_all(&phys).unwrap();
        for (rel, data) in files {
            let p = phys.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, data).unwrap();
        }
        let nar = self
            .nix("nix-store")
            .arg("--dump")
            .arg(&phys)
            .output()
            .unwrap();
        assert!(nar.status.success());
        let hash = hex::encode(Sha256::digest(&nar.stdout));
        let mut reg = format!(
            "{store_path}\nsha256:{hash}\n{}\n\n{}\n",
            nar.stdout.len(),
            refs.len()
        );
        for r in refs {
            reg.push_str(r);
            reg.push('\n');
        }
        let mut child = self
            .nix("nix-store")
            .args(["--store", &self.root(), "--load-db"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(reg.as_bytes())
            .unwrap();
        assert!(
            child.wait().unwrap().success(),
            "nix-store --load-db failed"
        );
        store_path
    }

    /// Content-addressed, as `nix-store --add` makes it.
    pub fn add_file(&self, dir: &Path) -> String {
        let (ok, out, err) = run(self
            .nix("nix-store")
            .args(["--store", &self.root(), "--add"])
            .arg(dir));
        assert!(ok, "nix-store --add: {err}");
        out.trim().to_string()
    }

    pub fn read(&self, store_path: &str, rel: &str) -> Vec<u8> {
        std::fs::read(self.physical(store_path).join(rel)).unwrap()
    }

    pub fn is_valid(&self, store_path: &str) -> bool {
        let (ok, _, _) = run(self.nix("nix-store").args([
            "--store",
            &self.root(),
            "--check-validity",
            store_path,
        ]));
        ok
    }

    /// `nix copy --from URL --to THIS PATH`, trusting `keys`, with an optional
    /// netrc for private caches. Returns (success, stderr).
    pub fn copy_from(
        &self,
        url: &str,
        path: &str,
        keys: &[&str],
        netrc: Option<(&str, &str)>,
    ) -> (bool, String) {
        let conf = tempfile::tempdir().unwrap().keep();
        let mut text = format!(
            "substituters =\nbuild-users-group =\nsandbox = false\nexperimental-features = nix-command\ntrusted-public-keys = {}\n",
            keys.join(" ")
        );
        if let Some((host, token)) = netrc {
            let netrc_path = conf.join("netrc");
            std::fs::write(&netrc_path, format!("machine {host} password {token}\n")).unwrap();
            text.push_str(&format!("netrc-file = {}\n", netrc_path.display()));
        }
        std::fs::write(conf.join("nix.conf"), text).unwrap();
        let mut c = self.nix("nix");
        c.env("NIX_CONF_DIR", &conf)
            .args(["copy", "--from", url, "--to", &self.root(), path]);
        let (ok, _, err) = run(&mut c);
        (ok, err)
    }
}
