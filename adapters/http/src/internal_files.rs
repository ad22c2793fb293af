//! The file app's internal routes: a FileStore over HTTP for socket nodes, behind the service token.

use std::sync::Arc;

use application::ports::{ByteStream, FileStore, PutFileError};
use async_trait::async_trait;
use domain::FileId;
use futures::{StreamExt, TryStreamExt};
use poem::http::StatusCode;
use poem::web::{Data, Path};
use poem::{handler, Body, IntoResponse, Request, Response};
use secrecy::{ExposeSecret, SecretString};

use crate::error::{ApiError, Problem};

/// What the internal routes serve from, apart from the public file routes' state.
#[derive(Clone)]
pub struct InternalFiles {
    /// The bytes behind the routes.
    pub store: Arc<dyn FileStore>,
    /// `CHAT_INTERNAL_TOKEN`; without it the internal routes do not exist.
    pub token: Option<SecretString>,
}

/// Checks `Authorization: Bearer <CHAT_INTERNAL_TOKEN>` in constant time.
fn authorized(req: &Request, files: &InternalFiles) -> Result<(), ApiError> {
    let Some(expected) = &files.token else {
        return Err(ApiError::not_found("not found"));
    };
    let given = req
        .headers()
        .get(poem::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let expected = expected.expose_secret().as_bytes();
    let same = given.len() == expected.len() && given.bytes().zip(expected).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
    if same {
        Ok(())
    } else {
        Err(ApiError::unauthorized("unauthorized", "a valid service token is required"))
    }
}

#[derive(serde::Deserialize)]
struct PutQuery {
    max_bytes: u64,
}

#[derive(serde::Deserialize)]
struct GetQuery {
    offset: Option<u64>,
}

/// `PUT /internal/files/{id}?max_bytes=N`: stores the streamed body.
#[handler]
pub async fn put(req: &Request, Path(id): Path<String>, body: Body, files: Data<&InternalFiles>) -> Response {
    if let Err(e) = authorized(req, &files) {
        return e.into_response();
    }
    let (Ok(id), Ok(PutQuery { max_bytes: max })) = (id.parse::<FileId>(), req.params::<PutQuery>()) else {
        return ApiError::bad_request("invalid_request", "a file id and max_bytes are required").into_response();
    };
    let stream: ByteStream = tokio_util::io::ReaderStream::new(body.into_async_read()).map_ok(|b| b.to_vec()).boxed();
    match files.store.put(id, stream, max).await {
        Ok(size) => {
            let mut resp = poem_openapi::payload::Json(serde_json::json!({ "size": size })).into_response();
            resp.set_status(StatusCode::CREATED);
            resp
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// `GET /internal/files/{id}?offset=N`: the stored bytes.
#[handler]
pub async fn get(req: &Request, Path(id): Path<String>, files: Data<&InternalFiles>) -> Response {
    if let Err(e) = authorized(req, &files) {
        return e.into_response();
    }
    let Ok(id) = id.parse::<FileId>() else { return Problem::file_not_found().into_response() };
    match files.store.open(id, req.params::<GetQuery>().ok().and_then(|q| q.offset).unwrap_or(0)).await {
        Ok(Some(stream)) => Body::from_bytes_stream(stream.map_ok(bytes::Bytes::from)).into_response(),
        Ok(None) => Problem::file_not_found().into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// `DELETE /internal/files/{id}`.
#[handler]
pub async fn delete(req: &Request, Path(id): Path<String>, files: Data<&InternalFiles>) -> Response {
    if let Err(e) = authorized(req, &files) {
        return e.into_response();
    }
    let Ok(id) = id.parse::<FileId>() else { return Problem::file_not_found().into_response() };
    match files.store.delete(id).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// A FileStore that lives in another process: the file app, reached over its internal routes.
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
            StatusCode::CREATED => {
                let json: serde_json::Value = resp.json().await.map_err(|e| PutFileError::Unknown(e.into()))?;
                json["size"]
                    .as_u64()
                    .ok_or_else(|| PutFileError::Unknown(anyhow::anyhow!("file app answered without a size")))
            }
            StatusCode::PAYLOAD_TOO_LARGE => Err(PutFileError::TooLarge { limit: max_bytes }),
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
            StatusCode::OK => {
                Ok(Some(resp.bytes_stream().map(|c| c.map(|b| b.to_vec()).map_err(std::io::Error::other)).boxed()))
            }
            StatusCode::NOT_FOUND => Ok(None),
            other => Err(anyhow::anyhow!("file app answered {other} to a get")),
        }
    }

    async fn delete(&self, id: FileId) -> anyhow::Result<()> {
        let resp = self.http.delete(self.url(id)).bearer_auth(self.token.expose_secret()).send().await?;
        anyhow::ensure!(resp.status().is_success(), "file app answered {} to a delete", resp.status());
        Ok(())
    }
}
