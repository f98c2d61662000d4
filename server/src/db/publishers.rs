//! Trusted publishers: per cache, the CI identities whose tokens exchange
//! for upload keys (the policy itself is `provenix_policy::publisher`).

use provenix_policy::Publisher;
use sqlx::Row;

use super::{Db, DbResult};

#[derive(Debug, Clone)]
pub struct PublisherRow {
    pub id: i64,
    pub publisher: Publisher,
    pub created_by: String,
    pub created_at: i64,
}

impl Db {
    pub async fn add_publisher(
        &self,
        cache_id: i64,
        publisher: &Publisher,
        created_by: &str,
    ) -> DbResult<i64> {
        let spec = serde_json::to_string(publisher).expect("publisher serializes");
        Ok(sqlx::query_scalar(
            "INSERT INTO trusted_publishers (cache_id, spec, created_by, created_at)
             VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(cache_id)
        .bind(spec)
        .bind(created_by)
        .bind(crate::clock::now())
        .fetch_one(&self.pool)
        .await?)
    }

    pub async fn publishers(&self, cache_id: i64) -> DbResult<Vec<PublisherRow>> {
        let rows = sqlx::query(
            "SELECT id, spec, created_by, created_at FROM trusted_publishers
             WHERE cache_id = $1 ORDER BY id",
        )
        .bind(cache_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let spec: String = r.try_get("spec")?;
                Ok(PublisherRow {
                    id: r.try_get("id")?,
                    publisher: serde_json::from_str(&spec)
                        .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
                    created_by: r.try_get("created_by")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    pub async fn remove_publisher(&self, cache_id: i64, id: i64) -> DbResult<bool> {
        let done = sqlx::query("DELETE FROM trusted_publishers WHERE cache_id = $1 AND id = $2")
            .bind(cache_id)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
