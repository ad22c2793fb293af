//! Composition root: configuration, wiring of adapters, and the chat binaries.

mod backends;
pub mod config;
mod secret;
pub mod telemetry;
mod worker;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use adapter_http::{AppState, Apps, HttpConfig, HttpServer, InternalFiles, LimiterConfig, SocketApp, WsConfig};
use adapter_security::{Argon2Hasher, JwtConfig, JwtTokenService, SystemClock, UuidV7Ids};
use application::files::FileLimits;
use application::ports::{Clock, IdGenerator};
use application::{Accounts, Archiver, Files, Messaging, Rooms};
use chat_metrics::Metrics;
use domain::{MemberLimit, RetentionPolicy};
use tokio::sync::watch;

pub use config::Config;

/// Which app a process runs; `All` is the `chat` binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    All,
    Api,
    File,
    Socket,
    Worker,
}

impl Role {
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

/// A composed, bound application, ready to serve.
pub struct Application {
    server: HttpServer,
    socket: SocketApp,
    archiver: Archiver,
    metrics: Arc<Metrics>,
    worker: Option<worker::WorkerConfig>,
    archive_batch: usize,
    hub_task: tokio::task::JoinHandle<()>,
}

impl Application {
    /// Opens the embedded stores under the data directory, recovers sequence counters from the
    /// archive, and binds the listener.
    ///
    /// # Errors
    /// When a store cannot be opened, the secret is unusable, or the address cannot be bound.
    pub async fn build(config: Config, role: Role) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| anyhow::anyhow!("CHAT_DATA_DIR: cannot create {}: {e}", config.data_dir.display()))?;
        let secret = match &config.jwt_secret {
            Some(secret) => secret.clone(),
            None if config.redis_url.is_none() => secret::load_or_create(&config.data_dir)?,
            None => anyhow::bail!(
                "CHAT_JWT_SECRET: required when the apps share Redis and MongoDB, so every node signs alike"
            ),
        };
        let backends = backends::connect(&config, role).await?;
        let ports = backends.clone();
        let (log, bus, file_arc) = (backends.log.clone(), backends.bus.clone(), backends.file_store.clone());
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let ids: Arc<dyn IdGenerator> = Arc::new(UuidV7Ids);

        let mut jwt = JwtConfig::new(secret, config.jwt_issuer.clone(), config.jwt_audience.clone());
        jwt.access_ttl = chrono::Duration::from_std(config.access_token_ttl)?;
        jwt.refresh_ttl = chrono::Duration::from_std(config.refresh_token_ttl)?;
        let tokens = Arc::new(JwtTokenService::new(jwt).map_err(|e| anyhow::anyhow!("CHAT_JWT_SECRET: {e}"))?);
        let retention = RetentionPolicy::new(
            chrono::Duration::days(config.retention_messages_days),
            chrono::Duration::days(config.retention_images_days),
            chrono::Duration::days(config.retention_files_days),
        )?;
        let member_limit = MemberLimit::new(config.room_member_limit)
            .ok_or_else(|| anyhow::anyhow!("CHAT_ROOM_MEMBER_LIMIT: expected at least 1"))?;
        let limits = FileLimits {
            image_max: config.image_max_bytes,
            file_max: config.file_max_bytes,
            user_quota: config.user_quota_bytes,
        };

        let accounts = Accounts::new(
            ports.users.clone(),
            ports.refresh.clone(),
            Arc::new(Argon2Hasher::new()?),
            tokens,
            bus.clone(),
            clock.clone(),
            ids.clone(),
        );
        let rooms = Rooms::new(
            ports.rooms.clone(),
            ports.users.clone(),
            log.clone(),
            bus.clone(),
            clock.clone(),
            ids.clone(),
            member_limit,
        );
        let files = Files::new(
            file_arc.clone(),
            ports.catalog.clone(),
            ports.rooms.clone(),
            clock.clone(),
            ids.clone(),
            limits,
            retention,
        );
        let messaging = Messaging::new(
            ports.rooms.clone(),
            log.clone(),
            ports.archive.clone(),
            bus.clone(),
            files.clone(),
            clock.clone(),
            ids,
        )
        .with_retention(retention);
        let archiver = Archiver::new(
            log,
            ports.archive.clone(),
            file_arc.clone(),
            ports.catalog.clone(),
            clock,
            retention,
            config.purge_batch,
        );
        let recovered = archiver.recover_sequences().await?;
        tracing::info!(rooms = recovered, "recovered message sequence counters from the archive");

        let metrics = Arc::new(Metrics::default());
        let socket = SocketApp::new(WsConfig {
            allowed_origins: config.allowed_origins.clone(),
            max_connections_per_user: config.max_connections_per_user,
            rate_per_sec: config.ws_rate_per_sec,
            burst: config.ws_burst,
            max_binary_bytes: usize::try_from(limits.image_max.max(limits.file_max))
                .unwrap_or(usize::MAX)
                .saturating_add(8192),
            ..WsConfig::default()
        });
        let hub_task = socket.start(&bus).await?;
        let state = AppState {
            accounts,
            rooms,
            messaging,
            files,
            health: Arc::new(backends.health.clone()),
            limiter: Arc::new(adapter_http::LoginLimiter::new(LimiterConfig::default())),
            metrics: metrics.clone(),
        };
        let internal_files = InternalFiles { store: file_arc.clone(), token: config.internal_token.clone() };
        let http = HttpConfig { apps: role.apps(), ..HttpConfig::default() };
        let server = HttpServer::bind(config.addr, state, socket.clone(), internal_files, http)
            .await
            .map_err(|e| anyhow::anyhow!("CHAT_ADDR: cannot listen on {}: {e}", config.addr))?;
        let worker = role.runs_worker().then(|| worker::WorkerConfig {
            consumer: if backends.shared { config.worker_name.clone() } else { "embedded".to_owned() },
            batch: config.archive_batch,
            interval: config.archive_interval,
            purge_cron: config.purge_cron.clone(),
        });
        Ok(Self { server, socket, archiver, metrics, worker, archive_batch: config.archive_batch, hub_task })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Serves until `shutdown` resolves; then closes sockets with 1001, stops accepting, and
    /// archives everything the message log still holds before returning.
    ///
    /// # Errors
    /// When serving fails or the final archive pass cannot write.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut loops = Vec::new();
        if let Some(config) = &self.worker {
            loops.push(tokio::spawn(worker::archive_loop(
                self.archiver.clone(),
                config.clone(),
                self.metrics.clone(),
                stop_rx.clone(),
            )));
            loops.push(tokio::spawn(worker::purge_loop(
                self.archiver.clone(),
                config.purge_cron.clone(),
                self.metrics.clone(),
                stop_rx,
            )));
        }
        let socket = self.socket.clone();
        let metrics = self.metrics.clone();
        let shutdown = async move {
            shutdown.await;
            tracing::info!("shutting down: closing sockets");
            socket.hub.close_all(adapter_http::ws::hub::close::GOING_AWAY, "going_away");
            // Sockets finish their current frame before closing; wait so nothing is appended after the final archive pass.
            for _ in 0..100 {
                if metrics.live_sockets() <= 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        let served = self.server.run_until_stopped(shutdown).await;
        let _ = stop_tx.send(true);
        for handle in loops {
            let _ = handle.await;
        }
        self.hub_task.abort();
        let consumer = self.worker.as_ref().map_or("embedded", |w| w.consumer.as_str());
        let archived = self.archiver.drain(consumer, self.archive_batch).await?;
        tracing::info!(archived, "archived what the message log still held");
        served?;
        Ok(())
    }
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
///
/// # Errors
/// Any start-up or serving failure, already worded for the operator.
pub async fn main_for(role: Role) -> anyhow::Result<()> {
    let config = Config::from_env(role.default_addr())?;
    telemetry::init(config.log_format, &config.log_filter);
    if role != Role::All {
        tracing::warn!(
            ?role,
            "split apps still run on the embedded adapters; shared Redis and MongoDB come with the split deployment"
        );
    }
    let app = Application::build(config, role).await?;
    tracing::info!(addr = %app.local_addr(), ?role, "listening");
    app.run_until_stopped(shutdown_signal()).await
}
