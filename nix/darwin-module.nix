# services.provenixd for nix-darwin: provenixd as a launchd daemon under
# its own user, as the Attic-on-darwin guides run atticd. launchd has no
# environment files, so a wrapper script reads the secrets file at start.
{ config, lib, pkgs, ... }:

let
  inherit (lib) types mkOption mkEnableOption mkIf mkDefault;
  cfg = config.services.provenixd;
  format = pkgs.formats.toml { };
  configFile = format.generate "provenix-server.toml" cfg.settings;
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
      example = "/etc/provenix/provenixd.env";
      description = "Sourced before start: PROVENIX_SERVER_TOKEN_HS256_SECRET_BASE64=... (mode 0600, owned by the daemon's user).";
    };

    dataDir = mkOption {
      type = types.path;
      default = "/var/lib/provenixd";
      description = "The database and local storage.";
    };

    logFile = mkOption {
      type = types.path;
      default = "/var/log/provenixd.log";
      description = "Where the daemon's output goes.";
    };

    settings = mkOption {
      type = format.type;
      default = { };
      description = "server.toml (docs/configuration.md), rendered as TOML.";
    };
  };

  config = mkIf cfg.enable {
    services.provenixd.settings = {
      listen = mkDefault "127.0.0.1:8080";
      database.url = mkDefault "sqlite://${cfg.dataDir}/server.db?mode=rwc";
      storage = mkDefault {
        type = "local";
        path = "${cfg.dataDir}/storage";
      };
    };

    users.users._provenixd = {
      uid = mkDefault 352;
      gid = mkDefault config.users.groups._provenixd.gid;
      home = cfg.dataDir;
      createHome = true;
      shell = "/usr/bin/false";
      description = "provenixd";
    };
    users.groups._provenixd.gid = mkDefault 352;
    users.knownUsers = [ "_provenixd" ];
    users.knownGroups = [ "_provenixd" ];

    launchd.daemons.provenixd = {
      script = ''
        ${lib.optionalString (cfg.environmentFile != null) ''
          set -a
          . ${cfg.environmentFile}
          set +a
        ''}
        exec ${lib.getExe' cfg.package "provenixd"} -f ${configFile}
      '';
      serviceConfig = {
        UserName = "_provenixd";
        GroupName = "_provenixd";
        WorkingDirectory = cfg.dataDir;
        KeepAlive = true;
        RunAtLoad = true;
        StandardOutPath = cfg.logFile;
        StandardErrorPath = cfg.logFile;
        EnvironmentVariables.PROVENIX_LOG_FORMAT = "text";
      };
    };
  };
}
