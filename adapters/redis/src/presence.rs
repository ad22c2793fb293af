//! Presence on Redis: each user's hash maps the nodes holding their sockets to when that word
//! lapses, so a crashed node stops counting within `PresenceTtl` without anyone cleaning up.

use std::time::Duration;

use application::ports::PresenceRegistry;
use async_trait::async_trait;
use domain::UserId;
use futures::{StreamExt, TryStreamExt};
use redis::AsyncCommands;

use crate::config::RedisMode;
use crate::connection::RedisConn;
use crate::scripts::Scripts;

/// How long a node's word that a user is online lasts unless renewed; nodes renew every third of it.
pub const PRESENCE_TTL: Duration = Duration::from_secs(60);

/// Users' keys read or written at once.
const CONCURRENCY: usize = 256;

/// One node's view of presence in a Redis shared by every node.
#[derive(Clone)]
pub struct RedisPresence {
    conn: RedisConn,
    scripts: Scripts,
    prefix: String,
    /// This process, as a field in each online user's hash.
    node: String,
}

impl RedisPresence {
    /// # Errors
    /// When the URL is invalid or Redis cannot be reached.
    pub async fn connect(url: &str, mode: RedisMode, prefix: &str) -> anyhow::Result<Self> {
        let conn = RedisConn::open(url, mode).await?;
        Ok(Self { conn, scripts: Scripts::new(), prefix: prefix.to_owned(), node: uuid::Uuid::now_v7().to_string() })
    }

    fn key(&self, user: UserId) -> String {
        format!("{}online:{user}", self.prefix)
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn ttl_ms() -> i64 {
    i64::try_from(PRESENCE_TTL.as_millis()).unwrap_or(i64::MAX)
}

#[async_trait]
impl PresenceRegistry for RedisPresence {
    async fn came_online(&self, user: UserId) -> anyhow::Result<bool> {
        let now = now_ms();
        let first: i64 = self
            .scripts
            .came_online
            .key(self.key(user))
            .arg(&self.node)
            .arg(now + ttl_ms())
            .arg(now)
            .arg(2 * ttl_ms())
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(first == 1)
    }

    async fn went_offline(&self, user: UserId) -> anyhow::Result<bool> {
        let last: i64 = self
            .scripts
            .went_offline
            .key(self.key(user))
            .arg(&self.node)
            .arg(now_ms())
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(last == 1)
    }

    async fn still_online(&self, users: &[UserId]) -> anyhow::Result<()> {
        let expires = now_ms() + ttl_ms();
        // One user's key per command: on a cluster they live on different nodes. The connection
        // pipelines concurrent commands by itself.
        futures::stream::iter(users.iter().map(|user| self.key(*user)).collect::<Vec<_>>())
            .map(|key| {
                let (mut conn, node) = (self.conn.clone(), self.node.clone());
                async move {
                    let _: () = conn.hset(&key, node, expires).await?;
                    let _: bool = conn.pexpire(&key, 2 * ttl_ms()).await?;
                    Ok::<_, anyhow::Error>(())
                }
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect()
            .await
    }

    async fn online_among(&self, users: &[UserId]) -> anyhow::Result<Vec<UserId>> {
        let now = now_ms();
        let marks: Vec<Vec<i64>> = futures::stream::iter(users.iter().map(|user| self.key(*user)).collect::<Vec<_>>())
            .map(|key| {
                let mut conn = self.conn.clone();
                async move { Ok::<_, anyhow::Error>(conn.hvals(key).await?) }
            })
            .buffered(CONCURRENCY)
            .try_collect()
            .await?;
        Ok(users
            .iter()
            .zip(marks)
            .filter(|(_, marks)| marks.iter().any(|&expires| expires > now))
            .map(|(user, _)| *user)
            .collect())
    }
}
