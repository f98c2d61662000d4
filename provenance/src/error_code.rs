//! The wire contract of a refusal: every API error is JSON `{code, message}`
//! whose `code` is one of these, spelled as today's kebab-case strings, with
//! the HTTP status it always travels with. Server and client share the enum,
//! so a code cannot be misspelt at a call site or matched as a string.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! error_codes {
    ($( $(#[$doc:meta])* $variant:ident = ($wire:literal, $status:literal), )*) => {
        /// A stable, machine-matchable reason for a refusal.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $( $(#[$doc])* $variant, )*
            /// A code this build does not know (a newer server's).
            Unknown,
        }

        impl ErrorCode {
            /// Every known code, for tables and tests.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The spelling on the wire.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $wire,)*
                    ErrorCode::Unknown => "unknown",
                }
            }

            /// The HTTP status this code is always sent with.
            pub fn http_status(self) -> u16 {
                match self {
                    $(ErrorCode::$variant => $status,)*
                    ErrorCode::Unknown => 500,
                }
            }

            /// The code spelt `wire`, or `Unknown`.
            pub fn from_wire(wire: &str) -> ErrorCode {
                match wire {
                    $($wire => ErrorCode::$variant,)*
                    _ => ErrorCode::Unknown,
                }
            }
        }
    };
}

error_codes! {
    // Who is calling.
    /// The `Authorization` header or a token in it is not valid.
    InvalidToken = ("invalid-token", 401),
    /// A token (access or OIDC) has expired.
    Expired = ("expired", 401),
    /// An OIDC token's `nbf` is in the future.
    NotYetValid = ("not-yet-valid", 401),
    /// An OIDC token's audience is not this server's.
    WrongAudience = ("wrong-audience", 401),
    /// The request needs a token and came without one.
    Unauthorized = ("unauthorized", 401),
    /// The caller is known but lacks the permission the action needs.
    PermissionDenied = ("permission-denied", 403),
    /// `allowed-hosts` does not list the request's Host.
    HostNotAllowed = ("host-not-allowed", 400),

    // The identity exchange.
    /// The proof of possession does not verify.
    InvalidProof = ("invalid-proof", 401),
    /// The OIDC token's `jti` was exchanged before.
    TokenReused = ("token-reused", 401),
    /// The public key was certified before.
    KeyReused = ("key-reused", 409),
    /// The public key in an exchange is malformed.
    InvalidKey = ("invalid-key", 400),
    /// A key's session token cannot buy another key.
    SessionToken = ("session-token", 403),
    /// No trusted publisher of the cache matches the token's claims.
    NoMatchingPublisher = ("no-matching-publisher", 403),
    /// A publisher matched but the workflow's event is not allowed.
    EventNotAllowed = ("event-not-allowed", 403),
    /// A publisher matched but the job ran on a self-hosted runner.
    SelfHostedRunnerNotAllowed = ("self-hosted-runner-not-allowed", 403),
    /// The OIDC issuer's discovery or JWKS could not be fetched.
    IssuerUnavailable = ("issuer-unavailable", 503),
    /// No audience names this server alone (`[oidc] audience` unset and no
    /// `api-endpoint`), so no OIDC token is exchanged.
    AudienceNotConfigured = ("audience-not-configured", 503),

    // Signed uploads.
    /// An upload without a short-term key's signature.
    UnsignedUpload = ("unsigned-upload", 401),
    /// The upload names a key this server never issued.
    UnknownKey = ("unknown-key", 401),
    /// The upload's key is outside its validity.
    KeyExpired = ("key-expired", 401),
    /// The upload's key was revoked.
    KeyRevoked = ("key-revoked", 401),
    /// The statement's signature does not verify with its key.
    InvalidSignature = ("invalid-signature", 401),
    /// The upload statement is malformed.
    InvalidNarInfo = ("invalid-nar-info", 400),
    /// The closure statement is malformed.
    InvalidClosureStatement = ("invalid-closure-statement", 400),
    /// The NAR stream is not a valid NAR.
    MalformedNar = ("malformed-nar", 400),
    /// The NAR's hash differs from the statement's.
    NarHashMismatch = ("nar-hash-mismatch", 400),
    /// The NAR's size differs from the statement's.
    NarSizeMismatch = ("nar-size-mismatch", 400),
    /// The path is in the cache with another NAR hash (a divergence).
    NarHashConflict = ("nar-hash-conflict", 409),
    /// A statement vouching for a stored path describes it otherwise (size,
    /// references, deriver or CA).
    StatementMismatch = ("statement-mismatch", 409),
    /// The signed statement was recorded before: statements are single use.
    StatementReplayed = ("statement-replayed", 409),
    /// The body stopped before the NAR did.
    UploadInterrupted = ("upload-interrupted", 400),
    /// The upload took longer than `max-upload-duration`.
    UploadTimeout = ("upload-timeout", 400),
    /// A part of an upload session out of range or of the wrong size.
    InvalidPart = ("invalid-part", 400),
    /// Completing an upload session before all its parts arrived.
    UploadIncomplete = ("upload-incomplete", 409),
    /// A narinfo PUT (`nix copy --to`) not signed by a Nix key registered
    /// for the token's subject in this cache.
    UnregisteredNixKey = ("unregistered-nix-key", 403),
    /// A NAR file compressed in a way the server does not read back.
    UnsupportedCompression = ("unsupported-compression", 400),
    /// A NAR file whose SHA-256 is not the one its name or narinfo gives.
    FileHashMismatch = ("file-hash-mismatch", 400),
    /// Nothing was stored because of a concurrent transaction or GC: send again.
    Retry = ("retry", 503),
    /// The object storage failed or did not answer in time (after the
    /// configured retries); nothing was stored or served: send again later.
    StorageUnavailable = ("storage-unavailable", 503),
    /// The database could not be reached; nothing was changed: send again.
    DatabaseUnavailable = ("database-unavailable", 503),

    // Names and settings.
    /// A cache name outside the allowed syntax.
    InvalidCacheName = ("invalid-cache-name", 400),
    /// A store path or hash part outside the allowed syntax.
    InvalidStorePath = ("invalid-store-path", 400),
    /// `create` of a cache that exists.
    CacheExists = ("cache-exists", 409),
    InvalidPriority = ("invalid-priority", 400),
    InvalidStoreDir = ("invalid-store-dir", 400),
    InvalidRetention = ("invalid-retention", 400),
    InvalidUpstreamKey = ("invalid-upstream-key", 400),
    InvalidOverlap = ("invalid-overlap", 400),
    InvalidKeypair = ("invalid-keypair", 400),
    /// A rotation would leave two live cache keys with one name.
    DuplicateKeyName = ("duplicate-key-name", 400),
    InvalidPublisher = ("invalid-publisher", 400),
    /// A token's issuer (or a publisher's) has no `[[oidc.issuers]]` entry;
    /// 400 where a publisher names it (`ApiError::with_status`).
    UnknownIssuer = ("unknown-issuer", 401),
    InvalidRevocation = ("invalid-revocation", 400),
    /// A pin name or `keep_revisions` outside the allowed syntax or range.
    InvalidPin = ("invalid-pin", 400),
    /// A size limit that is not a size, or out of range.
    InvalidMaxStoredSize = ("invalid-max-stored-size", 400),
    /// Not a tlog-tiles path (`tile/<L>/<N>[.p/<W>]`, `tile/entries/...`).
    InvalidTilePath = ("invalid-tile-path", 400),
    /// A tile, entry or tree size the log has not integrated (yet).
    NotInLog = ("not-in-log", 404),
    /// A selector by repository, workflow, run or subject matches
    /// identities of more than one issuer: name `--issuer`.
    AmbiguousSelector = ("ambiguous-selector", 400),

    // Not found: the same answer whether missing or hidden.
    /// The cache does not exist or the caller may not see it.
    NoSuchCache = ("no-such-cache", 404),
    /// The path is not in the cache (or was revoked or deleted).
    NoSuchPath = ("no-such-path", 404),
    NoSuchPublisher = ("no-such-publisher", 404),
    NoSuchPin = ("no-such-pin", 404),
    /// An upload session that does not exist, expired, or was completed.
    NoSuchUpload = ("no-such-upload", 404),
    /// The cache has no upload record of the path.
    NoProvenance = ("no-provenance", 404),
    /// No such endpoint or file.
    NotFound = ("not-found", 404),
    /// A body, query string or path the API cannot read (wrong type,
    /// malformed JSON, missing content type).
    InvalidRequest = ("invalid-request", 400),
    /// The endpoint exists but not with this method.
    MethodNotAllowed = ("method-not-allowed", 405),
    /// The request body is larger than the endpoint takes.
    TooLarge = ("too-large", 413),

    /// `GET /ready`: the database or the storage does not answer.
    NotReady = ("not-ready", 503),
    /// A server fault; the server's log says more.
    InternalError = ("internal-error", 500),
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let wire = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Ok(ErrorCode::from_wire(&wire))
    }
}

/// The JSON body of every API refusal.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_through_its_wire_spelling() {
        let mut seen = std::collections::HashSet::new();
        for &code in ErrorCode::ALL {
            assert!(seen.insert(code.as_str()), "{code} spelt twice");
            assert_eq!(ErrorCode::from_wire(code.as_str()), code);
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
            assert!((400..600).contains(&code.http_status()), "{code}");
        }
    }

    #[test]
    fn unknown_codes_parse_as_unknown() {
        let body: ErrorBody =
            serde_json::from_str(r#"{"code":"from-the-future","message":"m"}"#).unwrap();
        assert_eq!(body.code, ErrorCode::Unknown);
    }

    #[test]
    fn statuses_are_the_ones_clients_rely_on() {
        // Nix treats 401/403/404 on narinfo as "not here" and aborts on 5xx.
        assert_eq!(ErrorCode::NoSuchCache.http_status(), 404);
        assert_eq!(ErrorCode::NoSuchPath.http_status(), 404);
        assert_eq!(ErrorCode::Unauthorized.http_status(), 401);
        assert_eq!(ErrorCode::Retry.http_status(), 503);
        assert_eq!(ErrorCode::NarHashConflict.http_status(), 409);
    }
}
