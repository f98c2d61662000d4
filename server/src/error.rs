//! API errors: every refusal is JSON `{code, message}` with a stable
//! [`ErrorCode`] (shared with the client, in `provenance/`) whose HTTP
//! status travels with it, and a message that says what to do.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use provenix_provenance::{ErrorBody, ErrorCode};

#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// Set only where one code answers two kinds of request (see
    /// [`ApiError::with_status`]).
    status: Option<StatusCode>,
    /// For an internal error, what failed (database, storage, other): the
    /// metrics count them apart.
    source: Option<&'static str>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            status: None,
            source: None,
        }
    }

    /// Sends this refusal with another status than its code's. Only
    /// `unknown-issuer` needs it: a token from an unknown issuer is 401 (the
    /// credential is refused), a publisher naming one is 400 (the request is).
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = Some(status);
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status.unwrap_or_else(|| {
            StatusCode::from_u16(self.code.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
        })
    }

    /// The answer for a cache that does not exist or that the caller may not
    /// see: the same in both cases, so existence does not leak.
    pub fn no_such_cache(cache: &str) -> Self {
        Self::new(
            ErrorCode::NoSuchCache,
            format!("cache {cache:?} does not exist or your token has no access to it"),
        )
    }

    pub fn internal(err: impl std::fmt::Display) -> Self {
        Self::internal_from("other", err)
    }

    /// The object storage failed (after its client's retries): a 503 the
    /// caller can act on, counted as an internal error of the storage.
    pub fn storage(err: impl std::fmt::Display) -> Self {
        Self::failure(
            ErrorCode::StorageUnavailable,
            "storage",
            "the object storage failed or did not answer in time: try again later (the server log says more)",
            err,
        )
    }

    /// The database is out of reach: a 503 the caller can retry, counted as
    /// an internal error of the database.
    pub fn database_unavailable(err: impl std::fmt::Display) -> Self {
        Self::failure(
            ErrorCode::DatabaseUnavailable,
            "database",
            "the database is unavailable; nothing was changed: try again shortly",
            err,
        )
    }

    fn internal_from(source: &'static str, err: impl std::fmt::Display) -> Self {
        Self::failure(
            ErrorCode::InternalError,
            source,
            "internal server error; see the server log",
            err,
        )
    }

    /// A failure of the server or what it depends on: logged in full, told
    /// to the caller in `message` only, counted by `source`.
    fn failure(
        code: ErrorCode,
        source: &'static str,
        message: &str,
        err: impl std::fmt::Display,
    ) -> Self {
        tracing::error!(source, "{}: {err:#}", code.as_str());
        let mut e = Self::new(code, message);
        e.source = Some(source);
        e
    }
}

impl From<crate::db::DbError> for ApiError {
    fn from(e: crate::db::DbError) -> Self {
        if let crate::db::DbError::StatementReplayed = e {
            return statement_replayed();
        }
        // Nothing was committed: sending the request again succeeds.
        if e.is_transient() {
            tracing::info!("transaction aborted by the database, client told to retry: {e}");
            return ApiError::new(
                ErrorCode::Retry,
                "a concurrent transaction conflicted with this one; nothing was stored, send it again",
            );
        }
        if let crate::db::DbError::Unavailable(_) = e {
            return ApiError::database_unavailable(e);
        }
        ApiError::internal_from("database", e)
    }
}

/// A signed statement recorded before, sent again: nothing is recorded.
pub fn statement_replayed() -> ApiError {
    ApiError::new(
        ErrorCode::StatementReplayed,
        "this signed statement was used before; every upload needs a statement of its own (provenix push signs one per upload)",
    )
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        let unavailable = e.chain().any(|c| {
            c.downcast_ref::<sqlx::Error>()
                .is_some_and(crate::db::is_unavailable)
                || matches!(
                    c.downcast_ref::<crate::db::DbError>(),
                    Some(crate::db::DbError::Unavailable(_))
                )
        });
        if unavailable {
            return ApiError::database_unavailable(format!("{e:#}"));
        }
        ApiError::internal(format!("{e:#}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::to_string(&ErrorBody {
            code: self.code,
            message: self.message,
        })
        .unwrap_or_else(|_| "{}".into());
        let mut resp = (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
        resp.extensions_mut()
            .insert(crate::operate::metrics::Refused {
                code: self.code,
                internal: self.source,
            });
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Basic realm=\"provenix\", Bearer"),
            );
        }
        resp
    }
}
