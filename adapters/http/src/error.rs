//! The one error shape of the API, `{code, message}`, and the one mapping from each use-case error
//! to a (code, status, message) that REST routes and the socket both use.

use crate::multipart::FormError;
use application::accounts::{AuthError, LoginError, LogoutError, LookupError, RefreshError, RegisterError};
use application::files::{DownloadError, UploadError};
use application::messaging::{ChangeError, HistoryError, SendError, SendFileError};
use application::ports::PutFileError;
use application::presence::PresenceError;
use application::rooms::{
    CreateRoomError, DeleteRoomError, DirectError, InviteError, JoinError, ReadError, RemoveMemberError,
    RoomAccessError,
};
use application::search::SearchError;
use poem::http::StatusCode;
use poem::{IntoResponse, Response};
use poem_openapi::payload::Json;
use poem_openapi::registry::{MetaResponses, Registry};
use poem_openapi::{ApiResponse, Object};

/// Every error the API returns has this body.
#[derive(Debug, Clone, PartialEq, Eq, Object, serde::Serialize, serde::Deserialize)]
pub struct ErrorBody {
    /// A stable snake_case code a program can switch on.
    pub code: String,
    /// What went wrong, in words a person can act on.
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: &str, message: impl Into<String>) -> Json<Self> {
        Json(Self { code: code.to_owned(), message: message.into() })
    }
}

#[derive(Debug, ApiResponse)]
pub enum ApiError {
    /// The request is malformed or a field is invalid; the message names the field.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// Missing, invalid or expired credentials.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>, #[oai(header = "WWW-Authenticate")] String),
    /// Authenticated, but not allowed to do this.
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// Unknown, or not visible to the caller.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The path exists, but not with this method; `Allow` lists the methods it has.
    #[oai(status = 405)]
    MethodNotAllowed(Json<ErrorBody>, #[oai(header = "Allow")] Option<String>),
    /// Conflicts with the current state.
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// The resource existed but is gone for good.
    #[oai(status = 410)]
    Gone(Json<ErrorBody>),
    /// The body or file is too large, or a quota is exhausted.
    #[oai(status = 413)]
    TooLarge(Json<ErrorBody>),
    /// The body is not of the type the operation takes: JSON, or `multipart/form-data` for uploads.
    #[oai(status = 415)]
    UnsupportedMediaType(Json<ErrorBody>),
    /// The `Range` is outside the file; `Content-Range: bytes */<size>` gives its size.
    #[oai(status = 416)]
    RangeNotSatisfiable(Json<ErrorBody>, #[oai(header = "Content-Range")] String),
    /// Too many attempts; retry after the given number of seconds.
    #[oai(status = 429)]
    TooManyRequests(Json<ErrorBody>, #[oai(header = "Retry-After")] u64),
    /// Something failed on our side; the cause is logged, not shown.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// The server is saturated (for example, every password-hashing slot is busy); retry after
    /// the given number of seconds.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>, #[oai(header = "Retry-After")] u64),
}

impl ApiError {
    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::BadRequest(ErrorBody::new(code, message))
    }
    pub fn unauthorized(code: &str, message: impl Into<String>) -> Self {
        Self::Unauthorized(ErrorBody::new(code, message), "Bearer".to_owned())
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::Forbidden(ErrorBody::new("forbidden", message))
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::NotFound(ErrorBody::new("not_found", message))
    }
    /// A range outside a file of `size` bytes.
    pub fn range_not_satisfiable(size: u64) -> Self {
        let message = format!("range: the file has {size} bytes; ask for a range within them");
        Self::RangeNotSatisfiable(ErrorBody::new("range_not_satisfiable", message), format!("bytes */{size}"))
    }
    /// This node is shutting down: another will take the request.
    pub fn shutting_down() -> Self {
        Self::Unavailable(
            ErrorBody::new("shutting_down", "this node is shutting down; connect again to reach another"),
            BUSY_RETRY_AFTER_SECS,
        )
    }
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        Self::TooManyRequests(
            ErrorBody::new("rate_limited", format!("too many attempts; retry in {retry_after_secs} s")),
            retry_after_secs,
        )
    }
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(..) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(..) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Gone(_) => StatusCode::GONE,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RangeNotSatisfiable(..) => StatusCode::RANGE_NOT_SATISFIABLE,
            Self::TooManyRequests(..) => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Unavailable(..) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// The error statuses an operation declares, one bit each, so the spec lists what it can
/// really answer: `Result<T, Failure<{ AUTHED | NOT_FOUND }>>`.
pub mod status {
    pub const BAD_REQUEST: u32 = 1 << 0;
    pub const UNAUTHORIZED: u32 = 1 << 1;
    pub const FORBIDDEN: u32 = 1 << 2;
    pub const NOT_FOUND: u32 = 1 << 3;
    pub const METHOD_NOT_ALLOWED: u32 = 1 << 4;
    pub const CONFLICT: u32 = 1 << 5;
    pub const GONE: u32 = 1 << 6;
    pub const TOO_LARGE: u32 = 1 << 7;
    pub const UNSUPPORTED_MEDIA_TYPE: u32 = 1 << 8;
    pub const RANGE_NOT_SATISFIABLE: u32 = 1 << 9;
    pub const TOO_MANY_REQUESTS: u32 = 1 << 10;
    pub const INTERNAL: u32 = 1 << 11;
    pub const UNAVAILABLE: u32 = 1 << 12;

    /// Every operation: another method on its path, and a failure on our side.
    pub const ANY: u32 = METHOD_NOT_ALLOWED | INTERNAL;
    /// Behind a bearer token.
    pub const AUTHED: u32 = ANY | UNAUTHORIZED;
    /// With a JSON body: malformed or invalid, too large, or not JSON.
    pub const JSON_BODY: u32 = BAD_REQUEST | TOO_LARGE | UNSUPPORTED_MEDIA_TYPE;

    /// The bit of an HTTP status; 0 for one no operation answers.
    pub fn bit(code: u16) -> u32 {
        match code {
            400 => BAD_REQUEST,
            401 => UNAUTHORIZED,
            403 => FORBIDDEN,
            404 => NOT_FOUND,
            405 => METHOD_NOT_ALLOWED,
            409 => CONFLICT,
            410 => GONE,
            413 => TOO_LARGE,
            415 => UNSUPPORTED_MEDIA_TYPE,
            416 => RANGE_NOT_SATISFIABLE,
            429 => TOO_MANY_REQUESTS,
            500 => INTERNAL,
            503 => UNAVAILABLE,
            _ => 0,
        }
    }
}

/// An [`ApiError`] of an operation whose spec lists only the statuses in `S`.
pub struct Failure<const S: u32>(ApiError);

impl<const S: u32, E: Into<ApiError>> From<E> for Failure<S> {
    fn from(e: E) -> Self {
        let e = e.into();
        // A status the spec does not list is a bug in the operation's declaration.
        debug_assert!(S & status::bit(e.status().as_u16()) != 0, "undeclared status {}: {e:?}", e.status());
        Self(e)
    }
}

impl<const S: u32> ApiResponse for Failure<S> {
    fn meta() -> MetaResponses {
        let mut meta = ApiError::meta();
        meta.responses.retain(|r| r.status.is_some_and(|code| S & status::bit(code) != 0));
        meta
    }

    fn register(registry: &mut Registry) {
        ApiError::register(registry);
    }
}

impl<const S: u32> IntoResponse for Failure<S> {
    fn into_response(self) -> Response {
        self.0.into_response()
    }
}

impl<const S: u32> From<Failure<S>> for poem::Error {
    fn from(f: Failure<S>) -> Self {
        poem::Error::from_response(f.0.into_response())
    }
}

/// How long a client waits after a 503: a hash takes tens of milliseconds, so the queue drains fast.
const BUSY_RETRY_AFTER_SECS: u64 = 1;

/// A use-case error in the API's words: REST answers `status` with `{code, message}`, the socket
/// sends `code` and `message` in an error frame. Each use-case error becomes one here, once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl Problem {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }

    /// An unknown room, or one the caller may not see: the two must look alike.
    pub fn room_not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "room not found")
    }

    pub fn file_not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "file not found")
    }

    fn not_a_member() -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "you are not a member of this room")
    }

    /// Anything a direct room refuses: joining, inviting, leaving, removing, deleting.
    fn direct_room(e: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::CONFLICT, "direct_room", e.to_string())
    }

    fn room_full(e: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::CONFLICT, "room_full", e.to_string())
    }

    /// The same words over REST and the socket, whichever way the file came.
    fn quota_exceeded(e: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "quota_exceeded", e.to_string())
    }

    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", message)
    }

    fn file_too_large(limit: u64) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", format!("the file is larger than {limit} bytes"))
    }

    /// Every password-hashing slot is taken: a moment's wait, not a failure.
    fn busy(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "busy", message)
    }

    /// Logs the cause and says nothing of it.
    pub fn internal(cause: &anyhow::Error) -> Self {
        tracing::error!(error = ?cause, "request failed");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "something went wrong on our side; please retry later")
    }
}

impl From<Problem> for ApiError {
    fn from(p: Problem) -> Self {
        let body = ErrorBody::new(p.code, p.message);
        match p.status {
            StatusCode::BAD_REQUEST => Self::BadRequest(body),
            StatusCode::UNAUTHORIZED => Self::Unauthorized(body, "Bearer".to_owned()),
            StatusCode::FORBIDDEN => Self::Forbidden(body),
            StatusCode::NOT_FOUND => Self::NotFound(body),
            StatusCode::METHOD_NOT_ALLOWED => Self::MethodNotAllowed(body, None),
            StatusCode::CONFLICT => Self::Conflict(body),
            StatusCode::GONE => Self::Gone(body),
            StatusCode::PAYLOAD_TOO_LARGE => Self::TooLarge(body),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::UnsupportedMediaType(body),
            StatusCode::TOO_MANY_REQUESTS => Self::TooManyRequests(body, 1),
            StatusCode::SERVICE_UNAVAILABLE => Self::Unavailable(body, BUSY_RETRY_AFTER_SECS),
            _ => Self::Internal(body),
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}

impl From<anyhow::Error> for Problem {
    fn from(e: anyhow::Error) -> Self {
        Self::internal(&e)
    }
}

impl From<AuthError> for Problem {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Expired => {
                Self::new(StatusCode::UNAUTHORIZED, "token_expired", "the access token has expired; refresh it")
            }
            AuthError::Invalid => Self::new(StatusCode::UNAUTHORIZED, "invalid_token", "the access token is invalid"),
            AuthError::Revoked => Self::new(
                StatusCode::UNAUTHORIZED,
                "session_revoked",
                "the session was logged out or revoked; log in again",
            ),
            AuthError::Unknown(e) => Self::internal(&e),
        }
    }
}

impl From<RegisterError> for Problem {
    fn from(e: RegisterError) -> Self {
        match e {
            RegisterError::UsernameTaken => {
                Self::new(StatusCode::CONFLICT, "username_taken", "username: this username is already taken")
            }
            RegisterError::Busy => Self::busy(e.to_string()),
            RegisterError::Unknown(e) => Self::internal(&e),
        }
    }
}

impl From<LoginError> for Problem {
    fn from(e: LoginError) -> Self {
        match e {
            LoginError::InvalidCredentials => {
                Self::new(StatusCode::UNAUTHORIZED, "invalid_credentials", "invalid username or password")
            }
            LoginError::Busy => Self::busy(e.to_string()),
            LoginError::Unknown(e) => Self::internal(&e),
        }
    }
}

impl From<RefreshError> for Problem {
    fn from(e: RefreshError) -> Self {
        match e {
            RefreshError::Invalid => {
                Self::new(StatusCode::UNAUTHORIZED, "invalid_token", "the refresh token is invalid or expired")
            }
            RefreshError::Reused => Self::new(
                StatusCode::UNAUTHORIZED,
                "token_reused",
                "the refresh token was already used; the session was revoked, log in again",
            ),
            RefreshError::Unknown(e) => Self::internal(&e),
        }
    }
}

impl From<LookupError> for Problem {
    fn from(e: LookupError) -> Self {
        match e {
            LookupError::NotFound => Self::new(StatusCode::NOT_FOUND, "not_found", "user not found"),
            LookupError::Unknown(e) => Self::internal(&e),
        }
    }
}

impl From<LogoutError> for Problem {
    fn from(e: LogoutError) -> Self {
        match e {
            LogoutError::Unknown(e) => Self::internal(&e),
        }
    }
}

impl From<CreateRoomError> for Problem {
    fn from(e: CreateRoomError) -> Self {
        match e {
            CreateRoomError::UnknownMembers(_) => {
                Self::new(StatusCode::BAD_REQUEST, "unknown_members", format!("member_ids: {e}"))
            }
            CreateRoomError::TooManyMembers { .. } => {
                Self::new(StatusCode::BAD_REQUEST, "invalid_request", format!("member_ids: {e}"))
            }
            CreateRoomError::Full(_) => Self::room_full(e),
            CreateRoomError::Unknown(e) => Self::internal(&e),
        }
    }
}

impl From<ChangeError> for Problem {
    fn from(e: ChangeError) -> Self {
        use domain::ChangeRefusal;
        match e {
            ChangeError::NotFound => Self::room_not_found(),
            ChangeError::Forbidden => Self::not_a_member(),
            ChangeError::MessageNotFound => Self::new(StatusCode::NOT_FOUND, "not_found", "seq: message not found"),
            ChangeError::Refused(refusal) => {
                let (status, code) = match refusal {
                    ChangeRefusal::NotSender | ChangeRefusal::NotSenderOrOwner => (StatusCode::FORBIDDEN, "forbidden"),
                    ChangeRefusal::NotEditable => (StatusCode::CONFLICT, "not_editable"),
                    ChangeRefusal::Deleted => (StatusCode::CONFLICT, "message_deleted"),
                    ChangeRefusal::WindowPassed => (StatusCode::CONFLICT, "edit_window_passed"),
                    ChangeRefusal::TooManyReactions => (StatusCode::CONFLICT, "too_many_reactions"),
                };
                Self::new(status, code, format!("seq: {refusal}"))
            }
            ChangeError::Unknown(e) => Self::internal(&e),
        }
    }
}

impl From<RoomAccessError> for Problem {
    fn from(e: RoomAccessError) -> Self {
        match e {
            RoomAccessError::NotFound => Self::room_not_found(),
            RoomAccessError::Direct => Self::direct_room(e),
            RoomAccessError::Unknown(e) => Self::internal(&e),
        }
    }
}

impl From<JoinError> for Problem {
    fn from(e: JoinError) -> Self {
        match e {
            JoinError::NotFound => Self::room_not_found(),
            JoinError::Private => {
                Self::new(StatusCode::FORBIDDEN, "forbidden", "the room is private; members join by invitation")
            }
            JoinError::Full(_) => Self::room_full(e),
            JoinError::Unknown(e) => Self::internal(&e),
        }
    }
}

impl From<InviteError> for Problem {
    fn from(e: InviteError) -> Self {
        match e {
            InviteError::NotFound => Self::room_not_found(),
            InviteError::UnknownUser { field } => {
                Self::new(StatusCode::BAD_REQUEST, "unknown_user", format!("{field}: no such user"))
            }
            InviteError::AlreadyMember => {
                Self::new(StatusCode::CONFLICT, "already_member", "the user is already a member")
            }
            InviteError::Full(_) => Self::room_full(e),
            InviteError::Direct => Self::direct_room(e),
            InviteError::Unknown(e) => Self::internal(&e),
        }
    }
}

impl From<RemoveMemberError> for Problem {
    fn from(e: RemoveMemberError) -> Self {
        match e {
            RemoveMemberError::NotFound => Self::room_not_found(),
            RemoveMemberError::Forbidden => {
                Self::new(StatusCode::FORBIDDEN, "forbidden", "only the owner may remove members")
            }
            RemoveMemberError::NotMember => {
                Self::new(StatusCode::NOT_FOUND, "not_found", "the user is not a member of this room")
            }
            RemoveMemberError::CannotRemoveOwner => Self::new(
                StatusCode::CONFLICT,
                "cannot_remove_owner",
                "the owner cannot be removed; leave or delete the room",
            ),
            RemoveMemberError::Direct => Self::direct_room(e),
            RemoveMemberError::Unknown(e) => Self::internal(&e),
        }
    }
}

impl From<DeleteRoomError> for Problem {
    fn from(e: DeleteRoomError) -> Self {
        match e {
            DeleteRoomError::NotFound => Self::room_not_found(),
            DeleteRoomError::Forbidden => {
                Self::new(StatusCode::FORBIDDEN, "forbidden", "only the owner may delete the room")
            }
            DeleteRoomError::Direct => Self::direct_room(e),
            DeleteRoomError::Unknown(e) => Self::internal(&e),
        }
    }
}

impl From<DirectError> for Problem {
    fn from(e: DirectError) -> Self {
        match e {
            DirectError::WithSelf => Self::new(StatusCode::BAD_REQUEST, "direct_with_self", e.to_string()),
            DirectError::UnknownUser { field } => {
                Self::new(StatusCode::BAD_REQUEST, "unknown_user", format!("{field}: no such user"))
            }
            DirectError::Unknown(e) => Self::internal(&e),
        }
    }
}

impl From<ReadError> for Problem {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::NotFound => Self::room_not_found(),
            ReadError::Forbidden => Self::not_a_member(),
            ReadError::BeyondLast(_) => Self::new(StatusCode::BAD_REQUEST, "invalid_seq", e.to_string()),
            ReadError::Unknown(e) => Self::internal(&e),
        }
    }
}

impl From<SearchError> for Problem {
    fn from(e: SearchError) -> Self {
        match e {
            SearchError::NotFound => Self::room_not_found(),
            SearchError::Forbidden => Self::not_a_member(),
            SearchError::Unavailable => Self::new(StatusCode::SERVICE_UNAVAILABLE, "search_unavailable", e.to_string()),
            SearchError::Unknown(e) => Self::internal(&e),
        }
    }
}

impl From<HistoryError> for Problem {
    fn from(e: HistoryError) -> Self {
        match e {
            HistoryError::NotFound => Self::room_not_found(),
            HistoryError::Forbidden => Self::not_a_member(),
            HistoryError::Unknown(e) => Self::internal(&e),
        }
    }
}

impl From<PresenceError> for Problem {
    fn from(e: PresenceError) -> Self {
        match e {
            PresenceError::NotFound => Self::room_not_found(),
            PresenceError::Forbidden => Self::not_a_member(),
            PresenceError::Unknown(e) => Self::internal(&e),
        }
    }
}

impl From<SendError> for Problem {
    fn from(e: SendError) -> Self {
        match e {
            SendError::NotFound => Self::room_not_found(),
            SendError::Forbidden => Self::not_a_member(),
            SendError::Unknown(e) => Self::internal(&e),
        }
    }
}

impl From<SendFileError> for Problem {
    fn from(e: SendFileError) -> Self {
        match e {
            SendFileError::NotFound => Self::room_not_found(),
            SendFileError::Forbidden => Self::not_a_member(),
            SendFileError::TooLarge { limit } => Self::file_too_large(limit),
            SendFileError::QuotaExceeded { .. } => Self::quota_exceeded(e),
            SendFileError::UnknownFile => Self::new(StatusCode::NOT_FOUND, "not_found", e.to_string()),
            SendFileError::Unknown(e) => Self::internal(&e),
        }
    }
}

impl From<UploadError> for Problem {
    fn from(e: UploadError) -> Self {
        match e {
            UploadError::NotFound => Self::room_not_found(),
            UploadError::TooLarge { .. } => Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", e.to_string()),
            UploadError::QuotaExceeded { .. } => Self::quota_exceeded(e),
            UploadError::Unknown(e) => Self::internal(&e),
        }
    }
}

impl From<FormError> for Problem {
    fn from(e: FormError) -> Self {
        match e {
            FormError::BodyTooLarge { .. } | FormError::PartHeadersTooLarge { .. } => {
                Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", e.to_string())
            }
            FormError::RoomIdTooLong { .. }
            | FormError::InvalidRoomId
            | FormError::RoomIdMissing
            | FormError::FileMissing
            | FormError::Malformed(_) => Self::new(StatusCode::BAD_REQUEST, "invalid_request", e.to_string()),
        }
    }
}

impl From<DownloadError> for Problem {
    fn from(e: DownloadError) -> Self {
        match e {
            DownloadError::NotFound => Self::file_not_found(),
            DownloadError::Gone => Self::new(StatusCode::GONE, "gone", "the file has expired"),
            DownloadError::Unknown(e) => Self::internal(&e),
        }
    }
}

impl From<PutFileError> for Problem {
    fn from(e: PutFileError) -> Self {
        match e {
            PutFileError::TooLarge { limit } => Self::file_too_large(limit),
            PutFileError::Unknown(e) => Self::internal(&e),
        }
    }
}

/// Lets a route answer any use-case error with `?`, through its one `Problem`.
macro_rules! api_error_via_problem {
    ($($error:ty),* $(,)?) => {
        $(impl From<$error> for ApiError {
            fn from(e: $error) -> Self {
                Problem::from(e).into()
            }
        })*
    };
}

api_error_via_problem!(
    anyhow::Error,
    ChangeError,
    AuthError,
    RegisterError,
    LoginError,
    RefreshError,
    LogoutError,
    LookupError,
    CreateRoomError,
    RoomAccessError,
    JoinError,
    InviteError,
    RemoveMemberError,
    DeleteRoomError,
    DirectError,
    ReadError,
    SearchError,
    HistoryError,
    PresenceError,
    UploadError,
    DownloadError,
    PutFileError,
);

/// The code used for a status when an error did not come with its own body.
fn code_for(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "invalid_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::TOO_MANY_REQUESTS => "rate_limited",
        StatusCode::SERVICE_UNAVAILABLE => "busy",
        s if s.is_client_error() => "invalid_request",
        _ => "internal",
    }
}

/// Turns any error that escaped the handlers (framework parse errors, unknown routes, missing
/// bearer, size limits) into the API's JSON error shape. Answers that already have it pass through.
pub async fn normalize(err: poem::Error) -> Response {
    if err.is_from_response() {
        return err.into_response();
    }
    let status = err.status();
    let message = if status.is_server_error() {
        tracing::error!(error = %err, "unhandled error");
        "something went wrong on our side; please retry later".to_owned()
    } else if status == StatusCode::UNAUTHORIZED {
        "a valid bearer access token is required".to_owned()
    } else if status == StatusCode::PAYLOAD_TOO_LARGE {
        "the request body is too large".to_owned()
    } else {
        err.to_string()
    };
    let mut resp = Json(ErrorBody { code: code_for(status).to_owned(), message }).into_response();
    resp.set_status(status);
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert("WWW-Authenticate", poem::http::HeaderValue::from_static("Bearer"));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_room_hidden_from_history_reads_as_no_room_at_all() {
        assert_eq!(Problem::from(HistoryError::NotFound), Problem::room_not_found());
        assert_eq!(Problem::from(SendError::NotFound), Problem::room_not_found());
        assert_eq!(Problem::room_not_found().code, "not_found");
    }

    #[test]
    fn a_busy_password_hasher_answers_503_with_retry_after() {
        let response = ApiError::from(LoginError::Busy).into_response();

        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers().get("Retry-After").unwrap(), "1");
    }

    #[test]
    fn a_full_quota_reads_the_same_over_rest_and_the_socket() {
        let rest = Problem::from(UploadError::QuotaExceeded { quota: 10 });
        let socket = Problem::from(SendFileError::QuotaExceeded { quota: 10 });

        assert_eq!((rest.status, rest.code), (StatusCode::PAYLOAD_TOO_LARGE, "quota_exceeded"));
        assert_eq!(socket, rest);
    }

    #[test]
    fn whatever_a_direct_room_refuses_is_one_409_direct_room() {
        let refusals = [
            Problem::from(InviteError::Direct),
            Problem::from(RoomAccessError::Direct),
            Problem::from(RemoveMemberError::Direct),
            Problem::from(DeleteRoomError::Direct),
        ];

        for problem in refusals {
            assert_eq!((problem.status, problem.code), (StatusCode::CONFLICT, "direct_room"), "{problem:?}");
        }
    }

    #[test]
    fn a_seq_past_the_last_message_is_a_400_naming_seq_and_a_store_without_search_a_503() {
        let seq = Problem::from(ReadError::BeyondLast(domain::ReadMarkerError::BeyondLast { seq: 9, last: 3 }));
        let search = Problem::from(SearchError::Unavailable);
        let with_self = Problem::from(DirectError::WithSelf);

        assert_eq!((seq.status, seq.code), (StatusCode::BAD_REQUEST, "invalid_seq"));
        assert!(seq.message.starts_with("seq: "), "{seq:?}");
        assert_eq!((search.status, search.code), (StatusCode::SERVICE_UNAVAILABLE, "search_unavailable"));
        assert_eq!((with_self.status, with_self.code), (StatusCode::BAD_REQUEST, "direct_with_self"));
    }

    #[test]
    fn an_unknown_failure_says_nothing_of_its_cause() {
        let problem = Problem::from(SendError::Unknown(anyhow::anyhow!("disk full at /var/lib/chat")));
        assert_eq!((problem.status, problem.code), (StatusCode::INTERNAL_SERVER_ERROR, "internal"));
        assert!(!problem.message.contains("disk"), "{problem:?}");
    }
}
