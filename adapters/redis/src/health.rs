//! Readiness of Redis: answers PING in time (on a cluster, some node does).

use std::time::Duration;

use crate::config::RedisMode;
use crate::connection::RedisConn;
use anyhow::Context;
use application::ports::HealthCheck;
use async_trait::async_trait;

const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// Reports whether Redis answers, for the readiness endpoint.
#[derive(Clone)]
pub struct RedisHealth {
    conn: RedisConn,
}

impl RedisHealth {
    /// A check with its own connection; adapters also hand out one on theirs (`health()`).
    ///
    /// # Errors
    /// When the URL is invalid or Redis cannot be reached.
    pub async fn connect(url: &str, mode: RedisMode) -> anyhow::Result<Self> {
        Ok(Self::new(RedisConn::open(url, mode).await?))
    }

    pub(crate) fn new(conn: RedisConn) -> Self {
        Self { conn }
    }
}

#[async_trait]
impl HealthCheck for RedisHealth {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn check(&self) -> anyhow::Result<()> {
        let mut conn = self.conn.clone();
        let pong: String = tokio::time::timeout(PING_TIMEOUT, redis::cmd("PING").query_async(&mut conn))
            .await
            .context("Redis did not answer PING in time")?
            .context("Redis PING failed")?;
        anyhow::ensure!(pong == "PONG", "unexpected PING reply {pong:?}");
        Ok(())
    }
}
