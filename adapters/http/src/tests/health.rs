//! Handler tests of what surrounds the routes: probes, metrics, the served spec and docs, unknown
//! routes and methods, and the body size limit.

use application::ports::MockHealthCheck;
use poem::http::StatusCode;
use serde_json::json;

use super::fixtures::{failure, send, Ports};

fn check(name: &'static str, healthy: bool) -> MockHealthCheck {
    let mut check = MockHealthCheck::new();
    check.expect_name().return_const(name);
    check.expect_check().times(1).returning(move || if healthy { Ok(()) } else { Err(failure()) });
    check
}

#[tokio::test]
async fn liveness_answers_200_without_checking_any_adapter() {
    // Arrange
    let client = Ports::default().client();

    // Act
    let reply = send(client.get("/health/live")).await;

    // Assert
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, json!({"status": "ok", "failing": []}));
}

#[tokio::test]
async fn readiness_answers_200_when_every_adapter_answers() {
    // Arrange
    let ports = Ports { health: vec![check("sqlite", true), check("files", true)], ..Ports::default() };
    let client = ports.client();

    // Act
    let reply = send(client.get("/health/ready")).await;

    // Assert
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, json!({"status": "ok", "failing": []}));
}

#[tokio::test]
async fn readiness_answers_503_naming_the_failing_adapter_but_not_its_error() {
    // Arrange
    let ports = Ports { health: vec![check("sqlite", true), check("redis", false)], ..Ports::default() };
    let client = ports.client();

    // Act
    let reply = send(client.get("/health/ready")).await;

    // Assert
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.body, json!({"status": "unavailable", "failing": ["redis"]}));
}

#[tokio::test]
async fn metrics_count_earlier_requests_by_method_route_and_status() {
    // Arrange
    let client = Ports::default().client();
    send(client.get("/health/live")).await;

    // Act
    let reply = send(client.get("/metrics")).await;

    // Assert
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.header("content-type").is_some_and(|t| t.starts_with("application/openmetrics-text")), "{reply:?}");
    let text = reply.body.as_str().expect("text");
    assert!(text.contains(r#"http_requests_total{method="GET",route="/health/live",status="200"} 1"#), "{text}");
}

#[tokio::test]
async fn the_spec_is_served_as_json_and_yaml_and_equals_openapi_yaml() {
    // Arrange
    let client = Ports::default().client();

    // Act
    let json = send(client.get("/openapi.json")).await;
    let yaml = send(client.get("/openapi.yaml")).await;

    // Assert
    assert_eq!(json.status, StatusCode::OK);
    assert!(json.body["paths"]["/auth/login"]["post"].is_object(), "{json:?}");
    assert_eq!(yaml.status, StatusCode::OK);
    assert_eq!(yaml.header("content-type"), Some("application/yaml"));
    assert_eq!(yaml.body.as_str(), Some(crate::openapi_yaml().as_str()));
}

#[tokio::test]
async fn docs_answer_200_with_the_swagger_ui() {
    // Arrange
    let client = Ports::default().client();

    // Act
    let reply = send(client.get("/docs")).await;

    // Assert
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.header("content-type").is_some_and(|t| t.starts_with("text/html")), "{reply:?}");
}

#[tokio::test]
async fn an_unknown_route_answers_404_in_the_error_shape() {
    // Arrange
    let client = Ports::default().client();

    // Act
    let reply = send(client.get("/no/such/route")).await;

    // Assert
    reply.assert_error(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn a_known_route_with_the_wrong_method_answers_405_in_the_error_shape() {
    // Arrange
    let client = Ports::default().client();

    // Act
    let reply = send(client.put("/auth/login")).await;

    // Assert
    reply.assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
}

#[tokio::test]
async fn a_body_declared_over_one_mebibyte_answers_413_before_any_handler_runs() {
    // Arrange: no port expects a call.
    let client = Ports::default().client();
    let body = vec![b' '; (1 << 20) + 1];

    // Act
    let reply = send(
        client
            .post("/auth/register")
            .header("content-type", "application/json")
            .header("content-length", body.len().to_string())
            .body(body),
    )
    .await;

    // Assert
    reply.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "too_large");
}

#[tokio::test]
async fn an_undeclared_body_over_one_mebibyte_is_cut_and_answers_400() {
    // Arrange: a JSON string longer than the limit, sent without a Content-Length.
    let client = Ports::default().client();
    let body = format!(r#"{{"username": "ada", "password": "{}"}}"#, "x".repeat(1 << 20));

    // Act
    let reply = send(client.post("/auth/login").header("content-type", "application/json").body(body)).await;

    // Assert
    reply.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
}
