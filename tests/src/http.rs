//! Raw HTTP against a test server, for what the CLI would never send.

use ed25519_dalek::SigningKey;
use provenix_provenance::exchange::{access_token_id, encode_public_key, proof_message, sign};
use provenix_provenance::nar::{self, Node};
use provenix_provenance::upload::{UploadPathNarInfo, UPLOAD_HEADER};
use provenix_provenance::NarHash;
use serde_json::{json, Value};

/// A NAR of one regular (not executable) file holding `contents`.
pub fn sample_nar(contents: impl Into<Vec<u8>>) -> Vec<u8> {
    nar::write(&Node::Regular {
        executable: false,
        contents: contents.into(),
    })
}

/// A NAR shaped like a small package: a directory holding an executable
/// `hello` with `text` in it.
pub fn sample_package_nar(text: &str) -> Vec<u8> {
    nar::write(&Node::Directory(vec![(
        "hello".into(),
        Node::Regular {
            executable: true,
            contents: text.as_bytes().to_vec(),
        },
    )]))
}

/// The upload statement (unsigned) for `nar` as `store_path` in `cache`,
/// with no references.
pub fn upload_info(cache: &str, store_path: &str, nar: &[u8]) -> Value {
    json!({
        "cache": cache,
        "store_path": store_path,
        "nar_hash": NarHash::of(nar).to_nix_string(),
        "nar_size": nar.len(),
        "references": [],
    })
}

/// A short-term key the server certified, as a client holds it.
pub struct UploadKey {
    pub key: SigningKey,
    pub key_id: String,
    pub access_token: String,
    pub answer: Value,
}

impl UploadKey {
    /// Signs an upload statement (left as is when it is not one).
    pub fn sign(&self, info: &Value) -> Value {
        match serde_json::from_value::<UploadPathNarInfo>(info.clone()) {
            Ok(mut i) => {
                i.sign(&self.key_id, &self.key);
                serde_json::to_value(i).unwrap()
            }
            Err(_) => info.clone(),
        }
    }
}

pub fn new_key() -> SigningKey {
    SigningKey::generate(&mut rand::rngs::OsRng)
}

pub struct Http {
    pub base: String,
    client: reqwest::Client,
}

/// Status code, JSON body (Null when the body is not JSON) and the body's text.
pub type Answer = (u16, Value, String);

/// A refusal: `status`, the error `code`, and a message that is not empty
/// and, when `mentions` is given, contains it.
pub fn assert_refused(a: &Answer, status: u16, code: &str, mentions: Option<&str>) {
    assert_eq!(a.0, status, "{}", a.2);
    assert_eq!(a.1["code"], code, "{}", a.2);
    let message = a.1["message"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "a refusal without a message: {}", a.2);
    if let Some(mentions) = mentions {
        assert!(
            message.contains(mentions),
            "message lacks {mentions:?}: {message}"
        );
    }
}

impl Http {
    pub fn new(base: &str) -> Http {
        Http {
            base: base.trim_end_matches('/').to_string(),
            client: reqwest::Client::new(),
        }
    }

    async fn send(&self, r: reqwest::RequestBuilder, token: Option<&str>) -> Answer {
        let r = match token {
            Some(t) => r.bearer_auth(t),
            None => r,
        };
        let resp = r.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::Null),
            text,
        )
    }

    /// A whole body that must arrive with 200 (a NAR, say).
    pub async fn get_bytes(&self, path: &str, token: Option<&str>) -> Vec<u8> {
        let mut r = self.client.get(format!("{}{path}", self.base));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let resp = r.send().await.expect("request");
        assert_eq!(resp.status(), 200, "GET {path}");
        resp.bytes().await.expect("the whole body").to_vec()
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Answer {
        self.send(self.client.get(format!("{}{path}", self.base)), token)
            .await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Answer {
        self.send(self.client.delete(format!("{}{path}", self.base)), token)
            .await
    }

    pub async fn post_json(&self, path: &str, token: Option<&str>, body: &Value) -> Answer {
        self.send(
            self.client.post(format!("{}{path}", self.base)).json(body),
            token,
        )
        .await
    }

    /// The server's answer to `GET /_api/v1/oidc/audience`.
    pub async fn audience(&self) -> String {
        let (status, body, text) = self.get("/_api/v1/oidc/audience", None).await;
        assert_eq!(status, 200, "{text}");
        body["audience"].as_str().unwrap().to_string()
    }

    /// Exchanges an OIDC token (proof over `aud`, `jti`, cache and key).
    pub async fn exchange_oidc(
        &self,
        token: &str,
        aud: &str,
        jti: &str,
        cache: &str,
        key: &SigningKey,
    ) -> Answer {
        let pk = encode_public_key(&key.verifying_key());
        let proof = sign(key, &proof_message(aud, jti, cache, &pk));
        let body = json!({"cache": cache, "public_key": pk, "oidc_token": token, "proof": proof});
        self.post_json("/_api/v1/keys/exchange", None, &body).await
    }

    /// Exchanges this server's access token for a key.
    pub async fn exchange_token(&self, token: &str, cache: &str, key: &SigningKey) -> Answer {
        let aud = self.audience().await;
        let pk = encode_public_key(&key.verifying_key());
        let proof = sign(
            key,
            &proof_message(&aud, &access_token_id(token), cache, &pk),
        );
        let body = json!({"cache": cache, "public_key": pk, "proof": proof});
        self.post_json("/_api/v1/keys/exchange", Some(token), &body)
            .await
    }

    /// A certified key for `cache` through `token`; panics if refused.
    pub async fn key_for(&self, token: &str, cache: &str) -> UploadKey {
        let key = new_key();
        let (status, answer, text) = self.exchange_token(token, cache, &key).await;
        assert_eq!(status, 200, "exchange refused: {text}");
        UploadKey {
            key,
            key_id: answer["key_id"].as_str().unwrap().to_string(),
            access_token: answer["access_token"].as_str().unwrap().to_string(),
            answer,
        }
    }

    /// Uploads `nar` with `info` signed by `key` (the session token unused).
    pub async fn signed_upload(&self, key: &UploadKey, info: &Value, nar: &[u8]) -> Answer {
        self.upload(None, &key.sign(info), nar.to_vec()).await
    }

    pub async fn upload(&self, token: Option<&str>, info: &Value, nar: Vec<u8>) -> Answer {
        let r = self
            .client
            .put(format!("{}/_api/v1/upload-path", self.base))
            .header(UPLOAD_HEADER, info.to_string())
            .body(nar);
        self.send(r, token).await
    }
}
