//! Settings of the Redis message log, with the defaults the issue asks for.

use std::time::Duration;

/// How to reach Redis and how the message log behaves there.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]`; never logged, since it may hold a password.
    pub url: String,
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

    /// The defaults, for the Redis at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
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
