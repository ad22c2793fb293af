//! Liveness, readiness across every adapter in use, and Prometheus metrics.

use poem_openapi::payload::{Json, PlainText};
use poem_openapi::{ApiResponse, Object, OpenApi, Tags};

use crate::error::status::{ANY, METHOD_NOT_ALLOWED, UNAUTHORIZED};
use crate::error::{ApiError, Failure};
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
pub enum MetricsResponse {
    /// Every metric of this process, as OpenMetrics text, so Prometheus reads it as such.
    #[oai(status = 200, content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8")]
    Ok(PlainText<String>),
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
    async fn live(&self) -> Result<HealthResponse, Failure<METHOD_NOT_ALLOWED>> {
        Ok(HealthResponse::Ok(Json(HealthDto { status: "ok".to_owned(), failing: vec![] })))
    }

    /// Readiness: every adapter in use answers
    #[oai(path = "/health/ready", method = "get")]
    async fn ready(&self, state: Data<&AppState>) -> Result<HealthResponse, Failure<METHOD_NOT_ALLOWED>> {
        let checks = state.health.iter().map(|c| async move { (c.name(), c.check().await) });
        let mut failing = Vec::new();
        for (name, result) in futures::future::join_all(checks).await {
            if let Err(e) = result {
                tracing::warn!(adapter = name, error = %e, "readiness check failed");
                failing.push(name.to_owned());
            }
        }
        Ok(if failing.is_empty() {
            HealthResponse::Ok(Json(HealthDto { status: "ok".to_owned(), failing }))
        } else {
            HealthResponse::Unavailable(Json(HealthDto { status: "unavailable".to_owned(), failing }))
        })
    }

    /// Prometheus metrics
    ///
    /// With `CHAT_METRICS_TOKEN` set, only `Authorization: Bearer <that token>` is answered.
    #[oai(path = "/metrics", method = "get")]
    async fn metrics(
        &self,
        state: Data<&AppState>,
        req: &poem::Request,
    ) -> Result<MetricsResponse, Failure<{ ANY | UNAUTHORIZED }>> {
        if let Some(expected) = &state.metrics_token {
            if !crate::bearer::carries_secret(req, expected) {
                return Err(ApiError::unauthorized("unauthorized", "the metrics token is required").into());
            }
        }
        Ok(MetricsResponse::Ok(PlainText(state.metrics.render())))
    }
}
