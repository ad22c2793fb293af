//! Liveness, readiness across every adapter in use, and Prometheus metrics.

use poem_openapi::payload::{Json, PlainText};
use poem_openapi::{ApiResponse, Object, OpenApi, Tags};

use secrecy::ExposeSecret;

use crate::error::ApiError;
use crate::state::AppState;
use poem::web::Data;

#[derive(Tags)]
enum Tag {
    /// Probes and metrics.
    Health,
}

#[derive(Debug, Object)]
pub struct HealthDto {
    /// `ok`, or `unavailable` naming the failing adapters.
    pub status: String,
    /// Adapters that failed their check.
    pub failing: Vec<String>,
}

#[derive(ApiResponse)]
pub enum HealthResponse {
    /// Serving.
    #[oai(status = 200)]
    Ok(Json<HealthDto>),
    /// At least one adapter cannot serve.
    #[oai(status = 503)]
    Unavailable(Json<HealthDto>),
}

pub struct HealthApi;

#[OpenApi(tag = "Tag::Health")]
impl HealthApi {
    /// Liveness: the process answers
    #[oai(path = "/health/live", method = "get")]
    async fn live(&self) -> HealthResponse {
        HealthResponse::Ok(Json(HealthDto { status: "ok".to_owned(), failing: vec![] }))
    }

    /// Readiness: every adapter in use answers
    #[oai(path = "/health/ready", method = "get")]
    async fn ready(&self, state: Data<&AppState>) -> HealthResponse {
        let checks = state.health.iter().map(|c| async move { (c.name(), c.check().await) });
        let mut failing = Vec::new();
        for (name, result) in futures::future::join_all(checks).await {
            if let Err(e) = result {
                tracing::warn!(adapter = name, error = %e, "readiness check failed");
                failing.push(name.to_owned());
            }
        }
        if failing.is_empty() {
            HealthResponse::Ok(Json(HealthDto { status: "ok".to_owned(), failing }))
        } else {
            HealthResponse::Unavailable(Json(HealthDto { status: "unavailable".to_owned(), failing }))
        }
    }

    /// Prometheus metrics
    ///
    /// With `CHAT_METRICS_TOKEN` set, only `Authorization: Bearer <that token>` is answered.
    #[oai(path = "/metrics", method = "get")]
    async fn metrics(&self, state: Data<&AppState>, req: &poem::Request) -> Result<PlainText<String>, ApiError> {
        if let Some(expected) = &state.metrics_token {
            let given = req
                .headers()
                .get(poem::http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or_default();
            if !same_secret(given.as_bytes(), expected.expose_secret().as_bytes()) {
                return Err(ApiError::unauthorized("unauthorized", "the metrics token is required"));
            }
        }
        Ok(PlainText(state.metrics.render()))
    }
}

/// Compares in time that depends only on the lengths, so the token cannot be guessed byte by byte.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len() && given.iter().zip(expected).fold(0u8, |diff, (a, b)| diff | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::same_secret;

    #[test]
    fn only_the_exact_token_matches() {
        assert!(same_secret(b"0123456789abcdef", b"0123456789abcdef"));
        assert!(!same_secret(b"0123456789abcdeF", b"0123456789abcdef"));
        assert!(!same_secret(b"0123456789abcde", b"0123456789abcdef"));
        assert!(!same_secret(b"", b"0123456789abcdef"));
    }
}
