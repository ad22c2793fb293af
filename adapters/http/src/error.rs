//! The one error shape of the API, `{code, message}`, and the mapping from use-case errors to statuses.

use poem::http::StatusCode;
use poem::{IntoResponse, Response};
use poem_openapi::payload::Json;
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
    /// Conflicts with the current state.
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// The resource existed but is gone for good.
    #[oai(status = 410)]
    Gone(Json<ErrorBody>),
    /// The body or file is too large, or a quota is exhausted.
    #[oai(status = 413)]
    TooLarge(Json<ErrorBody>),
    /// Too many attempts; retry after the given number of seconds.
    #[oai(status = 429)]
    TooManyRequests(Json<ErrorBody>, #[oai(header = "Retry-After")] u64),
    /// Something failed on our side; the cause is logged, not shown.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
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
    pub fn conflict(code: &str, message: impl Into<String>) -> Self {
        Self::Conflict(ErrorBody::new(code, message))
    }
    pub fn gone(message: impl Into<String>) -> Self {
        Self::Gone(ErrorBody::new("gone", message))
    }
    pub fn too_large(code: &str, message: impl Into<String>) -> Self {
        Self::TooLarge(ErrorBody::new(code, message))
    }
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        Self::TooManyRequests(
            ErrorBody::new("rate_limited", format!("too many attempts; retry in {retry_after_secs} s")),
            retry_after_secs,
        )
    }

    /// Logs the cause and answers with a body that reveals nothing of it.
    pub fn internal(cause: &anyhow::Error) -> Self {
        tracing::error!(error = ?cause, "request failed");
        Self::Internal(ErrorBody::new("internal", "something went wrong on our side; please retry later"))
    }
}

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
