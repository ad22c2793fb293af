//! e2e: the served surface around the API: the committed spec, `/openapi.*`, Swagger UI, probes,
//! metrics, and the JSON answer for unknown routes.
//!
//! `UPDATE_OPENAPI=1 cargo test -p e2e --test e2e openapi` (or `scripts/gen-openapi.sh`) rewrites
//! the committed `openapi.yaml` from the code instead of comparing.

use std::path::PathBuf;

use e2e::TestApp;
use reqwest::StatusCode;
use serde_json::Value;

fn committed_spec_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("openapi.yaml")
}

/// Where two texts first differ, as a 1-based line number with both lines, for a readable failure.
fn first_difference(a: &str, b: &str) -> Option<(usize, String, String)> {
    let (mut left, mut right) = (a.lines(), b.lines());
    for n in 1.. {
        match (left.next(), right.next()) {
            (None, None) => return None,
            (l, r) if l == r => continue,
            (l, r) => return Some((n, l.unwrap_or("<end>").to_owned(), r.unwrap_or("<end>").to_owned())),
        }
    }
    None
}

#[test]
fn the_committed_openapi_yaml_equals_the_generated_spec() {
    // Arrange
    let path = committed_spec_path();
    let generated = adapter_http::openapi_yaml();
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).expect("openapi.yaml written");
        return;
    }

    // Act
    let committed = std::fs::read_to_string(&path).unwrap_or_default();

    // Assert
    if let Some((line, want, got)) = first_difference(&generated, &committed) {
        panic!(
            "{} is out of date at line {line}:\n  generated: {want}\n  committed: {got}\nrun scripts/gen-openapi.sh",
            path.display()
        );
    }
}

#[tokio::test]
async fn the_served_openapi_yaml_is_the_committed_one() {
    // Arrange
    let app = TestApp::spawn().await;

    // Act
    let reply = app.send(app.http.get(app.url("/openapi.yaml"))).await;

    // Assert
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("content-type"), Some("application/yaml"));
    let served = reply.body.as_str().expect("YAML text");
    let committed = std::fs::read_to_string(committed_spec_path()).expect("openapi.yaml is committed");
    assert!(first_difference(served, &committed).is_none(), "run scripts/gen-openapi.sh");
}

#[tokio::test]
async fn the_openapi_json_is_valid_json_describing_every_route() {
    // Arrange
    let app = TestApp::spawn().await;

    // Act
    let reply = app.send(app.http.get(app.url("/openapi.json"))).await;

    // Assert
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let paths = reply.body["paths"].as_object().expect("a JSON spec with paths");
    for path in [
        "/auth/register",
        "/auth/login",
        "/auth/refresh",
        "/auth/logout",
        "/users/me",
        "/rooms",
        "/rooms/public",
        "/rooms/{room_id}",
        "/rooms/{room_id}/join",
        "/rooms/{room_id}/leave",
        "/rooms/{room_id}/members",
        "/rooms/{room_id}/members/{user_id}",
        "/rooms/{room_id}/messages",
        "/health/live",
        "/health/ready",
        "/metrics",
        "/files",
        "/files/{file_id}",
        "/users",
        "/users/{user_id}",
        "/rooms/{room_id}/presence",
    ] {
        assert!(paths.contains_key(path), "{path} missing from the spec");
    }
    assert_eq!(reply.body["components"]["securitySchemes"]["BearerAuth"]["scheme"], "bearer");
}

#[tokio::test]
async fn docs_serve_the_swagger_ui_as_html() {
    // Arrange
    let app = TestApp::spawn().await;

    // Act
    let reply = app.send(app.http.get(app.url("/docs"))).await;

    // Assert
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.header("content-type").is_some_and(|t| t.starts_with("text/html")), "{:?}", reply.headers);
    let html = reply.body.as_str().expect("HTML text");
    assert!(html.contains("SwaggerUIBundle"), "Swagger UI is loaded");
    assert!(html.contains("/auth/login"), "with this API's spec");
}

#[tokio::test]
async fn liveness_is_200() {
    // Arrange
    let app = TestApp::spawn().await;

    // Act
    let reply = app.send(app.http.get(app.url("/health/live"))).await;

    // Assert
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["status"], "ok");
}

#[tokio::test]
async fn readiness_is_200_ok_when_every_adapter_answers() {
    // Arrange
    let app = TestApp::spawn().await;

    // Act
    let reply = app.send(app.http.get(app.url("/health/ready"))).await;

    // Assert
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.body["status"], "ok");
    assert_eq!(reply.body["failing"], Value::Array(vec![]));
}

#[tokio::test]
async fn metrics_are_openmetrics_text_counting_requests_by_route_and_status() {
    // Arrange: one request that is counted under a collapsed route.
    let app = TestApp::spawn().await;
    let ada = app.signup("ada").await;
    let (status, _) = app.get(&format!("/rooms/{}", uuid::Uuid::now_v7()), &ada.access_token).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Act
    let reply = app.send(app.http.get(app.url("/metrics"))).await;

    // Assert
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        reply.header("content-type").is_some_and(|t| t.starts_with("application/openmetrics-text")),
        "{:?}",
        reply.headers
    );
    let text = reply.body.as_str().expect("text");
    assert!(text.contains("# TYPE http_requests counter") && text.ends_with("# EOF\n"), "{text}");
    assert!(text.contains(r#"http_requests_total{method="GET",route="/rooms/:room_id",status="404"} 1"#), "{text}");
    assert!(text.contains("http_request_duration_seconds_bucket"), "{text}");
    assert!(text.contains("chat_live_sockets 0"), "{text}");
    assert!(text.contains("chat_archive_lag_seconds"), "{text}");
}

#[tokio::test]
async fn a_path_with_a_quote_or_a_random_tail_is_counted_as_unmatched_and_the_scrape_stays_valid() {
    // Arrange: raw requests, since an HTTP client would percent-encode the quote.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn().await;
    let random = format!("/{}", uuid::Uuid::new_v4().simple());
    for path in ["/x\"", random.as_str()] {
        let mut raw = tokio::net::TcpStream::connect(app.addr).await.expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        raw.write_all(request.as_bytes()).await.expect("request");
        let mut answer = Vec::new();
        raw.read_to_end(&mut answer).await.expect("answer");
    }

    // Act
    let reply = app.send(app.http.get(app.url("/metrics"))).await;

    // Assert: every label value is a known route; nothing the client sent became a label.
    let text = reply.body.as_str().expect("text");
    assert!(text.contains(r#"route="unmatched",status="404"} 2"#), "{text}");
    assert!(!text.contains("/x\"") && !text.contains(&random), "{text}");
    for line in text.lines().filter(|l| l.contains("route=")) {
        let route = line.split("route=\"").nth(1).and_then(|rest| rest.split('"').next()).expect("a quoted route");
        assert!(route == "unmatched" || route.starts_with('/'), "{line}");
    }
}

#[tokio::test]
async fn a_wrong_method_is_a_405_whose_allow_header_names_the_methods_the_route_takes() {
    // Arrange
    let app = TestApp::spawn().await;

    // Act
    let on_rooms = app.send(app.http.put(app.url("/rooms"))).await;
    let on_login = app.send(app.http.delete(app.url("/auth/login"))).await;

    // Assert
    assert_eq!(on_rooms.status, StatusCode::METHOD_NOT_ALLOWED, "{on_rooms:?}");
    assert_eq!(on_rooms.header("allow"), Some("GET, POST"));
    assert_eq!(on_rooms.body["code"], "method_not_allowed");
    assert_eq!(on_login.header("allow"), Some("POST"));
}

#[tokio::test]
async fn with_a_metrics_token_only_its_bearer_may_read_the_metrics() {
    // Arrange
    let token = "metrics-token-0123456789";
    let app = TestApp::spawn_with(&[("CHAT_METRICS_TOKEN", token)]).await;
    let metrics = app.url("/metrics");

    // Act
    let anonymous = app.send(app.http.get(&metrics)).await;
    let wrong = app.send(app.http.get(&metrics).bearer_auth("metrics-token-0123456780")).await;
    let right = app.send(app.http.get(&metrics).bearer_auth(token)).await;

    // Assert
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED, "{anonymous:?}");
    assert_eq!(anonymous.header("www-authenticate"), Some("Bearer"));
    assert_eq!(anonymous.body["code"], "unauthorized");
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(right.status, StatusCode::OK);
    assert!(right.body.as_str().expect("text").contains("http_requests_total"));
}

#[tokio::test]
async fn an_unknown_route_is_a_404_with_the_json_error_shape() {
    // Arrange
    let app = TestApp::spawn().await;

    // Act
    let reply = app.send(app.http.get(app.url("/no/such/route"))).await;

    // Assert
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.header("content-type"), Some("application/json; charset=utf-8"));
    assert_eq!(reply.body["code"], "not_found");
    assert!(reply.body["message"].is_string(), "{reply:?}");
}

/// Every operation of the served spec, as (`METHOD path`, operation).
fn operations(spec: &Value) -> Vec<(String, Value)> {
    let paths = spec["paths"].as_object().expect("a JSON spec with paths");
    paths
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .expect("a path item")
                .iter()
                .map(move |(method, op)| (format!("{} {path}", method.to_uppercase()), op.clone()))
        })
        .collect()
}

fn statuses(op: &Value) -> Vec<String> {
    op["responses"].as_object().expect("responses").keys().cloned().collect()
}

#[tokio::test]
async fn each_operation_lists_the_statuses_it_can_answer_and_no_others() {
    // Arrange
    let app = TestApp::spawn().await;

    // Act
    let spec = app.send(app.http.get(app.url("/openapi.json"))).await.body;

    // Assert: what every operation shares.
    for (name, op) in operations(&spec) {
        let listed = statuses(&op).join(" ");
        assert!(listed.contains("405"), "{name} lists 405: {listed}");
        if op.get("security").is_some() {
            assert!(listed.contains("401"), "{name} is secured, so lists 401: {listed}");
        }
        if op["requestBody"].is_object() {
            assert!(listed.contains("415") && listed.contains("413"), "{name} takes a body: {listed}");
        } else {
            assert!(!listed.contains("415"), "{name} takes no body: {listed}");
        }
    }
    // And what some answer alone.
    let listed = |name: &str| {
        let op = operations(&spec).into_iter().find(|(n, _)| n == name).expect(name).1;
        statuses(&op).join(" ")
    };
    assert_eq!(listed("GET /users/me"), "200 401 405 500");
    assert_eq!(listed("POST /auth/register"), "201 400 405 409 413 415 429 500 503");
    assert_eq!(listed("GET /rooms/{room_id}"), "200 401 404 405 500");
}

#[tokio::test]
async fn the_spec_states_the_limits_the_server_enforces() {
    // Arrange
    let app = TestApp::spawn().await;

    // Act
    let spec = app.send(app.http.get(app.url("/openapi.json"))).await.body;

    // Assert
    let schemas = &spec["components"]["schemas"];
    let username = &schemas["Credentials"]["properties"]["username"];
    assert_eq!((username["minLength"].as_u64(), username["maxLength"].as_u64()), (Some(2), Some(32)));
    let password = &schemas["Credentials"]["properties"]["password"];
    assert_eq!((password["minLength"].as_u64(), password["maxLength"].as_u64()), (Some(8), Some(128)));
    let room = &schemas["CreateRoomRequest"]["properties"];
    assert_eq!(room["name"]["maxLength"], 64);
    assert_eq!(room["member_ids"]["maxItems"], 50);
    assert_eq!(room["member_ids"]["items"]["format"], "uuid");
    assert_eq!(room["member_ids"]["nullable"], true);
    for (name, op) in operations(&spec) {
        for param in op["parameters"].as_array().into_iter().flatten() {
            if param["in"] == "path" {
                match param["name"].as_str() {
                    Some("seq") => assert_eq!(param["schema"]["minimum"].as_f64(), Some(1.0), "{name}"),
                    Some("emoji") => assert_eq!(param["schema"]["maxLength"], 32, "{name}"),
                    _ => assert_eq!(param["schema"]["format"], "uuid", "{name}: {}", param["name"]),
                }
            }
            if param["name"] == "limit" {
                let max = if name == "GET /search" { 50.0 } else { 100.0 };
                assert_eq!(
                    (param["schema"]["minimum"].as_f64(), param["schema"]["maximum"].as_f64()),
                    (Some(1.0), Some(max)),
                    "{name}"
                );
            }
            if name == "GET /search" && param["name"] == "q" {
                assert_eq!(param["schema"]["maxLength"], 200, "{name}");
            }
        }
    }
}

#[tokio::test]
async fn the_file_routes_are_in_the_spec_with_their_form_ranges_and_statuses() {
    // Arrange
    let app = TestApp::spawn().await;

    // Act
    let spec = app.send(app.http.get(app.url("/openapi.json"))).await.body;

    // Assert
    let upload = &spec["paths"]["/files"]["post"];
    let form = &upload["requestBody"]["content"]["multipart/form-data"]["schema"];
    assert_eq!(form["properties"]["file"]["format"], "binary");
    assert_eq!(form["properties"]["room_id"]["format"], "uuid");
    assert_eq!(statuses(upload).join(" "), "201 400 401 404 405 413 415 500");
    let download = &spec["paths"]["/files/{file_id}"]["get"];
    assert_eq!(statuses(download).join(" "), "200 206 401 404 405 410 416 500");
    assert!(download["responses"]["206"]["headers"]["Content-Range"].is_object(), "{download}");
    let schemes: Vec<&str> = download["security"]
        .as_array()
        .expect("security")
        .iter()
        .flat_map(|s| s.as_object().expect("a requirement").keys())
        .map(String::as_str)
        .collect();
    assert_eq!(schemes, ["BearerAuth", "QueryToken"], "a header or an access_token query parameter");
}
