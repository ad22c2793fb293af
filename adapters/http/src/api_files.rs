//! File routes, in the spec: streamed multipart upload, and access-checked download with ranges
//! and safe headers.

use application::files::{self, FileLimits, UploadError};
use application::ports::StoredFile;
use domain::{FileId, FileKind, FileName, RoomId};
use futures::{StreamExt, TryStreamExt};
use poem::http::{header, StatusCode};
use poem::web::Data;
use poem::{Body, IntoResponse, Request, RequestBody, Response};
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::registry::{
    MetaHeader, MetaMediaType, MetaRequest, MetaResponse, MetaResponses, MetaSchema, MetaSchemaRef, Registry,
};
use poem_openapi::{ApiExtractor, ApiExtractorType, ApiResponse, ExtractParamOptions, Object, OpenApi, Tags};

use crate::bearer::FileAuth;
use crate::declared::Id;
use crate::dto::{rfc3339, FileDto};
use crate::error::status::{
    AUTHED, BAD_REQUEST, GONE, NOT_FOUND, RANGE_NOT_SATISFIABLE, TOO_LARGE, UNSUPPORTED_MEDIA_TYPE,
};
use crate::error::{ApiError, Failure, Problem};
use crate::multipart::{FormError, FormGuard, Refusal, FORM_OVERHEAD_BYTES, PART_HEADERS_MAX_BYTES, ROOM_ID_MAX_BYTES};
use crate::state::AppState;

#[derive(Tags)]
enum Tag {
    /// Files and images shared in rooms.
    Files,
}

/// A stored file.
#[derive(Debug, Object)]
pub struct UploadedDto {
    pub id: String,
    /// The sanitized file name.
    pub name: String,
    /// Bytes.
    pub size: u64,
    /// The detected type: an image's own, or what the name and leading bytes suggest.
    pub content_type: String,
    /// `image` (served inline) or `file` (served as an attachment).
    pub kind: String,
    /// Where members of the room download it.
    pub url: String,
    /// When it is purged, RFC 3339.
    pub expires_at: String,
}

#[derive(ApiResponse)]
pub enum UploadResponse {
    /// Stored. Post it with a `send` frame carrying its `file_id`, or it is purged after
    /// `CHAT_UNATTACHED_FILE_SECS`.
    #[oai(status = 201)]
    Created(Json<UploadedDto>),
}

/// A `multipart/form-data` body, taken whole as a stream for [`receive`] to bound and parse.
pub struct UploadForm {
    body: Body,
    boundary: String,
}

impl<'a> ApiExtractor<'a> for UploadForm {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];
    type ParamType = ();
    type ParamRawType = ();

    fn request_meta() -> Option<MetaRequest> {
        let room_id = MetaSchema {
            description: Some("The room to share the file in; or give `room_id` in the query. Before `file`."),
            ..MetaSchema::new_with_format("string", "uuid")
        };
        let file = MetaSchema {
            description: Some("The file: up to `CHAT_FILE_MAX_BYTES`, or `CHAT_IMAGE_MAX_BYTES` for an image."),
            ..MetaSchema::new_with_format("string", "binary")
        };
        let form = MetaSchema {
            properties: vec![
                ("room_id", MetaSchemaRef::Inline(Box::new(room_id))),
                ("file", MetaSchemaRef::Inline(Box::new(file))),
            ],
            required: vec!["file"],
            ..MetaSchema::new("object")
        };
        Some(MetaRequest {
            description: None,
            content: vec![MetaMediaType {
                content_type: "multipart/form-data",
                schema: MetaSchemaRef::Inline(Box::new(form)),
            }],
            required: true,
        })
    }

    async fn from_request(
        req: &'a Request,
        body: &mut RequestBody,
        _param_opts: ExtractParamOptions<()>,
    ) -> poem::Result<Self> {
        let content_type = req.content_type().unwrap_or_default();
        if !content_type.trim_start().to_ascii_lowercase().starts_with("multipart/form-data") {
            let message = "the body must be multipart/form-data, with room_id then file";
            return Err(ApiError::from(Problem::unsupported_media_type(message)).into());
        }
        let boundary = multer::parse_boundary(content_type).map_err(|_| {
            ApiError::from(Problem::from(FormError::Malformed("the multipart boundary is missing".into())))
        })?;
        Ok(Self { body: body.take()?, boundary })
    }
}

/// The bytes of a file, or of one range of it.
pub struct FileBytes(Response);

impl IntoResponse for FileBytes {
    fn into_response(self) -> Response {
        self.0
    }
}

fn header_meta(name: &str, description: &str) -> MetaHeader {
    MetaHeader {
        name: name.to_owned(),
        description: Some(description.to_owned()),
        required: true,
        deprecated: false,
        schema: MetaSchemaRef::Inline(Box::new(MetaSchema::new("string"))),
    }
}

impl ApiResponse for FileBytes {
    fn meta() -> MetaResponses {
        let binary = || MetaSchemaRef::Inline(Box::new(MetaSchema::new_with_format("string", "binary")));
        let content = || {
            vec![
                MetaMediaType { content_type: "application/octet-stream", schema: binary() },
                MetaMediaType { content_type: "image/*", schema: binary() },
            ]
        };
        let always = || {
            vec![
                header_meta("Content-Disposition", "`inline` for images, `attachment` for other files, with the name"),
                header_meta("Accept-Ranges", "`bytes`"),
                header_meta("X-Content-Type-Options", "`nosniff`"),
                header_meta("Content-Security-Policy", "`sandbox`"),
            ]
        };
        let mut partial = always();
        partial.push(header_meta("Content-Range", "`bytes <start>-<end>/<size>`"));
        MetaResponses {
            responses: vec![
                MetaResponse {
                    description: "The whole file. Images keep their type and show inline; other files are \
                                  `application/octet-stream` attachments.",
                    status: Some(200),
                    status_range: None,
                    content: content(),
                    headers: always(),
                },
                MetaResponse {
                    description: "The one range asked for with `Range: bytes=…`.",
                    status: Some(206),
                    status_range: None,
                    content: content(),
                    headers: partial,
                },
            ],
        }
    }

    fn register(_registry: &mut Registry) {}
}

pub struct FilesApi;

#[OpenApi(tag = "Tag::Files")]
impl FilesApi {
    /// Upload a file to a room
    ///
    /// `multipart/form-data` with `room_id`, then `file`, which streams to storage. The whole
    /// body, each part's headers and the room id are bounded before anything is buffered; an
    /// upload over the room's or the user's quota is refused. Members only.
    #[oai(path = "/files", method = "post")]
    async fn upload(
        &self,
        state: Data<&AppState>,
        auth: FileAuth,
        req: &Request,
        form: UploadForm,
        /// The room, when the form does not carry it.
        room_id: Query<Option<Id>>,
    ) -> Result<UploadResponse, Failure<{ AUTHED | BAD_REQUEST | NOT_FOUND | TOO_LARGE | UNSUPPORTED_MEDIA_TYPE }>>
    {
        let refusal = Refusal::default();
        let room_id = room_id.0.and_then(|id| id.parse().ok());
        match receive(req, form, &state, &auth.0.user, room_id, &refusal).await {
            Ok(file) => Ok(UploadResponse::Created(Json(uploaded(&file)))),
            // The guard's reason first: the parser and the upload saw only a stream that failed.
            Err(failure) => Err(match (refusal.get(), failure) {
                (Some(refused), _) | (None, UploadFailure::Form(refused)) => Problem::from(refused).into(),
                (None, UploadFailure::Upload(e)) => ApiError::from(e).into(),
            }),
        }
    }

    /// Download a file
    ///
    /// For members of the file's room. One `Range: bytes=…` gives 206; a range outside the file
    /// gives 416. Images are served inline with their type, everything else as an attachment.
    #[oai(path = "/files/:file_id", method = "get")]
    async fn download(
        &self,
        state: Data<&AppState>,
        auth: FileAuth,
        file_id: Path<Id>,
        /// One range, `bytes=<start>-<end>`, `bytes=<start>-` or `bytes=-<suffix>`.
        #[oai(name = "Range")]
        range: Header<Option<String>>,
    ) -> Result<FileBytes, Failure<{ AUTHED | NOT_FOUND | GONE | RANGE_NOT_SATISFIABLE }>> {
        let Ok(file_id) = file_id.parse::<FileId>() else {
            return Err(Problem::file_not_found().into());
        };
        download(&state, &auth.0.user, file_id, range.0.as_deref()).await.map(FileBytes).map_err(Into::into)
    }
}

/// Why an upload failed: its form, or the use case.
enum UploadFailure {
    Form(FormError),
    Upload(UploadError),
}

/// The largest body `POST /files` reads: the largest file plus the form around it.
fn body_limit(limits: FileLimits) -> u64 {
    limits.image_max.max(limits.file_max).saturating_add(FORM_OVERHEAD_BYTES)
}

async fn receive(
    req: &Request,
    form: UploadForm,
    state: &AppState,
    user: &domain::User,
    mut room_id: Option<RoomId>,
    refusal: &Refusal,
) -> Result<StoredFile, UploadFailure> {
    let limit = body_limit(state.files.limits());
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(UploadFailure::Form(FormError::BodyTooLarge { limit }));
    }
    let UploadForm { body, boundary } = form;
    let guarded =
        FormGuard::new(Box::pin(body.into_bytes_stream()), &boundary, limit, PART_HEADERS_MAX_BYTES, refusal.clone());
    let constraints =
        multer::Constraints::new().size_limit(multer::SizeLimit::new().for_field("room_id", ROOM_ID_MAX_BYTES));
    let mut form = multer::Multipart::with_constraints(guarded, boundary, constraints);
    loop {
        let field = match form.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => return Err(UploadFailure::Form(form_error(e))),
        };
        match field.name() {
            Some("room_id") => {
                let raw = field.bytes().await.map_err(|e| UploadFailure::Form(form_error(e)))?;
                let parsed = std::str::from_utf8(&raw).ok().and_then(|t| t.trim().parse().ok());
                room_id = Some(parsed.ok_or(UploadFailure::Form(FormError::InvalidRoomId))?);
            }
            Some("file") => {
                let room_id = room_id.ok_or(UploadFailure::Form(FormError::RoomIdMissing))?;
                let name = FileName::sanitize(field.file_name().unwrap_or_default());
                let bytes = field.map(|chunk| chunk.map(|b| b.to_vec()).map_err(std::io::Error::other)).boxed();
                // Kept for `CHAT_UNATTACHED_FILE_SECS` unless a `send` with its `file_id` posts it.
                let stored = state.files.upload(user, room_id, name, bytes, declared, files::Upload::Unattached);
                return stored.await.map_err(UploadFailure::Upload);
            }
            _ => {}
        }
    }
    Err(UploadFailure::Form(FormError::FileMissing))
}

/// The parser's error in the form's words; only `room_id` has a field limit.
fn form_error(e: multer::Error) -> FormError {
    match e {
        multer::Error::FieldSizeExceeded { .. } => FormError::RoomIdTooLong { limit: ROOM_ID_MAX_BYTES },
        other => FormError::Malformed(other.to_string()),
    }
}

fn uploaded(file: &StoredFile) -> UploadedDto {
    let dto = FileDto::new(&file.meta);
    UploadedDto {
        id: dto.id,
        name: dto.name,
        size: dto.size,
        content_type: dto.content_type,
        kind: file.meta.kind.as_str().to_owned(),
        url: dto.url,
        expires_at: rfc3339(file.meta.expires_at),
    }
}

/// The file's bytes for a member of its room, whole or the one range asked for.
async fn download(
    state: &AppState,
    user: &domain::User,
    file_id: FileId,
    range: Option<&str>,
) -> Result<Response, ApiError> {
    // The size is needed to resolve the range before opening, so read the catalog entry first.
    let probe = state.files.download(user, file_id, 0).await?;
    let size = probe.file.meta.size;
    let (start, end) = match range.map(|r| parse_range(r, size)) {
        None => (0, size.saturating_sub(1)),
        Some(Some(bounds)) => bounds,
        Some(None) => return Err(ApiError::range_not_satisfiable(size)),
    };
    let opened = if start == 0 { probe } else { state.files.download(user, file_id, start).await? };
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
    Ok(builder.body(Body::from_bytes_stream(limited)))
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
