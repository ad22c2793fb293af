//! Chooses the adapters behind the ports: embedded (SQLite, memory, local files) or shared (Redis, MongoDB).

use std::sync::Arc;
use std::time::Duration;

use adapter_fs::LocalFileStore;
use adapter_memory::{InMemoryEventBus, InMemoryPresence};
use adapter_mongo::MongoStore;
use adapter_redis::{RedisConfig, RedisEventBus, RedisHealth, RedisMessageLog, RedisMode, RedisPresence};
use adapter_remote_files::RemoteFileStore;
use adapter_sqlite::{SqliteMessageLog, SqliteStore};
use application::metrics::Metrics;
use application::ports::{
    EventBus, FileCatalog, FileStore, HealthCheck, MessageArchive, MessageLog, PresenceRegistry, RefreshTokenStore,
    RoomRepository, UserRepository,
};
use futures::FutureExt;
use secrecy::{ExposeSecret, SecretString};

use crate::config::Config;
use crate::AppKind;

/// How long start-up waits for a shared service before saying it is unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Every port, with the adapter chosen for it.
#[derive(Clone)]
pub struct Backends {
    pub users: Arc<dyn UserRepository>,
    pub refresh: Arc<dyn RefreshTokenStore>,
    pub rooms: Arc<dyn RoomRepository>,
    pub archive: Arc<dyn MessageArchive>,
    pub catalog: Arc<dyn FileCatalog>,
    pub log: Arc<dyn MessageLog>,
    pub bus: Arc<dyn EventBus>,
    /// Who is online on any socket node.
    pub presence: Arc<dyn PresenceRegistry>,
    pub file_store: Arc<dyn FileStore>,
    pub health: Vec<Arc<dyn HealthCheck>>,
    /// The embedded log, which archives as it commits; its count feeds the archived metric.
    /// `None` when Redis and MongoDB are shared: then the log queues messages for a worker.
    pub durable_log: Option<SqliteMessageLog>,
}

/// The settings `kind` needs and `config` lacks, all at once, so one attempt names them all. The
/// embedded `chat` needs none; any app sharing Redis and MongoDB needs both and one signing secret.
fn missing_settings(config: &Config, kind: AppKind) -> Vec<&'static str> {
    let shared = kind != AppKind::All || config.redis_url.is_some() || config.mongodb_url.is_some();
    if !shared {
        return Vec::new();
    }
    let mut missing = Vec::new();
    let mut need = |present: bool, var: &'static str| {
        if !present {
            missing.push(var);
        }
    };
    need(config.redis_url.is_some(), "CHAT_REDIS_URL");
    need(config.mongodb_url.is_some(), "CHAT_MONGODB_URL");
    need(config.jwt_secret.is_some(), "CHAT_JWT_SECRET");
    if matches!(kind, AppKind::Api | AppKind::Socket) {
        need(config.file_url.is_some(), "CHAT_FILE_URL");
    }
    if matches!(kind, AppKind::Api | AppKind::Socket | AppKind::File) {
        need(config.internal_token.is_some(), "CHAT_INTERNAL_TOKEN");
    }
    missing
}

/// Refuses, naming every missing setting at once, to run `kind` without what it needs.
///
/// # Errors
/// The missing settings, with where to read about them.
pub fn require_settings(config: &Config, kind: AppKind) -> anyhow::Result<()> {
    let missing = missing_settings(config, kind);
    if missing.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "{}: required to run this app with shared Redis and MongoDB (see .env.example); \
         run `chat` for everything in one process on the embedded adapters",
        missing.join(", ")
    )
}

/// Picks and connects the adapters for `kind`.
///
/// # Errors
/// A missing or unreachable shared service, named by its variable.
pub async fn connect(config: &Config, kind: AppKind, metrics: &Arc<Metrics>) -> anyhow::Result<Backends> {
    require_settings(config, kind)?;
    match (&config.redis_url, &config.mongodb_url) {
        (Some(redis), Some(mongo)) => shared(config, kind, redis, mongo, metrics).await,
        // With neither URL, `require_settings` let only the all-in-one app through.
        _ => embedded(config),
    }
}

fn embedded(config: &Config) -> anyhow::Result<Backends> {
    let store = Arc::new(SqliteStore::open_with(&config.data_dir.join("chat.db"), config.sqlite_sync)?);
    let log = SqliteMessageLog::start((*store).clone(), SqliteMessageLog::DEFAULT_DEDUPE_TTL)?;
    let files = Arc::new(LocalFileStore::new(config.data_dir.join("files"))?);
    Ok(Backends {
        users: store.clone(),
        refresh: store.clone(),
        rooms: store.clone(),
        archive: store.clone(),
        catalog: store.clone(),
        log: Arc::new(log.clone()),
        bus: Arc::new(InMemoryEventBus::default()),
        presence: Arc::new(InMemoryPresence::default()),
        file_store: files.clone(),
        health: vec![store, files],
        durable_log: Some(log),
    })
}

async fn shared(
    config: &Config,
    kind: AppKind,
    redis: &SecretString,
    mongo: &SecretString,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<Backends> {
    let mongo = MongoStore::connect_measured(mongo.expose_secret(), Some(metrics.clone()));
    let mongo = tokio::time::timeout(CONNECT_TIMEOUT, mongo)
        .await
        .map_err(|_| anyhow::anyhow!("CHAT_MONGODB_URL: MongoDB did not answer within {CONNECT_TIMEOUT:?}"))?
        .map_err(|e| anyhow::anyhow!("CHAT_MONGODB_URL: {e:#}"))?;
    let redis_url = redis.expose_secret();
    let reach = |e: anyhow::Error| anyhow::anyhow!("CHAT_REDIS_URL: cannot reach Redis: {e:#}");
    let late = |_| anyhow::anyhow!("CHAT_REDIS_URL: Redis did not answer within {CONNECT_TIMEOUT:?}");
    let log_config = RedisConfig {
        key_prefix: config.redis_prefix.clone(),
        cache_per_room: config.hot_cache_per_room,
        mode: config.redis_mode,
        min_replicas: config.redis_min_replicas,
        ..RedisConfig::new(redis_url)
    };
    let log = tokio::time::timeout(CONNECT_TIMEOUT, RedisMessageLog::connect(log_config))
        .await
        .map_err(late)?
        .map_err(reach)?
        .measured(metrics.clone());
    let bus = match config.redis_mode {
        RedisMode::Standalone => RedisEventBus::connect(redis_url, &config.redis_prefix).boxed(),
        RedisMode::Cluster => {
            let seeds: Vec<String> = redis_url.split(',').map(str::trim).map(str::to_owned).collect();
            async move { RedisEventBus::connect_cluster(&seeds, &config.redis_prefix).await }.boxed()
        }
    };
    let bus = tokio::time::timeout(CONNECT_TIMEOUT, bus).await.map_err(late)?.map_err(reach)?;
    let redis_health = tokio::time::timeout(CONNECT_TIMEOUT, RedisHealth::connect(redis_url, config.redis_mode))
        .await
        .map_err(late)?
        .map_err(reach)?;
    let presence = tokio::time::timeout(
        CONNECT_TIMEOUT,
        RedisPresence::connect(redis_url, config.redis_mode, &config.redis_prefix),
    )
    .await
    .map_err(late)?
    .map_err(reach)?;

    let mongo = Arc::new(mongo);
    let mut health: Vec<Arc<dyn HealthCheck>> = vec![mongo.clone(), Arc::new(redis_health)];
    let file_store: Arc<dyn FileStore> = match kind {
        AppKind::Socket | AppKind::Api => {
            let url = config.file_url.as_deref().ok_or_else(|| {
                anyhow::anyhow!("CHAT_FILE_URL: required so this app can reach the file app (e.g. http://file:8082)")
            })?;
            let token = config.internal_token.clone().ok_or_else(|| {
                anyhow::anyhow!("CHAT_INTERNAL_TOKEN: required so this app can authenticate to the file app")
            })?;
            RemoteFileStore::new(url, token)?
        }
        AppKind::File | AppKind::Worker | AppKind::All => {
            if kind == AppKind::File && config.internal_token.is_none() {
                anyhow::bail!("CHAT_INTERNAL_TOKEN: required by the file app, so socket nodes can store files");
            }
            let files = Arc::new(LocalFileStore::new(config.data_dir.join("files"))?);
            health.push(files.clone());
            files
        }
    };
    Ok(Backends {
        users: mongo.clone(),
        refresh: mongo.clone(),
        rooms: mongo.clone(),
        archive: mongo.clone(),
        catalog: mongo,
        log: Arc::new(log),
        bus: Arc::new(bus),
        presence: Arc::new(presence),
        file_store,
        health,
        durable_log: None,
    })
}
