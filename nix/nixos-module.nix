# services.provenixd: provenixd as a hardened systemd service, shaped like
# nixpkgs' services.atticd (settings rendered to server.toml and checked at
# build time, secrets from an environment file, a dynamic user), with
# optional local PostgreSQL and an nginx virtual host in front.
{ config, lib, pkgs, ... }:

let
  inherit (lib) types mkOption mkEnableOption mkIf mkDefault;
  cfg = config.services.provenixd;
  format = pkgs.formats.toml { };
  configFile = format.generate "provenix-server.toml" cfg.settings;

  # provenixd refuses a config it cannot use; check it when the system is
  # built, with a throwaway secret (the real one comes from the
  # environment file at run time).
  checkedConfigFile = pkgs.runCommand "checked-provenix-server.toml" { } ''
    export PROVENIX_SERVER_TOKEN_HS256_SECRET_BASE64="$(head -c 32 /dev/urandom | ${pkgs.coreutils}/bin/base64 -w0)"
    ${lib.getExe' cfg.package "provenixd"} --mode check-config -f ${configFile}
    cp ${configFile} $out
  '';

  # `provenixd make-token` as the service's user, with its environment.
  makeToken = pkgs.writeShellScriptBin "provenixd-make-token" ''
    exec ${config.systemd.package}/bin/systemd-run --quiet --pipe --wait --collect \
      --service-type=exec --property=DynamicUser=yes --property=User=${cfg.user} \
      ${lib.optionalString (cfg.environmentFile != null) "--property=EnvironmentFile=${cfg.environmentFile}"} \
      --property=StateDirectory=provenixd \
      -- ${lib.getExe' cfg.package "provenixd"} -f ${checkedConfigFile} make-token "$@"
  '';

  listen = cfg.settings.listen;
in
{
  options.services.provenixd = {
    enable = mkEnableOption "provenixd, the provenix Nix binary cache server";

    package = mkOption {
      type = types.package;
      default = pkgs.provenix-server;
      defaultText = lib.literalExpression "pkgs.provenix-server";
      description = "The package providing `provenixd`.";
    };

    environmentFile = mkOption {
      type = types.nullOr types.path;
      default = null;
      example = "/run/secrets/provenixd.env";
      description = ''
        A file of environment variables for secrets, never in the Nix
        store: `PROVENIX_SERVER_TOKEN_HS256_SECRET_BASE64` (32 bytes or
        more, base64; e.g. `openssl rand -base64 32`), and for S3
        `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`.
      '';
    };

    user = mkOption {
      type = types.str;
      default = "provenixd";
      description = "The (dynamic) user the server runs as; also its PostgreSQL role.";
    };

    mode = mkOption {
      type = types.enum [ "monolithic" "api-server" "garbage-collector" ];
      default = "monolithic";
      description = ''
        `monolithic` serves and collects garbage; for replicas, run
        `api-server` on each and `garbage-collector` on one.
      '';
    };

    settings = mkOption {
      type = format.type;
      default = { };
      example = lib.literalExpression ''
        {
          listen = "[::1]:8080";
          api-endpoint = "https://cache.example.com/";
          oidc.audience = "provenix:cache.example.com";
        }
      '';
      description = "server.toml (docs/configuration.md), rendered as TOML.";
    };

    database.createLocally = mkEnableOption "a local PostgreSQL database for the server (peer authentication)";

    nginx = {
      enable = mkEnableOption "an nginx virtual host proxying to the server";
      virtualHost = mkOption {
        type = types.str;
        example = "cache.example.com";
        description = "The virtual host's name; set TLS on `services.nginx.virtualHosts.<name>` as usual.";
      };
    };
  };

  config = mkIf cfg.enable {
    assertions = [
      {
        assertion = cfg.environmentFile != null || cfg.settings ? token-hs256-secret-base64;
        message = "services.provenixd: set environmentFile (PROVENIX_SERVER_TOKEN_HS256_SECRET_BASE64) so the token secret stays out of the Nix store.";
      }
    ];

    services.provenixd.settings = {
      listen = mkDefault "[::1]:8080";
      database.url = mkDefault (
        if cfg.database.createLocally
        then "postgresql:///${cfg.user}?host=/run/postgresql"
        else "sqlite:///var/lib/provenixd/server.db?mode=rwc"
      );
      storage = mkDefault {
        type = "local";
        path = "/var/lib/provenixd/storage";
      };
    };

    systemd.services.provenixd = {
      description = "provenix Nix binary cache server";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ] ++ lib.optional cfg.database.createLocally "postgresql.service";
      requires = lib.optional cfg.database.createLocally "postgresql.service";
      environment.PROVENIX_LOG_FORMAT = "text";
      serviceConfig = {
        ExecStart = "${lib.getExe' cfg.package "provenixd"} -f ${checkedConfigFile} --mode ${cfg.mode}";
        EnvironmentFile = lib.optional (cfg.environmentFile != null) cfg.environmentFile;
        DynamicUser = true;
        User = cfg.user;
        StateDirectory = "provenixd";
        StateDirectoryMode = "0700";
        WorkingDirectory = "/var/lib/provenixd";
        Restart = "on-failure";
        RestartSec = 5;
        LimitNOFILE = 65536;
        UMask = "0077";
        # The sandbox of services.atticd, and contrib/systemd/provenixd.service.
        CapabilityBoundingSet = [ "" ];
        DeviceAllow = "";
        DevicePolicy = "closed";
        LockPersonality = true;
        MemoryDenyWriteExecute = true;
        NoNewPrivileges = true;
        PrivateDevices = true;
        PrivateMounts = true;
        PrivateTmp = true;
        PrivateUsers = true;
        ProcSubset = "pid";
        ProtectClock = true;
        ProtectControlGroups = true;
        ProtectHome = true;
        ProtectHostname = true;
        ProtectKernelLogs = true;
        ProtectKernelModules = true;
        ProtectKernelTunables = true;
        ProtectProc = "invisible";
        ProtectSystem = "strict";
        ReadWritePaths =
          let path = cfg.settings.storage.path or "";
          in lib.optional ((cfg.settings.storage.type or "") == "local" && !(lib.hasPrefix "/var/lib/provenixd" path)) path;
        RemoveIPC = true;
        RestrictAddressFamilies = [ "AF_INET" "AF_INET6" "AF_UNIX" ];
        RestrictNamespaces = true;
        RestrictRealtime = true;
        RestrictSUIDSGID = true;
        SystemCallArchitectures = "native";
        SystemCallFilter = [ "@system-service" "~@privileged" "~@resources" ];
      };
    };

    services.postgresql = mkIf cfg.database.createLocally {
      enable = true;
      ensureDatabases = [ cfg.user ];
      ensureUsers = [{ name = cfg.user; ensureDBOwnership = true; }];
    };

    services.nginx = mkIf cfg.nginx.enable {
      enable = true;
      recommendedProxySettings = true;
      virtualHosts.${cfg.nginx.virtualHost} = {
        locations."/" = {
          proxyPass = "http://${listen}";
          # Uploads stream: no size limit, no buffering of request bodies
          # (NixOS's nginx default of 10 MB breaks pushes), long reads.
          extraConfig = ''
            client_max_body_size 0;
            proxy_request_buffering off;
            proxy_buffering off;
            proxy_read_timeout 1h;
            proxy_send_timeout 1h;
          '';
        };
      };
    };

    environment.systemPackages = [ makeToken ];
  };
}
