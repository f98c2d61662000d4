//! Chunk objects on the local disk or S3, through object_store.

use anyhow::{Context, Result};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use std::sync::Arc;

use crate::config::StorageConfig;

#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
}

impl Storage {
    pub fn from_config(cfg: &StorageConfig) -> Result<Storage> {
        let store: Arc<dyn ObjectStore> = match cfg {
            StorageConfig::Local { path } => {
                std::fs::create_dir_all(path).with_context(|| {
                    format!("cannot create storage directory {}", path.display())
                })?;
                // No fsync per object: the database commit is the durability
                // point, and an object lost to a power cut is reported by
                // `--mode verify` (docs/architecture.md).
                Arc::new(object_store::local::LocalFileSystem::new_with_prefix(path)?)
            }
            StorageConfig::S3 {
                region,
                bucket,
                endpoint,
                credentials,
            } => {
                let mut b = object_store::aws::AmazonS3Builder::from_env()
                    .with_region(region)
                    .with_bucket_name(bucket);
                if let Some(ep) = endpoint {
                    b = b
                        .with_endpoint(ep)
                        .with_allow_http(ep.starts_with("http://"))
                        .with_virtual_hosted_style_request(false);
                }
                if let Some(c) = credentials {
                    b = b
                        .with_access_key_id(&c.access_key_id)
                        .with_secret_access_key(&c.secret_access_key);
                }
                Arc::new(b.build().context("invalid [storage] S3 settings")?)
            }
        };
        Ok(Storage { store })
    }

    /// Stores the concatenation of `parts` (without copying them together).
    pub async fn put_parts(&self, key: &str, parts: Vec<Bytes>) -> Result<()> {
        self.store
            .put(&ObjectPath::from(key), parts.into_iter().collect())
            .await
            .with_context(|| format!("storing {key}"))?;
        Ok(())
    }

    /// Bytes `range` of an object; an object too short for it is an error.
    pub async fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> Result<Bytes> {
        let bytes = self
            .store
            .get_range(&ObjectPath::from(key), range.clone())
            .await
            .with_context(|| format!("reading {key} at {range:?}"))?;
        anyhow::ensure!(
            bytes.len() as u64 == range.end - range.start,
            "reading {key} at {range:?}: the object is shorter"
        );
        Ok(bytes)
    }

    pub async fn delete(&self, key: &str) -> Result<()> {
        match self.store.delete(&ObjectPath::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("deleting {key}")),
        }
    }

    /// Every object under `prefix` with its last-modified time (Unix seconds).
    pub fn list(&self, prefix: &str) -> BoxStream<'static, Result<(String, i64)>> {
        self.store
            .list(Some(&ObjectPath::from(prefix)))
            .map(|m| {
                let m = m?;
                Ok((m.location.to_string(), m.last_modified.timestamp()))
            })
            .boxed()
    }
}
