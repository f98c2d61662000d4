# One crate of the workspace (provenix-server: provenixd; provenix-client:
# provenix), built from this checkout with the committed Cargo.lock.
{ lib, rustPlatform, crate }:

let
  binaries = {
    provenix-server = "provenixd";
    provenix-client = "provenix";
  };
in
rustPlatform.buildRustPackage {
  pname = crate;
  version = (lib.importTOML ../Cargo.toml).workspace.package.version;

  src = lib.cleanSourceWith {
    src = ../.;
    filter = path: _type: !(lib.hasInfix "/target" path || lib.hasInfix "/fuzz" path);
  };
  cargoLock.lockFile = ../Cargo.lock;

  cargoBuildFlags = [ "-p" crate ];
  # The tests need Nix, PostgreSQL and an S3 server (scripts/test-all.sh).
  doCheck = false;

  meta = {
    description = "provenix, a Nix binary cache whose every upload says who made it";
    license = lib.licenses.asl20;
    mainProgram = binaries.${crate};
    platforms = lib.platforms.unix;
  };
}
