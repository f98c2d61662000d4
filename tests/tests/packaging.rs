//! Packaging (issue 21): the hardened systemd unit verifies and scores as
//! sandboxed with systemd's own analyzer; the flake and the NixOS and
//! nix-darwin modules parse (no nixpkgs is reachable here to evaluate or
//! build them: docs/deployment.md); and the configuration check the NixOS
//! module runs in its build sandbox touches nothing on disk.

use provenix_tests::bin;
use std::path::Path;
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
}

fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().expect("runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_systemd_unit_verifies_and_is_sandboxed() {
    let unit = std::fs::read_to_string(repo().join("contrib/systemd/provenixd.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/provenixd -f /etc/provenix/server.toml"));
    // verify checks that ExecStart's program exists: point it at the build.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("provenixd.service");
    let built = bin("provenixd");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/provenixd", built.to_str().unwrap()),
    )
    .unwrap();
    let (ok, out, err) = run(Command::new("systemd-analyze").arg("verify").arg(&path));
    assert!(ok && err.trim().is_empty(), "verify: {out}{err}");

    let (ok, out, err) = run(Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&path));
    assert!(ok, "security: {err}");
    let exposure: f64 = out
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for provenixd.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in: {out}"));
    // systemd rates 0-10; below 2 is "OK", a unit without sandboxing ~9.
    assert!(exposure < 2.0, "exposure {exposure}:\n{out}");
}

#[test]
fn the_flake_and_the_modules_parse() {
    for file in [
        "flake.nix",
        "nix/package.nix",
        "nix/nixos-module.nix",
        "nix/darwin-module.nix",
    ] {
        let (ok, _, err) = run(Command::new("nix-instantiate")
            .arg("--parse")
            .arg(repo().join(file)));
        assert!(ok, "{file} does not parse: {err}");
    }
    let module = std::fs::read_to_string(repo().join("nix/nixos-module.nix")).unwrap();
    for option in [
        "environmentFile",
        "settings",
        "database.createLocally",
        "nginx",
    ] {
        assert!(module.contains(option), "the NixOS module lacks {option}");
    }
}

/// The NixOS module checks the rendered server.toml at build time, where
/// nothing may be written and no network is reachable.
#[test]
fn checking_a_config_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let config = dir.path().join("server.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"[::1]:8080\"\n[database]\nurl = \"sqlite://{}/server.db?mode=rwc\"\n[storage]\ntype = \"local\"\npath = \"{}/storage\"\n",
            state.display(),
            state.display()
        ),
    )
    .unwrap();
    let (ok, out, err) = run(Command::new(bin("provenixd"))
        .args(["--mode", "check-config", "-f"])
        .arg(&config)
        .env(
            "PROVENIX_SERVER_TOKEN_HS256_SECRET_BASE64",
            "dGVzdC1zZWNyZXQtdGVzdC1zZWNyZXQtdGVzdC1zZWNyZXQtdGVzdC1zZWNyZXQ=",
        ));
    assert!(ok && out.contains("configuration is valid"), "{out}{err}");
    assert!(!state.exists(), "check-config created {}", state.display());

    // The container example's config is one it can use.
    let (ok, out, err) = run(Command::new(bin("provenixd"))
        .args(["--mode", "check-config", "-f"])
        .arg(repo().join("contrib/docker/server.toml"))
        .env(
            "PROVENIX_SERVER_TOKEN_HS256_SECRET_BASE64",
            "dGVzdC1zZWNyZXQtdGVzdC1zZWNyZXQtdGVzdC1zZWNyZXQtdGVzdC1zZWNyZXQ=",
        ));
    assert!(ok, "contrib/docker/server.toml: {out}{err}");

    // A config it cannot use is a one-line cause and a failure.
    std::fs::write(&config, "listen = 8080\n").unwrap();
    let (ok, _, err) = run(Command::new(bin("provenixd"))
        .args(["--mode", "check-config", "-f"])
        .arg(&config));
    assert!(!ok && err.contains("line 1"), "{err}");
}
