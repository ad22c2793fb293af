//! A JSON request payload parsed by serde, so errors name the field and wrong types are refused,
//! then checked against the validators the spec shows (`maxLength`, `maxItems`, …).

use poem::{FromRequest, Request, RequestBody};
use poem_openapi::error::ParseRequestPayloadError;
use poem_openapi::payload::{ParsePayload, Payload};
use poem_openapi::registry::{MetaMediaType, MetaRequest, MetaSchemaRef, Registry};
use poem_openapi::types::{ParseFromJSON, Type};
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};
use serde::de::DeserializeOwned;

/// Like poem-openapi's `Json`, whose parser turns numbers into strings and names no field, but
/// parsed with serde: `password: invalid type: integer, expected a string`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrictJson<T>(pub T);

impl<T> std::ops::Deref for StrictJson<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: Type> Payload for StrictJson<T> {
    const CONTENT_TYPE: &'static str = "application/json; charset=utf-8";

    fn check_content_type(content_type: &str) -> bool {
        content_type.split(';').next().is_some_and(|m| {
            let m = m.trim();
            m.eq_ignore_ascii_case("application/json") || (m.starts_with("application/") && m.ends_with("+json"))
        })
    }

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

/// The field path and serde's reason, e.g. `member_ids[2]: invalid type: integer, expected a string`.
fn describe<E: std::fmt::Display>(err: &serde_path_to_error::Error<E>) -> String {
    let path = err.path().to_string();
    let reason = err.inner().to_string();
    // serde appends " at line 1 column 42"; the path already says where.
    let reason = reason.split(" at line ").next().unwrap_or(&reason).to_owned();
    if path == "." {
        reason
    } else {
        format!("{path}: {reason}")
    }
}

impl<T: ParseFromJSON + DeserializeOwned + Send> ParsePayload for StrictJson<T> {
    const IS_REQUIRED: bool = true;

    async fn from_request(request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        let data = <Vec<u8> as FromRequest>::from_request(request, body).await?;
        let json: serde_json::Value =
            serde_json::from_slice(&data).map_err(|e| ParseRequestPayloadError { reason: e.to_string() })?;
        let value = serde_path_to_error::deserialize(json.clone())
            .map_err(|e| ParseRequestPayloadError { reason: describe(&e) })?;
        // serde knows the types, the spec's validators know the limits: both must agree.
        T::parse_from_json(Some(json)).map_err(|e| ParseRequestPayloadError { reason: e.into_message() })?;
        Ok(Self(value))
    }
}

impl<'a, T: ParseFromJSON + DeserializeOwned + Send> ApiExtractor<'a> for StrictJson<T> {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];

    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        <Self as Payload>::register(registry);
    }

    fn request_meta() -> Option<MetaRequest> {
        Some(MetaRequest {
            description: None,
            content: vec![MetaMediaType { content_type: Self::CONTENT_TYPE, schema: Self::schema_ref() }],
            required: true,
        })
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        match request.content_type() {
            Some(ct) if Self::check_content_type(ct) => <Self as ParsePayload>::from_request(request, body).await,
            Some(ct) => Err(poem::Error::from_string(
                format!("content type {ct} is not supported; send application/json"),
                poem::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            )),
            None => Err(poem::Error::from_string(
                "a Content-Type: application/json header is required",
                poem::http::StatusCode::BAD_REQUEST,
            )),
        }
    }
}
