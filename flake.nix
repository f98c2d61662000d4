# provenix: the server and the client as packages, a NixOS module
# (services.provenixd, shaped like nixpkgs' services.atticd) and a
# nix-darwin module (launchd). docs/deployment.md says what was tested:
# these files are parse-checked by the test suite; no nixpkgs is reachable
# from the machines that test provenix, so they are not built there.
{
  description = "provenix: a Nix binary cache whose every upload says who made it";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" "x86_64-darwin" "aarch64-darwin" ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      packages = forAllSystems (pkgs: rec {
        provenix-server = pkgs.callPackage ./nix/package.nix { crate = "provenix-server"; };
        provenix-client = pkgs.callPackage ./nix/package.nix { crate = "provenix-client"; };
        default = provenix-server;
      });

      overlays.default = final: _prev: {
        provenix-server = final.callPackage ./nix/package.nix { crate = "provenix-server"; };
        provenix-client = final.callPackage ./nix/package.nix { crate = "provenix-client"; };
      };

      nixosModules.provenixd = {
        imports = [ ./nix/nixos-module.nix ];
        nixpkgs.overlays = [ self.overlays.default ];
      };
      nixosModules.default = self.nixosModules.provenixd;

      darwinModules.provenixd = {
        imports = [ ./nix/darwin-module.nix ];
        nixpkgs.overlays = [ self.overlays.default ];
      };
      darwinModules.default = self.darwinModules.provenixd;
    };
}
