//! File routes: streamed multipart upload, and access-checked download with ranges and safe headers.

use application::files::{self, FileLimits, UploadError};
use application::ports::StoredFile;
use domain::{FileId, FileKind, FileName, RoomId};
use futures::{StreamExt, TryStreamExt};
use poem::http::{header, StatusCode};
use poem::web::{Data, Path};
use poem::{handler, Body, IntoResponse, Request, Response};
use poem_openapi::payload::Json;
use serde::Serialize;

use crate::bearer::caller;
use crate::dto::{rfc3339, FileDto};
use crate::error::{ApiError, ErrorBody, Problem};
use crate::multipart::{FormError, FormGuard, Refusal, FORM_OVERHEAD_BYTES, PART_HEADERS_MAX_BYTES, ROOM_ID_MAX_BYTES};
use crate::state::AppState;

/// What `POST /files` answers.
#[derive(Debug, Serialize)]
struct UploadedDto {
    id: String,
    name: String,
    size: u64,
    content_type: String,
    kind: &'static str,
    url: String,
    expires_at: String,
}

/// `POST /files?room_id=…`: the room may come in the query instead of the form.
#[derive(Debug, serde::Deserialize)]
struct UploadQuery {
    room_id: Option<String>,
}

/// `POST /files` (multipart: `room_id`, then `file`). The file streams to storage; the whole body,
/// each part's headers and the room id are bounded before anything is buffered.
#[handler]
pub async fn upload(req: &Request, body: Body, state: Data<&AppState>) -> Response {
    let user = match caller(req, &state.accounts).await {
        Ok(caller) => caller.user,
        Err(e) => return e.into_response(),
    };
    let refusal = Refusal::default();
    match receive(req, body, &state, &user, &refusal).await {
        Ok(file) => created(&file),
        // The guard's reason first: the parser and the upload saw only a stream that failed.
        Err(failure) => match (refusal.get(), failure) {
            (Some(refused), _) | (None, Failure::Form(refused)) => Problem::from(refused).into_response(),
            (None, Failure::Upload(e)) => ApiError::from(e).into_response(),
        },
    }
}

/// Why an upload failed: its form, or the use case.
enum Failure {
    Form(FormError),
    Upload(UploadError),
}

/// The largest body `POST /files` reads: the largest file plus the form around it.
fn body_limit(limits: FileLimits) -> u64 {
    limits.image_max.max(limits.file_max).saturating_add(FORM_OVERHEAD_BYTES)
}

async fn receive(
    req: &Request,
    body: Body,
    state: &AppState,
    user: &domain::User,
    refusal: &Refusal,
) -> Result<StoredFile, Failure> {
    let limit = body_limit(state.files.limits());
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(Failure::Form(FormError::BodyTooLarge { limit }));
    }
    let boundary = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| multer::parse_boundary(v).ok())
        .ok_or_else(|| Failure::Form(FormError::Malformed("the body must be multipart/form-data".into())))?;
    let guarded =
        FormGuard::new(Box::pin(body.into_bytes_stream()), &boundary, limit, PART_HEADERS_MAX_BYTES, refusal.clone());
    let constraints =
        multer::Constraints::new().size_limit(multer::SizeLimit::new().for_field("room_id", ROOM_ID_MAX_BYTES));
    let mut form = multer::Multipart::with_constraints(guarded, boundary, constraints);
    let mut room_id: Option<RoomId> = req.params::<UploadQuery>().ok().and_then(|q| q.room_id?.parse().ok());
    loop {
        let field = match form.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => return Err(Failure::Form(form_error(e))),
        };
        match field.name() {
            Some("room_id") => {
                let raw = field.bytes().await.map_err(|e| Failure::Form(form_error(e)))?;
                let parsed = std::str::from_utf8(&raw).ok().and_then(|t| t.trim().parse().ok());
                room_id = Some(parsed.ok_or(Failure::Form(FormError::InvalidRoomId))?);
            }
            Some("file") => {
                let room_id = room_id.ok_or(Failure::Form(FormError::RoomIdMissing))?;
                let name = FileName::sanitize(field.file_name().unwrap_or_default());
                let bytes = field.map(|chunk| chunk.map(|b| b.to_vec()).map_err(std::io::Error::other)).boxed();
                // Kept for `CHAT_UNATTACHED_FILE_SECS` unless a `send` with its `file_id` posts it.
                let stored = state.files.upload(user, room_id, name, bytes, declared, files::Upload::Unattached);
                return stored.await.map_err(Failure::Upload);
            }
            _ => {}
        }
    }
    Err(Failure::Form(FormError::FileMissing))
}

/// The parser's error in the form's words; only `room_id` has a field limit.
fn form_error(e: multer::Error) -> FormError {
    match e {
        multer::Error::FieldSizeExceeded { .. } => FormError::RoomIdTooLong { limit: ROOM_ID_MAX_BYTES },
        other => FormError::Malformed(other.to_string()),
    }
}

/// `201` with the stored file.
fn created(file: &StoredFile) -> Response {
    let dto = FileDto::new(&file.meta);
    let body = UploadedDto {
        id: dto.id,
        name: dto.name,
        size: dto.size,
        content_type: dto.content_type,
        kind: file.meta.kind.as_str(),
        url: dto.url,
        expires_at: rfc3339(file.meta.expires_at),
    };
    let mut resp = Json(serde_json::to_value(body).unwrap_or_default()).into_response();
    resp.set_status(StatusCode::CREATED);
    resp
}

/// `GET /files/{file_id}`: bytes for members of the file's room; `Range` gives 206.
#[handler]
pub async fn download(req: &Request, Path(file_id): Path<String>, state: Data<&AppState>) -> Response {
    let user = match caller(req, &state.accounts).await {
        Ok(caller) => caller.user,
        Err(e) => return e.into_response(),
    };
    let Ok(file_id) = file_id.parse::<FileId>() else {
        return Problem::file_not_found().into_response();
    };
    let range = req.headers().get(header::RANGE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    // The size is needed to resolve the range before opening, so read the catalog entry first.
    let probe = match state.files.download(&user, file_id, 0).await {
        Ok(d) => d,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let size = probe.file.meta.size;
    let (start, end) = match range.as_deref().map(|r| parse_range(r, size)) {
        None => (0, size.saturating_sub(1)),
        Some(Some(bounds)) => bounds,
        Some(None) => {
            let message = format!("range: the file has {size} bytes; ask for a range within them");
            let mut refused = ErrorBody::new("range_not_satisfiable", message).into_response();
            refused.set_status(StatusCode::RANGE_NOT_SATISFIABLE);
            if let Ok(value) = format!("bytes */{size}").parse() {
                refused.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            return refused;
        }
    };
    let opened = if start == 0 {
        probe
    } else {
        match state.files.download(&user, file_id, start).await {
            Ok(d) => d,
            Err(e) => return ApiError::from(e).into_response(),
        }
    };
    let len = if size == 0 { 0 } else { end - start + 1 };
    let limited = opened.bytes.map_ok(bytes_of).take_bytes(len);
    let meta = &opened.file.meta;
    let (content_type, disposition) = match meta.kind {
        FileKind::Image => (meta.content_type.as_str(), "inline"),
        FileKind::File => ("application/octet-stream", "attachment"),
    };
    let mut builder = Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_DISPOSITION, format!("{disposition}; filename*=UTF-8''{}", rfc5987(meta.name.as_str())))
        .header("X-Content-Type-Options", "nosniff")
        .header("Content-Security-Policy", "sandbox")
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_LENGTH, len);
    if range.is_some() {
        builder = builder
            .status(StatusCode::PARTIAL_CONTENT)
            .header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{size}"));
    }
    builder.body(Body::from_bytes_stream(limited))
}

fn bytes_of(chunk: Vec<u8>) -> bytes::Bytes {
    bytes::Bytes::from(chunk)
}

/// Cuts a byte stream after `n` bytes.
trait TakeBytes: futures::Stream<Item = std::io::Result<bytes::Bytes>> + Sized + Send + 'static {
    fn take_bytes(self, n: u64) -> futures::stream::BoxStream<'static, std::io::Result<bytes::Bytes>> {
        self.scan(n, |left, chunk| {
            let out = match chunk {
                Ok(_) if *left == 0 => None,
                Ok(mut bytes) => {
                    if bytes.len() as u64 > *left {
                        bytes.truncate(usize::try_from(*left).unwrap_or(usize::MAX));
                    }
                    *left -= bytes.len() as u64;
                    Some(Ok(bytes))
                }
                Err(e) => Some(Err(e)),
            };
            futures::future::ready(out)
        })
        .boxed()
    }
}

impl<S: futures::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static> TakeBytes for S {}

/// A single `bytes=` range resolved against `size`; `None` when unsatisfiable or malformed.
fn parse_range(raw: &str, size: u64) -> Option<(u64, u64)> {
    let spec = raw.trim().strip_prefix("bytes=")?;
    if spec.contains(',') || size == 0 {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let (start, end) = match (first.trim(), last.trim()) {
        ("", suffix) => {
            let n: u64 = suffix.parse().ok()?;
            (size.saturating_sub(n), size - 1)
        }
        (start, "") => (start.parse().ok()?, size - 1),
        (start, end) => (start.parse().ok()?, end.parse::<u64>().ok()?.min(size - 1)),
    };
    (start <= end && start < size).then_some((start, end))
}

/// RFC 5987 percent-encoding for `filename*`.
fn rfc5987(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod range_tests {
    use super::*;

    #[test]
    fn ranges_resolve_against_the_size() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=-10", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=50-500", 100), Some((50, 99)));
    }

    #[test]
    fn unsatisfiable_or_malformed_ranges_are_refused() {
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("bytes=9-3", 100), None);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
    }

    #[test]
    fn filenames_are_percent_encoded() {
        assert_eq!(rfc5987("a b\"ü.txt"), "a%20b%22%C3%BC.txt");
    }
}
