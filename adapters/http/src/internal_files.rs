//! The file app's internal routes: its FileStore over HTTP for socket and API nodes, behind the service
//! token. The client side is the `adapter-remote-files` crate.

use std::sync::Arc;

use application::ports::{ByteStream, FileStore};
use domain::FileId;
use futures::{StreamExt, TryStreamExt};
use poem::http::StatusCode;
use poem::web::{Data, Path};
use poem::{handler, Body, IntoResponse, Request, Response};
use secrecy::SecretString;

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
    if crate::bearer::carries_secret(req, expected) {
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
