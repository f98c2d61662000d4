//! Raw HTTP against a test server, for what the CLI would never send.

use provenix_provenance::upload::UPLOAD_HEADER;
use serde_json::Value;

pub struct Http {
    pub base: String,
    client: reqwest::Client,
}

/// Status code and JSON body (Null when the body is not JSON).
pub type Answer = (u16, Value, String);

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

    pub async fn get(&self, path: &str, token: Option<&str>) -> Answer {
        self.send(self.client.get(format!("{}{path}", self.base)), token)
            .await
    }

    pub async fn post_json(&self, path: &str, token: Option<&str>, body: &Value) -> Answer {
        self.send(
            self.client.post(format!("{}{path}", self.base)).json(body),
            token,
        )
        .await
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
