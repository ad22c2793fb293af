//! Settings of the Redis message log, with the defaults the issue asks for.

use std::time::Duration;

/// One Redis, or a Redis Cluster reached through seed nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RedisMode {
    #[default]
    Standalone,
    Cluster,
}

/// How to reach Redis and how the message log behaves there.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]`; in cluster mode one or more seed nodes,
    /// comma-separated. Never logged, since it may hold a password.
    pub url: String,
    pub mode: RedisMode,
    /// How many replicas must hold a message (Redis `WAIT`) before its append succeeds, and hold
    /// what an archiver claimed before it is archived: with 1, a failover to that replica loses no
    /// acknowledged message. 0 (the default) does not wait.
    pub min_replicas: u32,
    /// How long an append waits for `min_replicas`; past it the append fails (the client retries
    /// it with its `client_msg_id`).
    pub replica_timeout: Duration,
    /// Put before every key, so several deployments or tests can share one Redis.
    pub key_prefix: String,
    /// How many of a room's newest messages stay in the hot cache once archived.
    pub cache_per_room: usize,
    /// How long an entry may sit unacknowledged with one consumer before another may take it over.
    pub reclaim_idle: Duration,
    /// How many times an entry is handed out before it is moved to the dead-letter stream.
    pub max_deliveries: u32,
    /// How long a client message id is remembered for deduplication.
    pub dedupe_ttl: Duration,
}

impl RedisConfig {
    pub const DEFAULT_KEY_PREFIX: &'static str = "chat:";
    pub const DEFAULT_CACHE_PER_ROOM: usize = 1000;
    pub const DEFAULT_RECLAIM_IDLE: Duration = Duration::from_secs(30);
    pub const DEFAULT_MAX_DELIVERIES: u32 = 5;
    pub const DEFAULT_DEDUPE_TTL: Duration = Duration::from_secs(24 * 60 * 60);
    pub const DEFAULT_REPLICA_TIMEOUT: Duration = Duration::from_secs(2);

    /// The defaults, for the Redis at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            mode: RedisMode::Standalone,
            min_replicas: 0,
            replica_timeout: Self::DEFAULT_REPLICA_TIMEOUT,
            key_prefix: Self::DEFAULT_KEY_PREFIX.to_owned(),
            cache_per_room: Self::DEFAULT_CACHE_PER_ROOM,
            reclaim_idle: Self::DEFAULT_RECLAIM_IDLE,
            max_deliveries: Self::DEFAULT_MAX_DELIVERIES,
            dedupe_ttl: Self::DEFAULT_DEDUPE_TTL,
        }
    }
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self::new("redis://127.0.0.1:6379")
    }
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &"<redacted>")
            .field("mode", &self.mode)
            .field("min_replicas", &self.min_replicas)
            .field("replica_timeout", &self.replica_timeout)
            .field("key_prefix", &self.key_prefix)
            .field("cache_per_room", &self.cache_per_room)
            .field("reclaim_idle", &self.reclaim_idle)
            .field("max_deliveries", &self.max_deliveries)
            .field("dedupe_ttl", &self.dedupe_ttl)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_the_url() {
        let config = RedisConfig::new("redis://user:hunter2@example:6379");
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn defaults_match_the_documented_values() {
        let config = RedisConfig::default();
        assert_eq!(config.key_prefix, "chat:");
        assert_eq!(config.cache_per_room, 1000);
        assert_eq!(config.reclaim_idle, Duration::from_secs(30));
        assert_eq!(config.max_deliveries, 5);
        assert_eq!(config.dedupe_ttl, Duration::from_secs(86_400));
    }
}
