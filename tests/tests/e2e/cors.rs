//! e2e: CORS for browser clients on another origin, driven by `CHAT_ALLOWED_ORIGINS`.

use e2e::TestApp;
use reqwest::{Method, StatusCode};

const CLIENT: &str = "https://chat.example.com";

async fn preflight(app: &TestApp, path: &str, origin: &str, method: &str) -> e2e::Reply {
    let request = app
        .http
        .request(Method::OPTIONS, app.url(path))
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header("access-control-request-headers", "authorization, content-type");
    app.send(request).await
}

async fn an_allowed_origin_gets_preflights_answered_on_the_api_and_file_routes() {
    // Arrange
    let app = TestApp::spawn_with(&[("CHAT_ALLOWED_ORIGINS", CLIENT)]).await;

    // Act
    let login = preflight(&app, "/auth/login", CLIENT, "POST").await;
    let upload = preflight(&app, "/files", CLIENT, "POST").await;

    // Assert
    for reply in [&login, &upload] {
        assert!(reply.status.is_success(), "{reply:?}");
        assert_eq!(reply.header("access-control-allow-origin"), Some(CLIENT), "{reply:?}");
        let methods = reply.header("access-control-allow-methods").unwrap_or_default().to_ascii_uppercase();
        assert!(methods.contains("POST"), "{reply:?}");
        let headers = reply.header("access-control-allow-headers").unwrap_or_default().to_ascii_lowercase();
        assert!(headers.contains("authorization"), "{reply:?}");
    }
}

async fn an_allowed_origin_can_read_answers_and_their_retry_after() {
    // Arrange
    let app = TestApp::spawn_with(&[("CHAT_ALLOWED_ORIGINS", CLIENT)]).await;

    // Act
    let request = app.http.post(app.url("/auth/login")).header("origin", CLIENT).json(&serde_json::json!({
        "username": "nobody", "password": "not the right password",
    }));
    let reply = app.send(request).await;

    // Assert
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{reply:?}");
    assert_eq!(reply.header("access-control-allow-origin"), Some(CLIENT), "{reply:?}");
    let exposed = reply.header("access-control-expose-headers").unwrap_or_default().to_ascii_lowercase();
    assert!(exposed.contains("retry-after") && exposed.contains("www-authenticate"), "{reply:?}");
}

async fn another_origin_is_refused_with_a_json_403_and_no_cors_headers() {
    // Arrange
    let app = TestApp::spawn_with(&[("CHAT_ALLOWED_ORIGINS", CLIENT)]).await;

    // Act
    let reply = preflight(&app, "/auth/login", "https://evil.example.net", "POST").await;

    // Assert: refused in the API's own error shape, with nothing a browser could take as consent.
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{reply:?}");
    assert_eq!(reply.body["code"], "forbidden", "{reply:?}");
    assert_eq!(reply.header("access-control-allow-origin"), None, "{reply:?}");
}

e2e::on_both_shapes!(
    an_allowed_origin_gets_preflights_answered_on_the_api_and_file_routes,
    an_allowed_origin_can_read_answers_and_their_retry_after,
    another_origin_is_refused_with_a_json_403_and_no_cors_headers,
);
