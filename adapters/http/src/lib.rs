//! HTTP and WebSocket adapter: the REST API (poem-openapi), the socket protocol and the file routes.

mod acceptor;
mod api_accounts;
mod api_files;
mod api_health;
mod api_rooms;
mod bearer;
mod client_addr;
mod declared;
pub mod dto;
mod error;
mod internal_files;
mod limiter;
mod multipart;
mod route_label;
mod state;
mod strict;
pub mod ws;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use poem::endpoint::BoxEndpoint;
use poem::listener::Acceptor;
use poem::{Endpoint, EndpointExt, IntoResponse, Response, Route};
use poem_openapi::OpenApiService;

use acceptor::NoDelayAcceptor;
pub use client_addr::{Cidr, ClientAddr, TrustedProxies};
pub use error::ErrorBody;
pub use internal_files::InternalFiles;
pub use limiter::{LimiterConfig, LoginLimiter};
pub use state::AppState;
pub use ws::{SocketApp, WsConfig};

/// Which of the apps this server serves; `chat` serves them all on one port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Apps {
    pub api: bool,
    pub socket: bool,
    pub files: bool,
}

impl Apps {
    pub const ALL: Self = Self { api: true, socket: true, files: true };
}

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub apps: Apps,
    /// Largest accepted JSON body.
    pub max_body_bytes: usize,
    /// How long in-flight requests get to finish at shutdown.
    pub shutdown_grace: Duration,
    /// Browser origins (`CHAT_ALLOWED_ORIGINS`) allowed to call the API and file routes across
    /// origins, as they may open sockets; none means same-origin only, and no CORS headers.
    pub allowed_origins: Vec<String>,
    /// Reverse proxies whose forwarded client address is believed (`CHAT_TRUSTED_PROXIES`).
    pub trusted_proxies: TrustedProxies,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            apps: Apps::ALL,
            max_body_bytes: 1 << 20,
            shutdown_grace: Duration::from_secs(10),
            allowed_origins: Vec::new(),
            trusted_proxies: TrustedProxies::default(),
        }
    }
}

/// CORS for the allowed origins: credentials travel as bearer tokens, never cookies, so none are
/// allowed; the headers a client must read (Retry-After, ranges) are exposed.
fn cors(allowed_origins: &[String]) -> Option<poem::middleware::Cors> {
    if allowed_origins.is_empty() {
        return None;
    }
    Some(
        poem::middleware::Cors::new()
            .allow_origins(allowed_origins.iter().map(String::as_str))
            .allow_methods(["GET", "POST", "PUT", "DELETE", "OPTIONS"])
            .allow_headers(["authorization", "content-type", "range"])
            .expose_headers(["retry-after", "www-authenticate", "content-range", "content-disposition", "allow"])
            .max_age(600),
    )
}

const TITLE: &str = "Chat API";

/// The whole API's document, whichever apps a process serves: behind one origin they are one API.
fn openapi(
) -> OpenApiService<(api_accounts::AccountsApi, api_rooms::RoomsApi, api_files::FilesApi, api_health::HealthApi), ()> {
    service((api_accounts::AccountsApi, api_rooms::RoomsApi, api_files::FilesApi, api_health::HealthApi))
}

fn service<T: poem_openapi::OpenApi>(apis: T) -> OpenApiService<T, ()> {
    OpenApiService::new(apis, TITLE, env!("CARGO_PKG_VERSION"))
        .description("REST API of the self-hosted chat backend. Errors are always `{code, message}`.")
}

/// The OpenAPI document as YAML, exactly as `/openapi.yaml` serves it.
pub fn openapi_yaml() -> String {
    openapi().spec_yaml()
}

/// Builds the whole HTTP application for the given apps. Each app reads its own data: the REST
/// and public file routes `AppState`, the socket `SocketApp`, the internal file routes `InternalFiles`.
pub fn app(
    state: AppState,
    socket: SocketApp,
    internal_files: InternalFiles,
    config: &HttpConfig,
) -> BoxEndpoint<'static, Response> {
    let mut route = Route::new();
    if config.apps.api {
        let doc = openapi();
        let spec_json = doc.spec();
        let spec_yaml = doc.spec_yaml();
        route = route
            .nest("/docs", doc.swagger_ui())
            .at("/openapi.json", poem::endpoint::make_sync(move |_| json_response(spec_json.clone())))
            .at("/openapi.yaml", poem::endpoint::make_sync(move |_| yaml_response(spec_yaml.clone())));
    }
    use api_accounts::AccountsApi as Accounts;
    use api_files::FilesApi as Files;
    use api_health::HealthApi as Health;
    use api_rooms::RoomsApi as Rooms;
    route = match (config.apps.api, config.apps.files) {
        (true, true) => route.nest("/", service((Accounts, Rooms, Files, Health))),
        (true, false) => route.nest("/", service((Accounts, Rooms, Health))),
        (false, true) => route.nest("/", service((Files, Health))),
        (false, false) => route.nest("/", service(Health)),
    };
    if config.apps.files {
        route = route.at(
            "/internal/files/:file_id",
            poem::put(internal_files::put).get(internal_files::get).delete(internal_files::delete),
        );
    }
    if config.apps.socket {
        route = route.at("/ws", poem::get(ws::ws_handler));
    }
    let metrics = state.metrics.clone();
    let max_body = config.max_body_bytes;
    let trusted = config.trusted_proxies.clone();
    let routed = route.data(state).data(socket).data(internal_files);
    // Around the router, so a preflight is answered before a route could refuse its method; inside
    // the normalizing layer, so an origin it refuses gets the API's JSON error like any other.
    let routed = match cors(&config.allowed_origins) {
        Some(cors) => routed.with(cors).boxed(),
        None => routed.boxed(),
    };
    routed
        .around(move |ep, mut req| {
            let metrics = metrics.clone();
            let peer = req.remote_addr().as_socket_addr().map(SocketAddr::ip);
            let client = trusted.client(peer, req.headers());
            async move {
                let started = Instant::now();
                req.extensions_mut().insert(ClientAddr(client));
                if let Err(refusal) = limit_body(&mut req, max_body) {
                    return Ok(error::normalize(refusal).await);
                }
                let method = route_label::method(req.method().as_str());
                let route = route_label::route(req.uri().path());
                let allowed = route_label::allowed(req.uri().path());
                // Every log line of the request names the client, behind a proxy too.
                let span = tracing::info_span!("request", method, route, client = ?client);
                let mut resp = match tracing::Instrument::instrument(ep.call(req), span).await {
                    Ok(resp) => resp.into_response(),
                    Err(err) => error::normalize(err).await,
                };
                // RFC 9110 §15.5.6: a 405 names the methods the route does allow.
                if resp.status() == poem::http::StatusCode::METHOD_NOT_ALLOWED {
                    if let Some(allowed) = allowed {
                        resp.headers_mut()
                            .insert(poem::http::header::ALLOW, poem::http::HeaderValue::from_static(allowed));
                    }
                }
                metrics.record_request(method, route, resp.status().as_u16(), started.elapsed());
                Ok(resp)
            }
        })
        .boxed()
}

/// Refuses a declared body over `max` with 413, and cuts an undeclared (chunked) one at `max`
/// so it can never be read whole into memory; a cut JSON body then fails to parse with 400.
fn limit_body(req: &mut poem::Request, max: usize) -> poem::Result<()> {
    // Uploads stream to storage under their own, larger limits.
    if req.uri().path().starts_with("/files") || req.uri().path().starts_with("/internal/files") {
        return Ok(());
    }
    let declared =
        req.headers().get(poem::http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    match declared {
        Some(len) if len > max as u64 => {
            Err(poem::Error::from_string("the request body is too large", poem::http::StatusCode::PAYLOAD_TOO_LARGE))
        }
        Some(_) => Ok(()),
        None => {
            let body = req.take_body().into_async_read();
            req.set_body(poem::Body::from_async_read(tokio::io::AsyncReadExt::take(body, max as u64)));
            Ok(())
        }
    }
}

fn json_response(body: String) -> Response {
    Response::builder().content_type("application/json").body(body)
}

fn yaml_response(body: String) -> Response {
    Response::builder().content_type("application/yaml").body(body)
}

/// A bound server; binding to port 0 lets tests run many side by side.
pub struct HttpServer {
    acceptor: NoDelayAcceptor,
    app: BoxEndpoint<'static, Response>,
    grace: Duration,
}

impl HttpServer {
    /// Binds `addr` now, so the port is known before serving starts.
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub async fn bind(
        addr: SocketAddr,
        state: AppState,
        socket: SocketApp,
        internal_files: InternalFiles,
        config: HttpConfig,
    ) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let acceptor = NoDelayAcceptor::from_tokio(listener)?;
        Ok(Self { acceptor, app: app(state, socket, internal_files, &config), grace: config.shutdown_grace })
    }

    /// Puts `front` before the apps, so the composition root can serve another adapter's routes
    /// (the web client) on the same port.
    #[must_use]
    pub fn wrap(
        mut self,
        front: impl FnOnce(BoxEndpoint<'static, Response>) -> BoxEndpoint<'static, Response>,
    ) -> Self {
        self.app = front(self.app);
        self
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.acceptor
            .local_addr()
            .first()
            .and_then(|a| a.as_socket_addr().copied())
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Serves until `shutdown` resolves, then stops accepting and lets requests finish.
    ///
    /// # Errors
    /// When the listener fails.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send) -> std::io::Result<()> {
        poem::Server::new_with_acceptor(self.acceptor)
            .run_with_graceful_shutdown(self.app, shutdown, Some(self.grace))
            .await
    }
}
