//! The client's files are served with their types, caching headers and policy, and nothing else.

use poem::endpoint::make_sync;
use poem::http::StatusCode;
use poem::test::TestClient;
use poem::EndpointExt;

use super::{around, WebClient, WebConfig};

fn client_in_front_of_an_api(config: &WebConfig) -> TestClient<poem::endpoint::BoxEndpoint<'static, poem::Response>> {
    let api = make_sync(|_| "the api").map_to_response().boxed();
    TestClient::new(around(api, WebClient::new(config)))
}

#[tokio::test]
async fn each_file_is_served_with_its_content_type_and_a_strict_policy() {
    let cli = client_in_front_of_an_api(&WebConfig::default());
    for (path, content_type) in [
        ("/", "text/html; charset=utf-8"),
        ("/app.js", "text/javascript; charset=utf-8"),
        ("/style.css", "text/css; charset=utf-8"),
        ("/icon.svg", "image/svg+xml"),
        ("/config.json", "application/json"),
    ] {
        let resp = cli.get(path).send().await;
        resp.assert_status_is_ok();
        resp.assert_header("content-type", content_type);
        resp.assert_header("cache-control", "no-cache");
        resp.assert_header("x-content-type-options", "nosniff");
        let csp = resp.0.headers().get("content-security-policy").unwrap().to_str().unwrap().to_owned();
        assert!(csp.starts_with("default-src 'none'; script-src 'self';"), "{path}: {csp}");
        assert!(!csp.contains("unsafe"), "{path}: {csp}");
    }
}

#[tokio::test]
async fn a_request_with_the_current_etag_gets_304() {
    let cli = client_in_front_of_an_api(&WebConfig::default());
    let first = cli.get("/app.js").send().await;
    let etag = first.0.headers().get("etag").unwrap().to_str().unwrap().to_owned();

    let again = cli.get("/app.js").header("if-none-match", &etag).send().await;

    again.assert_status(StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn other_paths_and_methods_reach_the_api() {
    let cli = client_in_front_of_an_api(&WebConfig::default());

    cli.get("/rooms").send().await.assert_text("the api").await;
    cli.post("/").send().await.assert_text("the api").await;
}

#[tokio::test]
async fn configured_socket_and_file_apps_are_in_the_config_and_the_policy() {
    let config = WebConfig {
        socket_urls: vec!["ws://127.0.0.1:9001/ws".into(), "ws://127.0.0.1:9002/ws".into()],
        files_url: "http://127.0.0.1:9003".into(),
    };
    let cli = client_in_front_of_an_api(&config);

    let resp = cli.get("/config.json").send().await;

    let csp = resp.0.headers().get("content-security-policy").unwrap().to_str().unwrap().to_owned();
    assert!(csp.contains("connect-src 'self' ws://127.0.0.1:9001 ws://127.0.0.1:9002 http://127.0.0.1:9003;"), "{csp}");
    resp.assert_json(serde_json::json!({
        "socket_urls": ["ws://127.0.0.1:9001/ws", "ws://127.0.0.1:9002/ws"],
        "files_url": "http://127.0.0.1:9003",
    }))
    .await;
}
