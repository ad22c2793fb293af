//! A FileStore that lives in another process: the file app, reached over its internal routes.
//!
//! The routes' side of this wire (`/internal/files/{id}`, `max_bytes`, `offset`, the service token)
//! is `adapters/http/src/internal_files.rs`; the two change together.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use application::ports::{ByteStream, FileStore, PutFileError};
use async_trait::async_trait;
use domain::FileId;
use futures::StreamExt;
use secrecy::{ExposeSecret, SecretString};

/// How long the file app may take, so a hung file app fails a request instead of holding a
/// socket node's task (and the user's upload) forever.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// To open a connection.
    pub connect: Duration,
    /// Between two reads of an answer; a download may take long, but never stall this long.
    pub read: Duration,
    /// For a whole delete, and for a whole upload of the largest file.
    pub request: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self { connect: Duration::from_secs(5), read: Duration::from_secs(30), request: Duration::from_secs(600) }
    }
}

/// The file app's FileStore, reached over HTTP with the service token.
pub struct RemoteFileStore {
    base: String,
    token: SecretString,
    http: reqwest::Client,
    timeouts: Timeouts,
}

impl RemoteFileStore {
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(base_url: &str, token: SecretString) -> anyhow::Result<Arc<Self>> {
        Self::with_timeouts(base_url, token, Timeouts::default())
    }

    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn with_timeouts(base_url: &str, token: SecretString, timeouts: Timeouts) -> anyhow::Result<Arc<Self>> {
        let http = reqwest::Client::builder().connect_timeout(timeouts.connect).read_timeout(timeouts.read).build()?;
        Ok(Arc::new(Self { base: base_url.trim_end_matches('/').to_owned(), token, http, timeouts }))
    }

    /// Names the file app in an error, so an operator knows which hop failed.
    fn failed(&self, what: &str) -> String {
        format!("file app at {}: {what}", self.base)
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
            .timeout(self.timeouts.request)
            .body(body)
            .send()
            .await
            .with_context(|| self.failed("put failed"))?;
        match resp.status() {
            reqwest::StatusCode::CREATED => {
                let json: serde_json::Value =
                    resp.json().await.with_context(|| self.failed("unreadable put answer"))?;
                json["size"]
                    .as_u64()
                    .ok_or_else(|| PutFileError::Unknown(anyhow::anyhow!(self.failed("answered without a size"))))
            }
            reqwest::StatusCode::PAYLOAD_TOO_LARGE => Err(PutFileError::TooLarge { limit: max_bytes }),
            other => Err(PutFileError::Unknown(anyhow::anyhow!(self.failed(&format!("answered {other} to a put"))))),
        }
    }

    async fn open(&self, id: FileId, offset: u64) -> anyhow::Result<Option<ByteStream>> {
        let resp = self
            .http
            .get(format!("{}?offset={offset}", self.url(id)))
            .bearer_auth(self.token.expose_secret())
            .send()
            .await
            .with_context(|| self.failed("get failed"))?;
        match resp.status() {
            reqwest::StatusCode::OK => {
                Ok(Some(resp.bytes_stream().map(|c| c.map(|b| b.to_vec()).map_err(std::io::Error::other)).boxed()))
            }
            reqwest::StatusCode::NOT_FOUND => Ok(None),
            other => Err(anyhow::anyhow!(self.failed(&format!("answered {other} to a get")))),
        }
    }

    async fn delete(&self, id: FileId) -> anyhow::Result<()> {
        let resp = self
            .http
            .delete(self.url(id))
            .bearer_auth(self.token.expose_secret())
            .timeout(self.timeouts.request)
            .send()
            .await
            .with_context(|| self.failed("delete failed"))?;
        anyhow::ensure!(resp.status().is_success(), self.failed(&format!("answered {} to a delete", resp.status())));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A "file app" that accepts connections and never answers.
    async fn hung_file_app() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        format!("http://{addr}")
    }

    fn quick() -> Timeouts {
        Timeouts {
            connect: Duration::from_millis(200),
            read: Duration::from_millis(200),
            request: Duration::from_millis(500),
        }
    }

    #[tokio::test]
    async fn a_file_app_that_never_answers_fails_each_request_in_time_with_an_error_naming_it() {
        let base = hung_file_app().await;
        let store =
            RemoteFileStore::with_timeouts(&base, SecretString::from("token-token-token"), quick()).expect("client");
        let id = FileId::from_uuid(uuid::Uuid::now_v7());

        let (opened, deleted, put) = tokio::time::timeout(Duration::from_secs(5), async {
            (store.open(id, 0).await, store.delete(id).await, store.put(id, futures::stream::empty().boxed(), 10).await)
        })
        .await
        .expect("every request gives up within its timeouts");

        let opened = format!("{:#}", opened.err().expect("open fails"));
        let deleted = format!("{:#}", deleted.expect_err("delete fails"));
        let put = match put {
            Err(PutFileError::Unknown(e)) => format!("{e:#}"),
            other => panic!("{other:?}"),
        };
        for error in [opened, deleted, put] {
            assert!(error.contains(&format!("file app at {base}")), "{error}");
        }
    }
}
