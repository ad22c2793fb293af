//! The web client: its static files, embedded in the binary and served at `/` before the API.

use std::sync::Arc;

use poem::endpoint::BoxEndpoint;
use poem::http::{header, Method, StatusCode};
use poem::{Endpoint, EndpointExt, Request, Response};
use sha2::{Digest, Sha256};

#[cfg(test)]
mod tests;

/// The files of `static/`, with the path each is served at.
const FILES: &[(&str, &str, &[u8])] = &[
    ("/", "text/html; charset=utf-8", include_bytes!("../static/index.html")),
    ("/errors.js", "text/javascript; charset=utf-8", include_bytes!("../static/errors.js")),
    ("/app.js", "text/javascript; charset=utf-8", include_bytes!("../static/app.js")),
    ("/api.js", "text/javascript; charset=utf-8", include_bytes!("../static/api.js")),
    ("/socket.js", "text/javascript; charset=utf-8", include_bytes!("../static/socket.js")),
    ("/style.css", "text/css; charset=utf-8", include_bytes!("../static/style.css")),
    ("/icon.svg", "image/svg+xml", include_bytes!("../static/icon.svg")),
];

/// Where the client finds the apps that the page's own origin does not serve.
#[derive(Debug, Clone, Default)]
pub struct WebConfig {
    /// `ws(s)://…/ws` URLs of the socket nodes; empty means `/ws` on the page's origin.
    pub socket_urls: Vec<String>,
    /// The file app's `http(s)://host[:port]`; empty means the page's origin.
    pub files_url: String,
}

/// One file ready to serve: its bytes, type and a strong ETag over its content.
struct Asset {
    path: String,
    content_type: &'static str,
    body: Vec<u8>,
    etag: String,
}

/// The client's files and the headers they are served with.
pub struct WebClient {
    assets: Vec<Asset>,
    csp: String,
}

impl std::fmt::Debug for WebClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebClient").field("csp", &self.csp).finish_non_exhaustive()
    }
}

impl WebClient {
    pub fn new(config: &WebConfig) -> Self {
        let mut assets: Vec<Asset> =
            FILES.iter().map(|(path, content_type, body)| Asset::new(path, content_type, body.to_vec())).collect();
        let settings = serde_json::json!({"socket_urls": config.socket_urls, "files_url": config.files_url});
        assets.push(Asset::new("/config.json", "application/json", settings.to_string().into_bytes()));
        Self { assets, csp: csp(config) }
    }

    /// The Content-Security-Policy every response of the client carries.
    pub fn csp(&self) -> &str {
        &self.csp
    }

    /// The answer to a GET or HEAD of one of the client's paths; `None` for any other request.
    pub fn respond(&self, req: &Request) -> Option<Response> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return None;
        }
        let asset = self.assets.iter().find(|a| a.path == req.uri().path())?;
        let unchanged = req
            .headers()
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|tags| tags.split(',').any(|t| t.trim() == asset.etag));
        let mut builder = Response::builder()
            .header(header::ETAG, asset.etag.as_str())
            // No hashed file names: revalidate every time, which the ETag makes a cheap 304.
            .header(header::CACHE_CONTROL, "no-cache")
            .header(header::CONTENT_SECURITY_POLICY, self.csp.as_str())
            .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
            // Keeps the page's URL, and anything in it, from other sites.
            .header(header::REFERRER_POLICY, "no-referrer")
            .header(header::X_FRAME_OPTIONS, "DENY")
            .header("cross-origin-opener-policy", "same-origin");
        if unchanged {
            return Some(builder.status(StatusCode::NOT_MODIFIED).finish());
        }
        builder = builder.content_type(asset.content_type);
        if req.method() == Method::HEAD {
            return Some(builder.header(header::CONTENT_LENGTH, asset.body.len()).finish());
        }
        Some(builder.body(asset.body.clone()))
    }
}

impl Asset {
    fn new(path: &str, content_type: &'static str, body: Vec<u8>) -> Self {
        let digest = Sha256::digest(&body);
        let etag = format!("\"{}\"", hex::encode(&digest[..12]));
        Self { path: path.to_owned(), content_type, body, etag }
    }
}

/// Only the page's own scripts and styles run; it may talk to its origin and to the configured
/// socket and file apps, and show images it fetched itself (`blob:`). Nothing inline, no eval.
fn csp(config: &WebConfig) -> String {
    let mut connect = vec!["'self'".to_owned()];
    connect.extend(config.socket_urls.iter().map(|u| origin_of(u)));
    if !config.files_url.is_empty() {
        connect.push(origin_of(&config.files_url));
    }
    connect.dedup();
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; \
         connect-src {}; manifest-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        connect.join(" ")
    )
}

/// `scheme://host[:port]` of a URL: a CSP source must not carry a path it would match exactly.
fn origin_of(url: &str) -> String {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let end = url[after_scheme..].find(['/', '?', '#']).map_or(url.len(), |i| after_scheme + i);
    url[..end].to_owned()
}

/// Serves the client's paths in front of `inner`, which gets every other request.
pub fn around(inner: BoxEndpoint<'static, Response>, client: WebClient) -> BoxEndpoint<'static, Response> {
    let client = Arc::new(client);
    inner
        .around(move |ep, req| {
            let client = client.clone();
            async move {
                match client.respond(&req) {
                    Some(resp) => Ok(resp),
                    None => ep.call(req).await,
                }
            }
        })
        .boxed()
}
