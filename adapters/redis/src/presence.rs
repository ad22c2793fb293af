//! Presence on Redis: each user's hash maps the nodes holding their sockets to when that word
//! lapses, so a crashed node stops counting within `PresenceTtl` without anyone cleaning up.

use std::time::Duration;

use application::ports::PresenceRegistry;
use async_trait::async_trait;
use domain::UserId;
use redis::aio::ConnectionManager;

use crate::connection;
use crate::scripts::Scripts;

/// How long a node's word that a user is online lasts unless renewed; nodes renew every third of it.
pub const PRESENCE_TTL: Duration = Duration::from_secs(60);

/// One node's view of presence in a Redis shared by every node.
#[derive(Clone)]
pub struct RedisPresence {
    conn: ConnectionManager,
    scripts: Scripts,
    prefix: String,
    /// This process, as a field in each online user's hash.
    node: String,
}

impl RedisPresence {
    /// # Errors
    /// When the URL is invalid or Redis cannot be reached.
    pub async fn connect(url: &str, prefix: &str) -> anyhow::Result<Self> {
        let client = connection::client(url)?;
        let conn = connection::manager(&client).await?;
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
        let now = now_ms();
        for chunk in users.chunks(500) {
            let mut pipe = redis::pipe();
            for user in chunk {
                let key = self.key(*user);
                pipe.hset(&key, &self.node, now + ttl_ms()).ignore().pexpire(&key, 2 * ttl_ms()).ignore();
            }
            pipe.query_async::<()>(&mut self.conn.clone()).await?;
        }
        Ok(())
    }

    async fn online_among(&self, users: &[UserId]) -> anyhow::Result<Vec<UserId>> {
        let now = now_ms();
        let mut online = Vec::new();
        for chunk in users.chunks(500) {
            let mut pipe = redis::pipe();
            for user in chunk {
                pipe.hvals(self.key(*user));
            }
            let marks: Vec<Vec<i64>> = pipe.query_async(&mut self.conn.clone()).await?;
            online.extend(
                chunk
                    .iter()
                    .zip(marks)
                    .filter(|(_, marks)| marks.iter().any(|&expires| expires > now))
                    .map(|(user, _)| *user),
            );
        }
        Ok(online)
    }
}
