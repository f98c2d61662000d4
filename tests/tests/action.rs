//! The GitHub Action in this repository (`action.yml`, `action/*.js`), its
//! steps run with node as a runner runs them: the `INPUT_*` variables, the
//! `GITHUB_STATE`/`GITHUB_PATH`/`GITHUB_STEP_SUMMARY` files, `STATE_*` for
//! the post step, and the job's OIDC token from the issuer fixture. What only
//! GitHub can run (the release workflow, a real runner) is listed in
//! docs/github-actions.md.

use provenix_tests::ci::world;
use provenix_tests::{bin_dir, run, Client, NixStore};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A runner's files for one job.
struct Runner {
    dir: tempfile::TempDir,
}

impl Runner {
    fn new() -> Runner {
        let dir = tempfile::tempdir().unwrap();
        for f in ["state", "env", "path", "summary.md"] {
            std::fs::write(dir.path().join(f), "").unwrap();
        }
        std::fs::create_dir(dir.path().join("temp")).unwrap();
        Runner { dir }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.file(name)).unwrap()
    }

    /// What main saved for post, as the runner hands it over.
    fn state(&self) -> HashMap<String, String> {
        self.read("state")
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (format!("STATE_{k}"), v.to_string()))
            .collect()
    }

    /// `node action/<script>` with the runner's variables, `inputs` and `env`.
    fn step(
        &self,
        script: &str,
        client: &Client,
        inputs: &[(&str, &str)],
        env: &[(String, String)],
    ) -> (bool, String, String) {
        let mut c = Command::new("node");
        c.arg(repo_root().join("action").join(script))
            .env(
                "PATH",
                format!("{}:{}", bin_dir().display(), std::env::var("PATH").unwrap()),
            )
            .env("HOME", client.config_home().parent().unwrap())
            .env("XDG_CONFIG_HOME", client.config_home())
            .env("GITHUB_STATE", self.file("state"))
            .env("GITHUB_ENV", self.file("env"))
            .env("GITHUB_PATH", self.file("path"))
            .env("GITHUB_STEP_SUMMARY", self.file("summary.md"))
            .env("RUNNER_TEMP", self.file("temp"))
            .env("GITHUB_ACTION_REPOSITORY", "provenix/provenix")
            .env_remove("NIX_REMOTE")
            .env_remove("PROVENIX_TOKEN")
            .env_remove("ACTIONS_ID_TOKEN_REQUEST_URL")
            .env_remove("ACTIONS_ID_TOKEN_REQUEST_TOKEN");
        for (k, v) in inputs {
            c.env(format!("INPUT_{}", k.to_uppercase()), v);
        }
        for (k, v) in env {
            c.env(k, v);
        }
        run(&mut c)
    }
}

fn alive(pid: &str) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

#[test]
fn the_action_substitutes_watches_and_pushes_what_the_job_built() {
    let w = world("");
    let admin = w.server.client();
    let pull_token = w.server.token_with("ci-reader", &["pull"]);
    let store = NixStore::new();
    let runner = Runner::new();
    let job = Client::new();
    let oidc = vec![
        (
            "ACTIONS_ID_TOKEN_REQUEST_URL".to_string(),
            w.issuer.request_url.clone(),
        ),
        (
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN".to_string(),
            w.issuer.request_token.clone(),
        ),
    ];
    let root = store.root();
    let inputs = [
        ("server", w.server.url.as_str()),
        ("cache", "main"),
        ("install", "none"),
        ("store", root.as_str()),
        ("token", pull_token.as_str()),
    ];
    let (ok, out, err) = runner.step("main.js", &job, &inputs, &oidc);
    assert!(ok && !out.contains("::error::"), "main failed: {out}{err}");
    assert!(out.contains(&format!("::add-mask::{pull_token}")), "{out}");
    // Nix substitutes from the cache, the pull token in its netrc.
    let nix_dir = job.config_home().join("nix");
    let conf = std::fs::read_to_string(nix_dir.join("nix.conf")).unwrap();
    assert!(conf.contains(&format!("{}/main", w.server.url)), "{conf}");
    assert!(conf.contains(&admin.public_key("main")), "{conf}");
    let netrc = std::fs::read_to_string(nix_dir.join("netrc")).unwrap();
    assert!(netrc.contains(&pull_token));
    let state = runner.state();
    let pid = state["STATE_watcher_pid"].clone();
    let watch_log = || std::fs::read_to_string(&state["STATE_log"]).unwrap_or_default();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        alive(&pid),
        "the watcher is not running: {out}{err}{}",
        watch_log()
    );

    // The job builds; the watcher pushes it while the job goes on.
    let first = store.add_input_addressed("first", &[("bin/app", b"first\n")], &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !admin.run(&["provenance", "main", &first]).0 {
        assert!(
            Instant::now() < deadline,
            "the watcher did not push {first}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Built by the job's last step: pushed by the post step.
    let last = store.add_input_addressed("last", &[("bin/app", b"last\n")], &[&first]);
    let env: Vec<(String, String)> = oidc.iter().cloned().chain(state.clone()).collect();
    let (ok, out, err) = runner.step("post.js", &job, &inputs, &env);
    assert!(ok && !out.contains("::error::"), "post failed: {out}{err}");
    assert!(!alive(&pid), "the watcher is still running");
    for p in [&first, &last] {
        let prov = admin.ok(&["provenance", "main", p, "--json"]);
        assert!(prov.contains("repo:octo-org/octo-repo"), "{p}: {prov}");
    }
    let summary = runner.read("summary.md");
    assert!(
        summary.contains("### provenix: pushed to `main`"),
        "{summary}"
    );
    assert!(summary.contains("| Paths uploaded | 2 |"), "{summary}");
    assert!(
        summary.contains("repo:octo-org/octo-repo:ref:refs/heads/main"),
        "{summary}"
    );
    assert!(
        summary.contains(" B |") || summary.contains("KiB |"),
        "{summary}"
    );
    assert!(!summary.contains(&pull_token), "{summary}");
    assert!(out.contains("Pushed 2 paths"), "{out}");
}

/// A one-file HTTP server for the release downloads.
fn serve_dir(dir: PathBuf) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
            }
            let path = line
                .split(' ')
                .nth(1)
                .unwrap_or("/")
                .trim_start_matches('/');
            let mut stream = stream;
            match std::fs::read(dir.join(path)) {
                Ok(body) => {
                    let _ = write!(
                        stream,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(&body);
                }
                Err(_) => {
                    let _ = write!(
                        stream,
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                }
            }
        }
    });
    url
}

#[test]
fn the_release_binary_is_installed_only_with_its_checksum() {
    // A release as the release workflow publishes it: the archive and
    // SHA256SUMS under releases/download/<tag>/.
    let releases = tempfile::tempdir().unwrap();
    let tag = releases.path().join("v9.9.9");
    std::fs::create_dir(&tag).unwrap();
    let staging = tempfile::tempdir().unwrap();
    let fake = staging.path().join("provenix");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho \"$0 $*\" >> \"$RUNNER_TEMP/calls\"\n",
    )
    .unwrap();
    run(Command::new("chmod").arg("+x").arg(&fake));
    let arch = if cfg!(target_arch = "aarch64") {
        "aarch64"
    } else {
        "x86_64"
    };
    let file = format!("provenix-v9.9.9-{arch}-linux.tar.gz");
    let (ok, _, err) = run(Command::new("tar")
        .arg("-czf")
        .arg(tag.join(&file))
        .arg("-C")
        .arg(staging.path())
        .arg("provenix"));
    assert!(ok, "{err}");
    let (ok, sums, _) = run(Command::new("sha256sum").arg(&file).current_dir(&tag));
    assert!(ok);
    std::fs::write(tag.join("SHA256SUMS"), &sums).unwrap();
    let digest = sums.split_whitespace().next().unwrap().to_string();
    let base = serve_dir(releases.path().to_path_buf());

    let job = Client::new();
    let inputs = |sha: &'static str| {
        vec![
            ("server", "http://127.0.0.1:9"),
            ("cache", "main"),
            ("install", "release"),
            ("version", "v9.9.9"),
            (
                "release-url",
                Box::leak(base.clone().into_boxed_str()) as &str,
            ),
            ("substitute", "false"),
            ("push", "false"),
            ("sha256", sha),
        ]
    };
    // A pinned checksum that is not the archive's: nothing is installed or run.
    let runner = Runner::new();
    let (_, out, _) = runner.step(
        "main.js",
        &job,
        &inputs("0000000000000000000000000000000000000000000000000000000000000000"),
        &[],
    );
    assert!(
        out.contains("::error::") && out.contains("refusing to run it"),
        "{out}"
    );
    assert_eq!(runner.read("path"), "");
    assert!(!runner.file("temp/calls").exists());
    // SHA256SUMS tampered with: the archive is refused too.
    std::fs::write(
        tag.join("SHA256SUMS"),
        sums.replace(&digest[..8], "00000000"),
    )
    .unwrap();
    let runner = Runner::new();
    let (_, out, _) = runner.step("main.js", &job, &inputs(""), &[]);
    assert!(out.contains("refusing to run it"), "{out}");
    std::fs::write(tag.join("SHA256SUMS"), &sums).unwrap();

    // The right checksum (from SHA256SUMS, or pinned): installed, on the
    // job's PATH, and the installed binary is the one that runs.
    for sha in ["", Box::leak(digest.clone().into_boxed_str()) as &str] {
        let runner = Runner::new();
        let (ok, out, err) = runner.step("main.js", &job, &inputs(sha), &[]);
        assert!(ok && !out.contains("::error::"), "{out}{err}");
        let dir = runner.read("path");
        let dir = dir.trim();
        assert!(
            dir.starts_with(runner.file("temp").to_str().unwrap()),
            "{dir}"
        );
        let calls = runner.read("temp/calls");
        assert!(
            calls.contains(&format!("{dir}/provenix login ci http://127.0.0.1:9")),
            "{calls}"
        );
    }
}

/// The release workflow publishes what `install: release` downloads: the
/// archive under the name main.js asks for, and SHA256SUMS.
#[test]
fn the_release_workflow_publishes_what_the_action_downloads() {
    let workflow =
        std::fs::read_to_string(repo_root().join(".github/workflows/release.yml")).unwrap();
    let main = std::fs::read_to_string(repo_root().join("action/main.js")).unwrap();
    assert!(
        workflow.contains("\"dist/provenix-$TAG-$ARCH-linux.tar.gz\""),
        "{workflow}"
    );
    assert!(
        main.contains("`provenix-${version}-${arch}-linux.tar.gz`"),
        "{main}"
    );
    assert!(workflow.contains("sha256sum provenix-*-linux.tar.gz > SHA256SUMS"));
    assert!(main.contains("/SHA256SUMS`"));
    for arch in ["arch: x86_64", "arch: aarch64"] {
        assert!(workflow.contains(arch), "{arch}");
    }
    let action = std::fs::read_to_string(repo_root().join("action.yml")).unwrap();
    assert!(action.contains("main: action/main.js") && action.contains("post: action/post.js"));
}
