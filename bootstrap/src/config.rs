//! Configuration from `CHAT_*` environment variables over an optional TOML file, checked at start-up.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use secrecy::SecretString;

/// A setting that could not be used; names the variable and what it expects.
#[derive(Debug, thiserror::Error)]
#[error("{var}: expected {expected}, got {got:?}")]
pub struct ConfigError {
    pub var: String,
    pub expected: String,
    pub got: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    /// None in embedded mode means: generate one and keep it in the data directory.
    pub jwt_secret: Option<SecretString>,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub log_format: LogFormat,
    pub log_filter: String,
    pub room_member_limit: u32,
    pub allowed_origins: Vec<String>,
    /// Reverse proxies whose `X-Forwarded-For`/`Forwarded` client address is believed.
    pub trusted_proxies: adapter_http::TrustedProxies,
    /// Where the web client opens its socket when `/ws` is not on its own origin (split shape).
    pub web_socket_urls: Vec<String>,
    /// Where the web client sends uploads and downloads when `/files` is not on its own origin.
    pub web_files_url: String,
    pub max_connections_per_user: usize,
    pub ws_rate_per_sec: f64,
    pub ws_burst: f64,
    /// How long one socket write may wait for a peer that stopped reading.
    pub ws_write_timeout: Duration,
    /// Bytes a socket may have waiting to be written before it is closed with 1013 too_slow.
    pub ws_outbound_queue_bytes: usize,
    /// How often socket nodes read every socket's rooms again, for membership events they missed.
    pub ws_reconcile_every: Duration,
    /// Threads hashing passwords at once (each holds one argon2 block of 19 MiB); 0 = one per core, at most 2.
    pub password_hash_threads: usize,
    /// Logins and sign-ups that may wait for a hashing thread before the rest get 503.
    pub password_hash_queue: usize,
    /// Failed logins one (username, address) pair may have in a 15-minute window.
    pub login_failures_per_name: u32,
    /// Failed logins one client address may have in a 15-minute window, whatever the names.
    pub login_failures_per_address: u32,
    /// Accounts one client address may create per hour; 0 = no limit.
    pub registrations_per_address: u32,
    pub image_max_bytes: u64,
    pub file_max_bytes: u64,
    pub user_quota_bytes: u64,
    /// How long an upload holds its share of the quota; a crash frees it after this.
    pub quota_hold: Duration,
    /// How long a file uploaded with `POST /files` waits for a message before the purge deletes it.
    pub unattached_file: Duration,
    /// How long after sending its sender may edit a text message.
    pub message_edit_window: Duration,
    pub retention_messages_days: i64,
    pub retention_images_days: i64,
    pub retention_files_days: i64,
    pub archive_batch: usize,
    pub archive_interval: Duration,
    pub purge_cron: String,
    pub purge_batch: u32,
    pub hot_cache_per_room: usize,
    /// How durable an embedded commit (and so an ack) is: kill -9 only, or power loss too.
    pub sqlite_sync: adapter_sqlite::Durability,
    /// Shared Redis for the message log and event bus; with MongoDB, replaces the embedded adapters.
    pub redis_url: Option<SecretString>,
    /// Prefix of every Redis key, so deployments (and tests) can share one Redis.
    pub redis_prefix: String,
    /// One Redis, or a Redis Cluster whose seed nodes `CHAT_REDIS_URL` lists, comma-separated.
    pub redis_mode: adapter_redis::RedisMode,
    /// Replicas that must confirm a message before it is acknowledged (Redis `WAIT`).
    pub redis_min_replicas: u32,
    /// Shared MongoDB for users, rooms, the archive and the file catalog.
    pub mongodb_url: Option<SecretString>,
    /// Where socket nodes reach the file app when split.
    pub file_url: Option<String>,
    /// Authenticates socket nodes to the file app's internal routes.
    pub internal_token: Option<SecretString>,
    /// When set, `/metrics` answers only a bearer of this token.
    pub metrics_token: Option<SecretString>,
    /// Names this worker in the archive queue; stable across restarts so it re-reads its own pending entries.
    pub worker_name: String,
    /// `CHAT_*` variables that name no setting, warned about once logging is up.
    pub unknown_variables: Vec<String>,
}

/// Every variable we read, with its default, so `.env.example` and this list cannot drift apart
/// unnoticed (a test compares them).
pub const VARIABLES: &[(&str, &str)] = &[
    ("CHAT_ADDR", "127.0.0.1:8080"),
    ("CHAT_DATA_DIR", "./data"),
    ("CHAT_JWT_SECRET", ""),
    ("CHAT_JWT_ISSUER", "chat"),
    ("CHAT_JWT_AUDIENCE", "chat"),
    ("CHAT_ACCESS_TOKEN_TTL_SECS", "900"),
    ("CHAT_REFRESH_TOKEN_TTL_DAYS", "30"),
    ("CHAT_LOG_FORMAT", "text"),
    ("CHAT_LOG", "info"),
    ("CHAT_ROOM_MEMBER_LIMIT", "100"),
    ("CHAT_ALLOWED_ORIGINS", ""),
    ("CHAT_TRUSTED_PROXIES", ""),
    ("CHAT_WEB_SOCKET_URLS", ""),
    ("CHAT_WEB_FILES_URL", ""),
    ("CHAT_MAX_CONNECTIONS_PER_USER", "10"),
    ("CHAT_WS_RATE_PER_SEC", "20"),
    ("CHAT_WS_BURST", "40"),
    ("CHAT_WS_WRITE_TIMEOUT_MS", "10000"),
    ("CHAT_WS_OUTBOUND_QUEUE_BYTES", "1048576"),
    ("CHAT_WS_RECONCILE_SECS", "30"),
    ("CHAT_PASSWORD_HASH_THREADS", "0"),
    ("CHAT_PASSWORD_HASH_QUEUE", "64"),
    ("CHAT_LOGIN_FAILURES_PER_NAME", "5"),
    ("CHAT_LOGIN_FAILURES_PER_ADDRESS", "20"),
    ("CHAT_REGISTRATIONS_PER_ADDRESS", "20"),
    ("CHAT_IMAGE_MAX_BYTES", "5242880"),
    ("CHAT_FILE_MAX_BYTES", "31457280"),
    ("CHAT_USER_QUOTA_BYTES", "1073741824"),
    ("CHAT_QUOTA_HOLD_SECS", "900"),
    ("CHAT_UNATTACHED_FILE_SECS", "3600"),
    ("CHAT_MESSAGE_EDIT_WINDOW_SECS", "86400"),
    ("CHAT_RETENTION_MESSAGES_DAYS", "30"),
    ("CHAT_RETENTION_IMAGES_DAYS", "14"),
    ("CHAT_RETENTION_FILES_DAYS", "28"),
    ("CHAT_ARCHIVE_BATCH", "1000"),
    ("CHAT_ARCHIVE_INTERVAL_MS", "1000"),
    ("CHAT_PURGE_CRON", "0 0 * * * *"),
    ("CHAT_PURGE_BATCH", "1000"),
    ("CHAT_HOT_CACHE_PER_ROOM", "1000"),
    ("CHAT_SQLITE_SYNC", "normal"),
    ("CHAT_REDIS_URL", ""),
    ("CHAT_REDIS_PREFIX", "chat:"),
    ("CHAT_REDIS_MODE", "standalone"),
    ("CHAT_REDIS_MIN_REPLICAS", "0"),
    ("CHAT_MONGODB_URL", ""),
    ("CHAT_FILE_URL", ""),
    ("CHAT_INTERNAL_TOKEN", ""),
    ("CHAT_METRICS_TOKEN", ""),
    ("CHAT_WORKER_NAME", ""),
    ("CHAT_CONFIG_FILE", ""),
];

/// Raw settings: defaults, then the TOML file, then the environment.
struct Source(BTreeMap<String, String>);

impl Source {
    fn get(&self, var: &str) -> &str {
        self.0.get(var).map_or("", String::as_str)
    }

    /// A comma-separated list, without blanks.
    fn list(&self, var: &str) -> Vec<String> {
        self.get(var).split(',').map(str::trim).filter(|item| !item.is_empty()).map(str::to_owned).collect()
    }

    fn parse<T: FromStr>(&self, var: &str, expected: &str) -> Result<T, ConfigError> {
        let raw = self.get(var);
        raw.trim().parse().map_err(|_| ConfigError { var: var.into(), expected: expected.into(), got: raw.into() })
    }

    fn positive<T: FromStr + PartialOrd + Default>(&self, var: &str, expected: &str) -> Result<T, ConfigError> {
        let value: T = self.parse(var, expected)?;
        if value > T::default() {
            Ok(value)
        } else {
            Err(ConfigError { var: var.into(), expected: expected.into(), got: self.get(var).into() })
        }
    }
}

impl Config {
    /// Reads the process environment (and `CHAT_CONFIG_FILE` if set); `default_addr` is the
    /// binary's own default for `CHAT_ADDR`.
    ///
    /// # Errors
    /// The first setting that is missing, malformed or out of range.
    pub fn from_env(default_addr: &str) -> anyhow::Result<Self> {
        let mut vars: Vec<(String, String)> = vec![("CHAT_ADDR".to_owned(), default_addr.to_owned())];
        vars.extend(std::env::vars());
        Self::from_vars(vars)
    }

    /// Reads the given variables; tests pass their own.
    ///
    /// # Errors
    /// The first setting that is missing, malformed or out of range.
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> anyhow::Result<Self> {
        let env: BTreeMap<String, String> = vars.into_iter().filter(|(k, _)| k.starts_with("CHAT_")).collect();
        let mut map: BTreeMap<String, String> =
            VARIABLES.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        if let Some(path) = env.get("CHAT_CONFIG_FILE").filter(|p| !p.is_empty()) {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("CHAT_CONFIG_FILE: cannot read {path}: {e}"))?;
            let table: toml::Table =
                text.parse().map_err(|e| anyhow::anyhow!("CHAT_CONFIG_FILE: {path} is not valid TOML: {e}"))?;
            for (key, value) in table {
                let var = format!("CHAT_{}", key.to_uppercase());
                if !map.contains_key(&var) {
                    anyhow::bail!("CHAT_CONFIG_FILE: unknown setting {key:?} in {path}");
                }
                let value = match value {
                    toml::Value::String(s) => s,
                    toml::Value::Array(items) => items
                        .iter()
                        .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
                        .collect::<Vec<_>>()
                        .join(","),
                    other => other.to_string(),
                };
                map.insert(var, value);
            }
        }
        let mut unknown = Vec::new();
        for (key, value) in env {
            if !map.contains_key(&key) && !is_reserved_for_later(&key) {
                unknown.push(key.clone());
            }
            map.insert(key, value);
        }
        let mut config = Self::from_source(&Source(map))?;
        config.unknown_variables = unknown;
        Ok(config)
    }

    fn from_source(s: &Source) -> anyhow::Result<Self> {
        let jwt_secret = match s.get("CHAT_JWT_SECRET") {
            "" => None,
            secret if secret.len() < 32 => {
                return Err(ConfigError {
                    var: "CHAT_JWT_SECRET".into(),
                    expected: "at least 32 bytes".into(),
                    got: format!("<{} bytes, redacted>", secret.len()),
                }
                .into())
            }
            secret => Some(SecretString::from(secret.to_owned())),
        };
        let log_format = match s.get("CHAT_LOG_FORMAT") {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(ConfigError {
                    var: "CHAT_LOG_FORMAT".into(),
                    expected: "text or json".into(),
                    got: other.into(),
                }
                .into())
            }
        };
        let redis_mode = match s.get("CHAT_REDIS_MODE").trim() {
            "standalone" => adapter_redis::RedisMode::Standalone,
            "cluster" => adapter_redis::RedisMode::Cluster,
            other => {
                return Err(ConfigError {
                    var: "CHAT_REDIS_MODE".into(),
                    expected: "standalone or cluster".into(),
                    got: other.into(),
                }
                .into())
            }
        };
        let sqlite_sync = match s.get("CHAT_SQLITE_SYNC") {
            "normal" => adapter_sqlite::Durability::Process,
            "full" => adapter_sqlite::Durability::PowerLoss,
            other => {
                return Err(ConfigError {
                    var: "CHAT_SQLITE_SYNC".into(),
                    expected: "normal or full".into(),
                    got: other.into(),
                }
                .into())
            }
        };
        let purge_cron = s.get("CHAT_PURGE_CRON").to_owned();
        if cron::Schedule::from_str(&purge_cron).is_err() {
            return Err(ConfigError {
                var: "CHAT_PURGE_CRON".into(),
                expected: "a cron expression with seconds, e.g. \"0 0 * * * *\" (hourly)".into(),
                got: purge_cron,
            }
            .into());
        }
        Ok(Self {
            addr: s.parse("CHAT_ADDR", "an address like 127.0.0.1:8080")?,
            data_dir: PathBuf::from(s.get("CHAT_DATA_DIR")),
            jwt_secret,
            jwt_issuer: non_empty(s, "CHAT_JWT_ISSUER")?,
            jwt_audience: non_empty(s, "CHAT_JWT_AUDIENCE")?,
            access_token_ttl: Duration::from_secs(
                s.positive("CHAT_ACCESS_TOKEN_TTL_SECS", "a positive number of seconds")?,
            ),
            refresh_token_ttl: Duration::from_secs(
                86_400 * s.positive::<u64>("CHAT_REFRESH_TOKEN_TTL_DAYS", "a positive number of days")?,
            ),
            log_format,
            log_filter: s.get("CHAT_LOG").to_owned(),
            room_member_limit: s.positive("CHAT_ROOM_MEMBER_LIMIT", "a positive whole number")?,
            allowed_origins: s.list("CHAT_ALLOWED_ORIGINS"),
            trusted_proxies: s.parse(
                "CHAT_TRUSTED_PROXIES",
                "comma-separated IP addresses or CIDR blocks of reverse proxies, e.g. 10.0.0.0/8,::1",
            )?,
            web_socket_urls: s.list("CHAT_WEB_SOCKET_URLS"),
            web_files_url: s.get("CHAT_WEB_FILES_URL").trim().trim_end_matches('/').to_owned(),
            max_connections_per_user: s.positive("CHAT_MAX_CONNECTIONS_PER_USER", "a positive whole number")?,
            ws_rate_per_sec: s.positive("CHAT_WS_RATE_PER_SEC", "a positive number of frames per second")?,
            ws_burst: s.positive("CHAT_WS_BURST", "a positive number of frames")?,
            ws_write_timeout: Duration::from_millis(
                s.positive("CHAT_WS_WRITE_TIMEOUT_MS", "a positive number of milliseconds")?,
            ),
            ws_outbound_queue_bytes: s.positive("CHAT_WS_OUTBOUND_QUEUE_BYTES", "a positive number of bytes")?,
            ws_reconcile_every: Duration::from_secs(
                s.positive("CHAT_WS_RECONCILE_SECS", "a positive number of seconds")?,
            ),
            password_hash_threads: s
                .parse("CHAT_PASSWORD_HASH_THREADS", "a whole number (0 = one per core, at most 2)")?,
            password_hash_queue: s.positive("CHAT_PASSWORD_HASH_QUEUE", "a positive whole number")?,
            login_failures_per_name: s.positive("CHAT_LOGIN_FAILURES_PER_NAME", "a positive whole number")?,
            login_failures_per_address: s.positive("CHAT_LOGIN_FAILURES_PER_ADDRESS", "a positive whole number")?,
            registrations_per_address: s.parse("CHAT_REGISTRATIONS_PER_ADDRESS", "a whole number (0 = no limit)")?,
            image_max_bytes: s.positive("CHAT_IMAGE_MAX_BYTES", "a positive number of bytes")?,
            file_max_bytes: s.positive("CHAT_FILE_MAX_BYTES", "a positive number of bytes")?,
            user_quota_bytes: s.positive("CHAT_USER_QUOTA_BYTES", "a positive number of bytes")?,
            quota_hold: Duration::from_secs(s.positive("CHAT_QUOTA_HOLD_SECS", "a positive number of seconds")?),
            unattached_file: Duration::from_secs(
                s.positive("CHAT_UNATTACHED_FILE_SECS", "a positive number of seconds")?,
            ),
            message_edit_window: Duration::from_secs(
                s.positive("CHAT_MESSAGE_EDIT_WINDOW_SECS", "a positive number of seconds")?,
            ),
            retention_messages_days: s.positive("CHAT_RETENTION_MESSAGES_DAYS", "a positive number of days")?,
            retention_images_days: s.positive("CHAT_RETENTION_IMAGES_DAYS", "a positive number of days")?,
            retention_files_days: s.positive("CHAT_RETENTION_FILES_DAYS", "a positive number of days")?,
            archive_batch: s.positive("CHAT_ARCHIVE_BATCH", "a positive whole number")?,
            archive_interval: Duration::from_millis(
                s.positive("CHAT_ARCHIVE_INTERVAL_MS", "a positive number of milliseconds")?,
            ),
            purge_cron: s.get("CHAT_PURGE_CRON").to_owned(),
            purge_batch: s.positive("CHAT_PURGE_BATCH", "a positive whole number")?,
            hot_cache_per_room: s.positive("CHAT_HOT_CACHE_PER_ROOM", "a positive whole number")?,
            sqlite_sync,
            redis_url: secret(s, "CHAT_REDIS_URL"),
            redis_prefix: s.get("CHAT_REDIS_PREFIX").to_owned(),
            redis_mode,
            redis_min_replicas: s.parse("CHAT_REDIS_MIN_REPLICAS", "a whole number of replicas")?,
            mongodb_url: secret(s, "CHAT_MONGODB_URL"),
            file_url: Some(s.get("CHAT_FILE_URL").trim_end_matches('/').to_owned()).filter(|u| !u.is_empty()),
            internal_token: shared_token(s, "CHAT_INTERNAL_TOKEN")?,
            metrics_token: shared_token(s, "CHAT_METRICS_TOKEN")?,
            worker_name: match s.get("CHAT_WORKER_NAME") {
                "" => std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "worker".to_owned()),
                name => name.to_owned(),
            },
            unknown_variables: Vec::new(),
        })
    }
}

/// Variables of the test suite, which share the prefix; not warned about.
fn is_reserved_for_later(var: &str) -> bool {
    var.starts_with("CHAT_TEST_")
}

fn secret(s: &Source, var: &str) -> Option<SecretString> {
    Some(s.get(var)).filter(|v| !v.is_empty()).map(|v| SecretString::from(v.to_owned()))
}

/// A shared secret of at least 16 characters, or `None` when unset; never echoed in an error.
fn shared_token(s: &Source, var: &str) -> Result<Option<SecretString>, ConfigError> {
    match s.get(var) {
        "" => Ok(None),
        t if t.len() < 16 => {
            Err(ConfigError { var: var.into(), expected: "at least 16 characters".into(), got: "<redacted>".into() })
        }
        t => Ok(Some(SecretString::from(t.to_owned()))),
    }
}

fn non_empty(s: &Source, var: &str) -> Result<String, ConfigError> {
    match s.get(var) {
        "" => Err(ConfigError { var: var.into(), expected: "a non-empty string".into(), got: String::new() }),
        v => Ok(v.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn no_configuration_at_all_gives_the_embedded_defaults() {
        let config = Config::from_vars(vars(&[])).unwrap();
        assert_eq!(config.addr.to_string(), "127.0.0.1:8080");
        assert_eq!(config.data_dir, PathBuf::from("./data"));
        assert!(config.jwt_secret.is_none());
        assert_eq!(config.room_member_limit, 100);
        assert_eq!(config.access_token_ttl, Duration::from_secs(900));
        assert_eq!(config.message_edit_window, Duration::from_secs(24 * 60 * 60));
        let short = Config::from_vars(vars(&[("CHAT_MESSAGE_EDIT_WINDOW_SECS", "60")])).unwrap();
        assert_eq!(short.message_edit_window, Duration::from_secs(60));
    }

    #[test]
    fn a_wrong_value_names_the_variable_and_what_it_expects() {
        let err = Config::from_vars(vars(&[("CHAT_ADDR", "not-an-address")])).unwrap_err().to_string();
        assert!(err.contains("CHAT_ADDR") && err.contains("expected an address"), "{err}");
        let err = Config::from_vars(vars(&[("CHAT_ROOM_MEMBER_LIMIT", "0")])).unwrap_err().to_string();
        assert!(err.contains("CHAT_ROOM_MEMBER_LIMIT"), "{err}");
        let err = Config::from_vars(vars(&[("CHAT_TRUSTED_PROXIES", "10.0.0.0/8,the-proxy")])).unwrap_err().to_string();
        assert!(err.contains("CHAT_TRUSTED_PROXIES") && err.contains("CIDR"), "{err}");
        let err = Config::from_vars(vars(&[("CHAT_PURGE_CRON", "hourly")])).unwrap_err().to_string();
        assert!(err.contains("CHAT_PURGE_CRON"), "{err}");
        let err = Config::from_vars(vars(&[("CHAT_SQLITE_SYNC", "sometimes")])).unwrap_err().to_string();
        assert!(err.contains("CHAT_SQLITE_SYNC") && err.contains("normal or full"), "{err}");
    }

    #[test]
    fn sqlite_sync_full_asks_for_power_loss_durability() {
        let config = Config::from_vars(vars(&[("CHAT_SQLITE_SYNC", "full")])).unwrap();
        assert_eq!(config.sqlite_sync, adapter_sqlite::Durability::PowerLoss);
        assert_eq!(Config::from_vars(vars(&[])).unwrap().sqlite_sync, adapter_sqlite::Durability::Process);
    }

    #[test]
    fn a_short_jwt_secret_is_refused_without_being_echoed() {
        let err = Config::from_vars(vars(&[("CHAT_JWT_SECRET", "tooshortsecret")])).unwrap_err().to_string();
        assert!(err.contains("CHAT_JWT_SECRET") && err.contains("at least 32 bytes"), "{err}");
        assert!(!err.contains("tooshortsecret"));
    }

    #[test]
    fn the_environment_overrides_the_toml_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("chat.toml");
        std::fs::write(&file, "addr = \"127.0.0.1:9000\"\nroom_member_limit = 7\nallowed_origins = [\"https://a.example\", \"https://b.example\"]\n").unwrap();
        let config =
            Config::from_vars(vars(&[("CHAT_CONFIG_FILE", file.to_str().unwrap()), ("CHAT_ROOM_MEMBER_LIMIT", "9")]))
                .unwrap();
        assert_eq!(config.addr.port(), 9000);
        assert_eq!(config.room_member_limit, 9);
        assert_eq!(config.allowed_origins, vec!["https://a.example", "https://b.example"]);
    }

    #[test]
    fn an_unknown_key_in_the_toml_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("chat.toml");
        std::fs::write(&file, "adress = \"x\"\n").unwrap();
        let err = Config::from_vars(vars(&[("CHAT_CONFIG_FILE", file.to_str().unwrap())])).unwrap_err().to_string();
        assert!(err.contains("adress"), "{err}");
    }

    #[test]
    fn every_variable_is_documented_in_the_env_example() {
        let example = include_str!("../../.env.example");
        for (var, _) in VARIABLES {
            assert!(example.contains(&format!("{var}=")), "{var} is missing from .env.example");
        }
    }
}
