//! The identity exchange: an OIDC token (or a person's access token), a
//! fresh public key and a proof of possession become a short-lived
//! certificate for that key, recorded with the identity it was issued to.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use provenix_policy::{
    find_match, may_explain_refusal, session_permission, Action, CachePermissions, Publisher,
    SessionCredential,
};
use provenix_provenance::certificate_identity::{self, CertificateIdentity};
use provenix_provenance::exchange::{
    decode_public_key, key_id, proof_message, verify, AudienceResponse, ExchangeRequest,
    ExchangeResponse, Identity, IssuerInfo,
};
use provenix_provenance::ErrorCode;
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::Duration;

use crate::access;
use crate::db::upload_keys::{NewUploadKey, SpentToken, UploadKeyRecorded};
use crate::error::{ApiError, ApiResult};
use crate::identity::caller::Caller;
use crate::identity::oidc::LEEWAY_SECS;
use crate::identity::token::ProvenixClaim;
use crate::state::AppState;

pub async fn audience(State(state): State<Arc<AppState>>) -> Json<AudienceResponse> {
    Json(AudienceResponse {
        audience: state.api_endpoint.clone(),
        issuers: state
            .oidc
            .issuers
            .iter()
            .map(|i| IssuerInfo {
                name: i.config.name.clone(),
                issuer: i.config.issuer.clone(),
                audience: i.audience.clone(),
            })
            .collect(),
    })
}

/// `GET /.well-known/provenix/ca.pem`: what certificates chain to.
pub async fn ca_certificate(State(state): State<Arc<AppState>>) -> ApiResult<impl IntoResponse> {
    let ca = state.ca().await?;
    Ok((
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        ca.cert_pem.clone(),
    ))
}

#[derive(serde::Serialize)]
pub struct WhoAmI {
    subject: Option<String>,
    /// Set for a session token handed out with a key.
    key_id: Option<String>,
    expires_at: Option<i64>,
    caches: CachePermissions,
}

pub async fn whoami(caller: Caller) -> Json<WhoAmI> {
    Json(match caller.claims {
        Some(c) => WhoAmI {
            subject: Some(c.sub),
            key_id: c.provenix.key_id,
            expires_at: Some(c.exp),
            caches: c.provenix.caches,
        },
        None => WhoAmI {
            subject: None,
            key_id: None,
            expires_at: None,
            caches: CachePermissions::default(),
        },
    })
}

/// Who the key will belong to, once the caller is verified.
struct Grant {
    identity: Identity,
    certificate_identity: CertificateIdentity,
    publisher_id: Option<i64>,
    spent: Option<(String, String, i64)>,
    /// What paid for the key: bounds the session token's permission.
    credential: SessionCredential,
}

async fn grant_for_oidc(
    state: &AppState,
    req: &ExchangeRequest,
    token: &str,
    public_key: &ed25519_dalek::VerifyingKey,
) -> ApiResult<(i64, Grant)> {
    let verified = state.oidc.verify(token).await?;
    let msg = proof_message(
        &verified.audience,
        &verified.jti,
        &req.cache,
        &req.public_key,
    );
    verify(public_key, &msg, &req.proof).map_err(|e| {
        ApiError::new(ErrorCode::InvalidProof,
            format!("the proof of possession is not public_key's signature over this token's jti, aud and the cache: {e}"),
        )
    })?;
    let no_match = |why: String| {
        ApiError::new(
            ErrorCode::NoMatchingPublisher,
            format!(
                "no trusted publisher of cache {:?} matches this token: {why}",
                req.cache
            ),
        )
    };
    // What a missing cache answers; also what a hidden one answers to
    // anyone `may_explain_refusal` does not name.
    let as_missing = || no_match("the cache has no trusted publishers".into());
    let Some(cache) = state.db.cache_by_name(&req.cache).await? else {
        return Err(as_missing());
    };
    let rows = state.db.publishers(cache.id).await?;
    let list: Vec<(i64, Publisher)> = rows.into_iter().map(|r| (r.id, r.publisher)).collect();
    let publisher_id = match find_match(&list, &verified.issuer_name, &verified.claims) {
        Ok(id) => *id,
        Err(None) => return Err(as_missing()),
        Err(Some((id, mismatch))) => {
            let p = list
                .iter()
                .find(|(i, _)| i == id)
                .map(|(_, p)| p.describe());
            let why = format!(
                "closest is publisher {id} ({}): {mismatch}",
                p.unwrap_or_default()
            );
            tracing::info!(cache = %req.cache, sub = %verified.subject, "exchange refused: {why}");
            if !may_explain_refusal(
                cache.is_public,
                list.iter().map(|(_, p)| p),
                &verified.issuer_name,
                &verified.claims,
            ) {
                return Err(as_missing());
            }
            return Err(if mismatch.code == ErrorCode::NoMatchingPublisher {
                no_match(why)
            } else {
                ApiError::new(mismatch.code, format!("cache {:?}: {why}", req.cache))
            });
        }
    };
    let matched = list
        .iter()
        .find(|(i, _)| *i == publisher_id)
        .map(|(_, p)| p);
    let grants_pull = matched.is_some_and(Publisher::grants_pull);
    let certificate_identity = match matched {
        Some(Publisher::Github(_)) => certificate_identity::github(
            &verified.issuer_url,
            &verified.server_url,
            &verified.claims,
        ),
        Some(Publisher::Gitlab(_)) => {
            certificate_identity::gitlab(&verified.issuer_url, &verified.claims)
        }
        _ => certificate_identity::subject(&verified.issuer_url, &verified.subject),
    };
    let mut claims = verified.claims.clone();
    // Kept for provenance; the token's replay-relevant parts are not identity.
    for k in ["aud", "exp", "iat", "nbf"] {
        claims.remove(k);
    }
    Ok((
        cache.id,
        Grant {
            identity: Identity {
                kind: "oidc".into(),
                issuer: verified.issuer_url.clone(),
                subject: verified.subject.clone(),
                claims,
            },
            certificate_identity,
            publisher_id: Some(publisher_id),
            spent: Some((
                verified.issuer_url,
                verified.jti,
                verified.exp.saturating_add(LEEWAY_SECS as i64),
            )),
            credential: SessionCredential::Publisher { grants_pull },
        },
    ))
}

async fn grant_for_access_token(
    state: &AppState,
    req: &ExchangeRequest,
    caller: &Caller,
    public_key: &ed25519_dalek::VerifyingKey,
) -> ApiResult<(i64, Grant)> {
    let (Some(claims), Some(token_id)) = (&caller.claims, caller.token_id()) else {
        return Err(ApiError::new(
            ErrorCode::Unauthorized,
            "an exchange needs an oidc_token, or an access token in the Authorization header",
        ));
    };
    if claims.provenix.key_id.is_some() {
        return Err(ApiError::new(ErrorCode::SessionToken,
            "a key's session token cannot be exchanged for another key; exchange the CI's OIDC token again",
        ));
    }
    let msg = proof_message(&state.api_endpoint, &token_id, &req.cache, &req.public_key);
    verify(public_key, &msg, &req.proof).map_err(|e| {
        ApiError::new(ErrorCode::InvalidProof,
            format!("the proof of possession is not public_key's signature over this token and the cache: {e}"),
        )
    })?;
    let cache = access::authorize(state, caller, Action::Push, &req.cache).await?;
    let mut token_claims = Map::new();
    token_claims.insert("sub".into(), Value::String(claims.sub.clone()));
    Ok((
        cache.id,
        Grant {
            identity: Identity {
                kind: "token".into(),
                issuer: state.api_endpoint.clone(),
                subject: claims.sub.clone(),
                claims: token_claims,
            },
            certificate_identity: certificate_identity::subject(&state.api_endpoint, &claims.sub),
            publisher_id: None,
            spent: None,
            credential: SessionCredential::AccessToken(caller.permission(&req.cache)),
        },
    ))
}

pub async fn exchange(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Json(req): Json<ExchangeRequest>,
) -> ApiResult<Json<ExchangeResponse>> {
    access::check_name(Action::Push, &req.cache)?;
    let public_key = decode_public_key(&req.public_key)
        .map_err(|e| ApiError::new(ErrorCode::InvalidKey, e.to_string()))?;
    let (cache_id, grant) = match &req.oidc_token {
        Some(token) => grant_for_oidc(&state, &req, token, &public_key).await?,
        None => grant_for_access_token(&state, &req, &caller, &public_key).await?,
    };

    let lifetime = state.config.signing_keys.lifetime.as_secs() as i64;
    let not_before = crate::clock::now();
    let not_after = not_before + lifetime;
    let ca = state.ca().await?;
    let certificate = ca.issue(
        public_key.to_bytes(),
        not_before,
        not_after,
        &grant.certificate_identity,
    )?;
    let kid = key_id(&public_key);
    let recorded = state
        .db
        .record_upload_key(
            &NewUploadKey {
                key_id: &kid,
                public_key: &req.public_key,
                cache_id,
                kind: &grant.identity.kind,
                issuer: &grant.identity.issuer,
                subject: &grant.identity.subject,
                publisher_id: grant.publisher_id,
                claims: &grant.identity.claims,
                certificate: &certificate,
                ca_certificate: &ca.cert_pem,
                not_before,
                not_after,
            },
            grant.spent.as_ref().map(|(issuer, jti, exp)| SpentToken {
                issuer,
                jti,
                expires_at: *exp,
            }),
        )
        .await?;
    match recorded {
        UploadKeyRecorded::Recorded => {}
        UploadKeyRecorded::TokenReused => {
            return Err(ApiError::new(
                ErrorCode::TokenReused,
                "this OIDC token (its jti) was already exchanged; request a fresh token",
            ))
        }
        UploadKeyRecorded::KeyReused => {
            return Err(ApiError::new(
                ErrorCode::KeyReused,
                "this public key was already certified; generate a fresh key for every exchange",
            ))
        }
    }
    let mut caches = CachePermissions::default();
    caches
        .0
        .insert(req.cache.clone(), session_permission(grant.credential));
    let access_token = state.tokens.mint_with(
        &grant.identity.subject,
        Duration::from_secs(lifetime as u64),
        ProvenixClaim {
            caches,
            key_id: Some(kid.clone()),
        },
    )?;
    tracing::info!(cache = %req.cache, key = %kid, kind = %grant.identity.kind, sub = %grant.identity.subject, not_after, "signing key issued");
    let kind = if grant.identity.kind == "oidc" {
        "oidc"
    } else {
        "token"
    };
    state
        .metrics
        .keys_issued
        .get_or_create(&crate::operate::metrics::Kind { kind })
        .inc();
    Ok(Json(ExchangeResponse {
        key_id: kid,
        cache: req.cache,
        certificate,
        not_before,
        not_after,
        identity: grant.identity,
        access_token,
    }))
}
