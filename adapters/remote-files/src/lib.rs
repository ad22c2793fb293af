//! A FileStore that lives in another process: the file app, reached over its internal routes.
//!
//! The routes' side of this wire (`/internal/files/{id}`, `max_bytes`, `offset`, the service token)
//! is `adapters/http/src/internal_files.rs`; the two change together.

use std::sync::Arc;

use application::ports::{ByteStream, FileStore, PutFileError};
use async_trait::async_trait;
use domain::FileId;
use futures::StreamExt;
use secrecy::{ExposeSecret, SecretString};

/// The file app's FileStore, reached over HTTP with the service token.
pub struct RemoteFileStore {
    base: String,
    token: SecretString,
    http: reqwest::Client,
}

impl RemoteFileStore {
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(base_url: &str, token: SecretString) -> anyhow::Result<Arc<Self>> {
        Ok(Arc::new(Self {
            base: base_url.trim_end_matches('/').to_owned(),
            token,
            http: reqwest::Client::builder().build()?,
        }))
    }

    fn url(&self, id: FileId) -> String {
        format!("{}/internal/files/{id}", self.base)
    }
}

#[async_trait]
impl FileStore for RemoteFileStore {
    async fn put(&self, id: FileId, data: ByteStream, max_bytes: u64) -> Result<u64, PutFileError> {
        let body = reqwest::Body::wrap_stream(data);
        let resp = self
            .http
            .put(format!("{}?max_bytes={max_bytes}", self.url(id)))
            .bearer_auth(self.token.expose_secret())
            .body(body)
            .send()
            .await
            .map_err(|e| PutFileError::Unknown(e.into()))?;
        match resp.status() {
            reqwest::StatusCode::CREATED => {
                let json: serde_json::Value = resp.json().await.map_err(|e| PutFileError::Unknown(e.into()))?;
                json["size"]
                    .as_u64()
                    .ok_or_else(|| PutFileError::Unknown(anyhow::anyhow!("file app answered without a size")))
            }
            reqwest::StatusCode::PAYLOAD_TOO_LARGE => Err(PutFileError::TooLarge { limit: max_bytes }),
            other => Err(PutFileError::Unknown(anyhow::anyhow!("file app answered {other} to a put"))),
        }
    }

    async fn open(&self, id: FileId, offset: u64) -> anyhow::Result<Option<ByteStream>> {
        let resp = self
            .http
            .get(format!("{}?offset={offset}", self.url(id)))
            .bearer_auth(self.token.expose_secret())
            .send()
            .await?;
        match resp.status() {
            reqwest::StatusCode::OK => {
                Ok(Some(resp.bytes_stream().map(|c| c.map(|b| b.to_vec()).map_err(std::io::Error::other)).boxed()))
            }
            reqwest::StatusCode::NOT_FOUND => Ok(None),
            other => Err(anyhow::anyhow!("file app answered {other} to a get")),
        }
    }

    async fn delete(&self, id: FileId) -> anyhow::Result<()> {
        let resp = self.http.delete(self.url(id)).bearer_auth(self.token.expose_secret()).send().await?;
        anyhow::ensure!(resp.status().is_success(), "file app answered {} to a delete", resp.status());
        Ok(())
    }
}
