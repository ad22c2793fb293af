//! Composition root: configuration, wiring of adapters, and the chat binaries.

mod backends;
pub mod config;
mod membership;
mod revocations;
mod secret;
pub mod telemetry;
mod wiring;
mod worker;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use adapter_http::{AppState, Apps, HttpConfig, HttpServer, InternalFiles, LimiterConfig, SocketApp};
use application::accounts::Accounts;
use application::membership::MembershipCache;
use application::metrics::Metrics;
use application::ports::EventBus;
use application::Archiver;
use tokio::sync::watch;

pub use config::Config;

/// Which app a process runs; `All` is the `chat` binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppKind {
    All,
    Api,
    File,
    Socket,
    Worker,
}

impl AppKind {
    /// The port each binary listens on unless `CHAT_ADDR` says otherwise.
    pub const fn default_addr(self) -> &'static str {
        match self {
            Self::All => "127.0.0.1:8080",
            Self::Api => "127.0.0.1:8081",
            Self::File => "127.0.0.1:8082",
            Self::Socket => "127.0.0.1:8083",
            Self::Worker => "127.0.0.1:8084",
        }
    }

    fn apps(self) -> Apps {
        match self {
            Self::All => Apps::ALL,
            Self::Api => Apps { api: true, socket: false, files: false },
            Self::File => Apps { api: false, socket: false, files: true },
            Self::Socket => Apps { api: false, socket: true, files: false },
            Self::Worker => Apps { api: false, socket: false, files: false },
        }
    }

    fn runs_worker(self) -> bool {
        matches!(self, Self::All | Self::Worker)
    }
}

/// What `/health/ready` checks: every backend in use, and on a socket node, that it still takes
/// sockets.
fn readiness(
    backends: &backends::Backends,
    socket: &SocketApp,
    kind: AppKind,
) -> Vec<Arc<dyn application::ports::HealthCheck>> {
    let mut checks = backends.health.clone();
    if kind.apps().socket {
        checks.push(socket.readiness());
    }
    checks
}

/// How long shutdown waits for sockets to close after asking them to.
const SOCKET_DRAIN: Duration = Duration::from_secs(5);

/// A composed, bound application, ready to serve.
pub struct Application {
    server: HttpServer,
    socket: SocketApp,
    archiver: Archiver,
    accounts: Accounts,
    membership: MembershipCache,
    bus: Arc<dyn EventBus>,
    metrics: Arc<Metrics>,
    worker: Option<worker::WorkerConfig>,
    archive_batch: usize,
    hub_task: tokio::task::JoinHandle<()>,
    /// The embedded log: it archives as it commits, so the worker only reports its count.
    durable_log: Option<adapter_sqlite::SqliteMessageLog>,
}

impl Application {
    /// Opens the stores, wires the use cases and binds the listener. Seq counters need no
    /// recovery here: the embedded log keeps them with the messages, and the Redis log refuses
    /// appends until the first send after a data loss has raised them from the archive.
    ///
    /// # Errors
    /// When a store cannot be opened, the secret is unusable, or the address cannot be bound.
    pub async fn build(config: Config, kind: AppKind) -> anyhow::Result<Self> {
        // Checked before anything touches the disk, so a misconfigured app leaves nothing behind.
        backends::require_settings(&config, kind)?;
        private_dir(&config.data_dir)?;
        let secret = wiring::jwt_secret(&config)?;
        let metrics = Arc::new(Metrics::default());
        let backends = backends::connect(&config, kind, &metrics).await?;
        let wiring::UseCases { accounts, rooms, files, messaging, presence, archiver, search, membership } =
            wiring::use_cases(&config, &backends, secret)?;

        let socket = SocketApp::new(wiring::socket_config(&config));
        let hub_task = socket.start(&backends.bus, rooms.clone(), presence.clone(), metrics.clone()).await?;
        let state = AppState {
            accounts: accounts.clone(),
            rooms,
            messaging,
            presence,
            files,
            search,
            health: Arc::new(readiness(&backends, &socket, kind)),
            limiter: Arc::new(adapter_http::LoginLimiter::new(LimiterConfig {
                per_name: config.login_failures_per_name,
                per_address: config.login_failures_per_address,
                registrations_per_address: config.registrations_per_address,
                ..LimiterConfig::default()
            })),
            metrics: metrics.clone(),
            metrics_token: config.metrics_token.clone(),
        };
        let internal_files = InternalFiles { store: backends.file_store.clone(), token: config.internal_token.clone() };
        let http = HttpConfig {
            apps: kind.apps(),
            allowed_origins: config.allowed_origins.clone(),
            trusted_proxies: config.trusted_proxies.clone(),
            ..HttpConfig::default()
        };
        let server = HttpServer::bind(config.addr, state, socket.clone(), internal_files, http)
            .await
            .map_err(|e| anyhow::anyhow!("CHAT_ADDR: cannot listen on {}: {e}", config.addr))?;
        // The web client comes with the REST API, which it needs most.
        let server = if kind.apps().api {
            let web = adapter_web::WebConfig {
                socket_urls: config.web_socket_urls.clone(),
                files_url: config.web_files_url.clone(),
            };
            server.wrap(|api| adapter_web::around(api, adapter_web::WebClient::new(&web)))
        } else {
            server
        };
        let worker = kind.runs_worker().then(|| worker::WorkerConfig {
            consumer: config.worker_name.clone(),
            batch: config.archive_batch,
            interval: config.archive_interval,
            purge_cron: config.purge_cron.clone(),
        });
        Ok(Self {
            server,
            socket,
            archiver,
            accounts,
            membership,
            bus: backends.bus.clone(),
            metrics,
            worker,
            archive_batch: config.archive_batch,
            hub_task,
            durable_log: backends.durable_log.clone(),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Serves until `shutdown` resolves; then closes sockets with 1001, stops accepting, and, in
    /// an archiving worker, archives everything the message log still queues before returning.
    ///
    /// # Errors
    /// When serving fails or the final archive pass cannot write.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut loops = vec![
            tokio::spawn(revocations::follow(self.accounts.clone(), self.bus.clone(), stop_rx.clone())),
            tokio::spawn(membership::follow(self.membership.clone(), self.bus.clone(), stop_rx.clone())),
        ];
        if let Some(config) = &self.worker {
            loops.push(match self.durable_log.clone() {
                Some(log) => {
                    tokio::spawn(worker::count_committed(log, config.interval, self.metrics.clone(), stop_rx.clone()))
                }
                None => tokio::spawn(worker::archive_loop(
                    self.archiver.clone(),
                    config.clone(),
                    self.metrics.clone(),
                    stop_rx.clone(),
                )),
            });
            loops.push(tokio::spawn(worker::purge_loop(
                self.archiver.clone(),
                self.accounts.clone(),
                config.purge_cron.clone(),
                self.metrics.clone(),
                stop_rx,
            )));
        }
        let socket = self.socket.clone();
        let shutdown = async move {
            shutdown.await;
            tracing::info!("shutting down: closing sockets");
            // Sockets finish their current frame before closing; wait so nothing is appended after the final archive pass.
            if !socket.drain(SOCKET_DRAIN).await {
                tracing::warn!(within = ?SOCKET_DRAIN, "some sockets were still open when shutdown went on");
            }
        };
        let served = self.server.run_until_stopped(shutdown).await;
        let _ = stop_tx.send(true);
        for handle in loops {
            let _ = handle.await;
        }
        self.hub_task.abort();
        // Only an archiver drains the shared queue; other apps would take its entries under a name
        // no worker answers to.
        if let Some(worker) = self.worker.as_ref().filter(|_| self.durable_log.is_none()) {
            let archived = self.archiver.drain(&worker.consumer, self.archive_batch).await?;
            tracing::info!(archived, "archived what the message log still held");
        }
        served?;
        Ok(())
    }
}

/// Creates the data directory if needed, readable by this user only: it holds the database, the
/// files and the signing secret.
fn private_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    let cannot = |e: std::io::Error| anyhow::anyhow!("CHAT_DATA_DIR: cannot create {}: {e}", dir.display());
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(cannot)
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// The body of every binary: load configuration, start logging, build, serve until a signal.
/// Start-up errors are already worded for the operator and go to stderr after the binary's name.
pub async fn main_for(kind: AppKind, binary: &str) -> std::process::ExitCode {
    match std::env::args().nth(1).as_deref() {
        None => {}
        Some("-h" | "--help") => {
            print!("{}", usage(kind, binary));
            return std::process::ExitCode::SUCCESS;
        }
        Some("-V" | "--version") => {
            println!("{binary} {}", env!("CARGO_PKG_VERSION"));
            return std::process::ExitCode::SUCCESS;
        }
        Some(other) => {
            eprintln!("{binary}: unexpected argument {other:?}; settings come from CHAT_* variables\n");
            eprint!("{}", usage(kind, binary));
            return std::process::ExitCode::from(2);
        }
    }
    match serve(kind).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{binary}: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// What `--help` prints: what the binary runs and where its settings come from.
fn usage(kind: AppKind, binary: &str) -> String {
    let what = match kind {
        AppKind::All => "the whole chat server in one process: REST API, WebSocket chat, files and worker, on SQLite and the local disk unless CHAT_REDIS_URL and CHAT_MONGODB_URL are set",
        AppKind::Api => "the REST API app of a split deployment (needs Redis, MongoDB and the file app)",
        AppKind::File => "the file app of a split deployment (needs Redis and MongoDB)",
        AppKind::Socket => "a WebSocket node of a split deployment (needs Redis, MongoDB and the file app)",
        AppKind::Worker => "the background worker of a split deployment: archiving and purges (needs Redis and MongoDB)",
    };
    format!(
        "{binary} {version}: {what}.\n\n\
         Usage: {binary} [--help | --version]\n\n\
         Every setting is a CHAT_* environment variable (or a TOML file named by CHAT_CONFIG_FILE);\n\
         .env.example lists them all with their defaults, docs/operations.md explains them.\n\
         Listens on {addr} unless CHAT_ADDR says otherwise.\n",
        version = env!("CARGO_PKG_VERSION"),
        addr = kind.default_addr(),
    )
}

async fn serve(kind: AppKind) -> anyhow::Result<()> {
    let config = Config::from_env(kind.default_addr())?;
    telemetry::init(config.log_format, &config.log_filter);
    for variable in &config.unknown_variables {
        tracing::warn!(%variable, "unknown CHAT_ variable ignored; .env.example lists every setting");
    }
    let app = Application::build(config, kind).await?;
    tracing::info!(addr = %app.local_addr(), ?kind, "listening");
    app.run_until_stopped(shutdown_signal()).await
}
