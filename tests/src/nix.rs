//! Private Nix stores, made and read with Debian's nix-bin (Nix 2.8) as root
//! with no daemon: `--store DIR` per store, an isolated NIX_CONF_DIR, and a
//! fresh narinfo cache (XDG_CACHE_HOME) for every client call.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::run;

/// A closure made by [`NixStore::add_closure`].
pub struct Closure {
    /// The path that references every other (pushing it pushes them all).
    pub top: String,
    pub paths: usize,
    pub nar_bytes: u64,
    /// Every path but the top.
    pub members: Vec<String>,
}

pub struct NixStore {
    dir: PathBuf,
    /// Numbers the fresh directories of one call each (see `fresh_dir`).
    calls: AtomicU64,
    /// Set when the store lives in a temporary directory of its own.
    _temp: Option<tempfile::TempDir>,
}

impl Default for NixStore {
    fn default() -> Self {
        Self::new()
    }
}

fn nixbase32(bytes: &[u8]) -> String {
    provenix_provenance::nixbase32::encode(bytes)
}

/// What every store's nix.conf holds: no substituters, no build users, no
/// sandbox (root without a daemon), the `nix` command.
const NIX_CONF: &str =
    "substituters =\nbuild-users-group =\nsandbox = false\nexperimental-features = nix-command\n";

impl NixStore {
    /// A store in a temporary directory, removed when it is dropped.
    pub fn new() -> NixStore {
        let temp = tempfile::tempdir().unwrap();
        let mut store = NixStore::in_dir(temp.path());
        store._temp = Some(temp);
        store
    }

    /// A store (and its configuration) in `dir`, which is created and kept.
    pub fn in_dir(dir: &Path) -> NixStore {
        std::fs::create_dir_all(dir.join("conf")).unwrap();
        std::fs::write(dir.join("conf/nix.conf"), NIX_CONF).unwrap();
        NixStore {
            dir: dir.to_path_buf(),
            calls: AtomicU64::new(0),
            _temp: None,
        }
    }

    /// The `--store` argument.
    pub fn root(&self) -> String {
        self.dir.join("root").display().to_string()
    }

    /// A new empty directory for one call (beside the store, gone with it).
    fn fresh_dir(&self, what: &str) -> PathBuf {
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        let d = self.dir.join(format!("{what}-{n}"));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Points a command that runs Nix (the provenix client, say) at this
    /// store's nix.conf, with a fresh narinfo cache (XDG_CACHE_HOME):
    /// nothing is remembered between calls.
    pub fn isolate<'a>(&self, c: &'a mut Command) -> &'a mut Command {
        c.env("NIX_CONF_DIR", self.dir.join("conf"))
            .env("XDG_CACHE_HOME", self.fresh_dir("cache"))
            .env_remove("NIX_REMOTE")
    }

    /// A `nix`/`nix-store` command isolated from the machine's config (and
    /// the user's: XDG_CONFIG_HOME too).
    pub fn nix(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        self.isolate(&mut c)
            .env("XDG_CONFIG_HOME", self.dir.join("userconf"));
        c
    }

    /// Where a store path's files are on disk.
    pub fn physical(&self, store_path: &str) -> PathBuf {
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
        let nonce = format!("{name}-{:?}-{}", self.dir, std::process::id());
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

    /// Makes `count` paths (each a regular file of `file`'s bytes; path i
    /// references up to four earlier ones, chosen with `rng`; a top path
    /// references every path nothing else references) and registers them
    /// with one `nix-store --load-db`: hundreds of paths in a second.
    /// `label` makes the store paths (the same label, the same paths).
    pub fn add_closure<R: rand::Rng>(
        &self,
        count: usize,
        label: &str,
        rng: &mut R,
        mut file: impl FnMut(&mut R, bool) -> Vec<u8>,
    ) -> anyhow::Result<Closure> {
        use anyhow::Context;
        use provenix_provenance::nar::{self, Node};
        use std::io::Write;
        let mut paths: Vec<String> = Vec::with_capacity(count + 1);
        let mut referenced = vec![false; count];
        let mut registration = String::new();
        let mut nar_bytes = 0u64;
        for i in 0..=count {
            let top = i == count;
            let refs: Vec<usize> = if top {
                (0..count).filter(|&j| !referenced[j]).collect()
            } else if i == 0 {
                vec![]
            } else {
                let n = rng.gen_range(0..=4.min(i));
                let mut r: Vec<usize> = (0..n).map(|_| rng.gen_range(0..i)).collect();
                r.sort_unstable();
                r.dedup();
                r
            };
            for &j in &refs {
                referenced[j] = true;
            }
            let name = if top {
                "closure-top".to_string()
            } else {
                format!("closure-{i:04}")
            };
            let digest = Sha256::digest(format!("{label} {i}"));
            let path = format!("/nix/store/{}-{name}", nixbase32(&digest[..20]));
            let data = file(rng, top);
            let nar = nar::write(&Node::Regular {
                executable: false,
                contents: data.clone(),
            });
            nar_bytes += nar.len() as u64;
            let physical = self.physical(&path);
            std::fs::create_dir_all(physical.parent().context("store dir")?)?;
            std::fs::write(&physical, &data)?;
            registration.push_str(&format!(
                "{path}\nsha256:{}\n{}\n\n{}\n",
                hex::encode(Sha256::digest(&nar)),
                nar.len(),
                refs.len()
            ));
            for &j in &refs {
                registration.push_str(&paths[j]);
                registration.push('\n');
            }
            paths.push(path);
        }
        let mut load = self
            .nix("nix-store")
            .args(["--store", &self.root(), "--load-db"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .context("cannot run nix-store --load-db")?;
        load.stdin
            .take()
            .context("stdin")?
            .write_all(registration.as_bytes())?;
        anyhow::ensure!(load.wait()?.success(), "nix-store --load-db failed");
        Ok(Closure {
            top: paths.pop().context("a top path")?,
            paths: count + 1,
            nar_bytes,
            members: paths,
        })
    }

    /// Adds `source` as a content-addressed path named `name`, as `nix
    /// store add-path` makes it.
    pub fn add_path(&self, source: &Path, name: &str) -> String {
        let (ok, out, err) = run(self
            .nix("nix")
            .args(["store", "add-path", "--store", &self.root(), "--name", name])
            .arg(source));
        assert!(ok, "nix store add-path: {err}");
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
        let trusted = format!("trusted-public-keys = {}\n", keys.join(" "));
        let conf = self.copy_conf(&trusted, netrc);
        let mut c = self.nix("nix");
        c.env("NIX_CONF_DIR", &conf)
            .args(["copy", "--from", url, "--to", &self.root(), path]);
        let (ok, _, err) = run(&mut c);
        (ok, err)
    }

    /// `nix copy --from THIS --to URL PATH`: Nix's own HTTP binary cache
    /// upload (the URL carries `?secret-key=FILE` and `compression=`),
    /// with the token in a netrc. Returns (success, stderr).
    pub fn copy_to(&self, url: &str, path: &str, netrc: Option<(&str, &str)>) -> (bool, String) {
        let conf = self.copy_conf("", netrc);
        let mut c = self.nix("nix");
        c.env("NIX_CONF_DIR", &conf)
            .args(["copy", "--from", &self.root(), "--to", url, path]);
        let (ok, _, err) = run(&mut c);
        (ok, err)
    }

    /// A nix.conf for one copy: the stores' own, `extra`, and a netrc
    /// holding `token` for `host` if given.
    fn copy_conf(&self, extra: &str, netrc: Option<(&str, &str)>) -> PathBuf {
        let conf = self.fresh_dir("copy-conf");
        let mut text = format!("{NIX_CONF}{extra}");
        if let Some((host, token)) = netrc {
            let netrc_path = conf.join("netrc");
            std::fs::write(&netrc_path, format!("machine {host} password {token}\n")).unwrap();
            text.push_str(&format!("netrc-file = {}\n", netrc_path.display()));
        }
        std::fs::write(conf.join("nix.conf"), text).unwrap();
        conf
    }

    /// A Nix signing key pair made by `nix-store --generate-binary-cache-key
    /// NAME`: (secret key file, public key text).
    pub fn generate_key(&self, name: &str) -> (PathBuf, String) {
        let dir = self.fresh_dir("key");
        let (secret, public) = (dir.join("secret"), dir.join("public"));
        let (ok, _, err) = run(self
            .nix("nix-store")
            .args(["--generate-binary-cache-key", name])
            .arg(&secret)
            .arg(&public));
        assert!(ok, "nix-store --generate-binary-cache-key: {err}");
        let public = std::fs::read_to_string(public).unwrap().trim().to_string();
        (secret, public)
    }
}
