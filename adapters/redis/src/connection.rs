//! Opening the reconnecting connection every adapter here shares, to one Redis or to a Redis
//! Cluster, with a start-up error that names the server.

use std::time::Duration;

use anyhow::Context;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

use crate::config::RedisMode;

/// A command that gets no answer in this time fails instead of hanging a request.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Reconnect attempts after a failure wait about 1 s, then twice as long each time, up to this.
/// (redis-rs's own default would grow the wait a hundredfold per attempt.)
const MAX_RETRY_DELAY_MS: u64 = 2_000;
/// Attempts per reconnect; a start-up against an unreachable server fails after about 3 s.
const RETRIES: usize = 2;
/// A cluster command is retried (after a redirect, or while a failover promotes a replica) this
/// many times, waiting up to `CLUSTER_MAX_RETRY_WAIT_MS` between tries: long enough to ride out
/// a failover of a few seconds.
const CLUSTER_RETRIES: u32 = 12;
const CLUSTER_MIN_RETRY_WAIT_MS: u64 = 100;
const CLUSTER_MAX_RETRY_WAIT_MS: u64 = 1_000;

/// Where `client` connects, without credentials, for logs and errors.
pub(crate) fn address(client: &redis::Client) -> String {
    client.get_connection_info().addr.to_string()
}

pub(crate) fn client(url: &str) -> anyhow::Result<redis::Client> {
    // The URL may carry a password, so the error never repeats it.
    redis::Client::open(url).context("invalid Redis URL")
}

/// The seed URLs of a cluster: `CHAT_REDIS_URL` may list several, comma-separated.
pub(crate) fn seeds(url: &str) -> Vec<String> {
    url.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

/// A connection manager: one multiplexed connection that reconnects by itself after a failure.
///
/// # Errors
/// When Redis cannot be reached now (after the manager's own retries).
pub(crate) async fn manager(client: &redis::Client) -> anyhow::Result<ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(CONNECT_TIMEOUT)
        .set_response_timeout(RESPONSE_TIMEOUT)
        .set_factor(2)
        .set_max_delay(MAX_RETRY_DELAY_MS)
        .set_number_of_retries(RETRIES);
    ConnectionManager::new_with_config(client.clone(), config)
        .await
        .with_context(|| format!("cannot connect to Redis at {}", address(client)))
}

/// A cluster connection: follows the slot map, redirects and failovers by itself.
///
/// # Errors
/// When no seed is valid or none answers.
pub(crate) async fn cluster(url: &str) -> anyhow::Result<ClusterConnection> {
    let seeds = seeds(url);
    anyhow::ensure!(!seeds.is_empty(), "no Redis Cluster seed node given");
    let shown = seeds
        .iter()
        .filter_map(|s| redis::Client::open(s.as_str()).ok().map(|c| address(&c)))
        .collect::<Vec<_>>()
        .join(", ");
    let client = ClusterClientBuilder::new(seeds)
        .connection_timeout(CONNECT_TIMEOUT)
        .response_timeout(RESPONSE_TIMEOUT)
        .retries(CLUSTER_RETRIES)
        .min_retry_wait(CLUSTER_MIN_RETRY_WAIT_MS)
        .max_retry_wait(CLUSTER_MAX_RETRY_WAIT_MS)
        .build()
        .context("invalid Redis Cluster URL")?;
    client.get_async_connection().await.with_context(|| format!("cannot connect to the Redis Cluster at {shown}"))
}

/// One Redis or a Redis Cluster, behind the one interface commands and scripts are sent through.
/// Clones share the underlying multiplexed connections.
#[derive(Clone)]
pub(crate) enum RedisConn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl RedisConn {
    /// Connects in `mode`; a cluster's `url` lists its seed nodes, comma-separated.
    ///
    /// # Errors
    /// When the URL is invalid or Redis cannot be reached.
    pub async fn open(url: &str, mode: RedisMode) -> anyhow::Result<Self> {
        Ok(match mode {
            RedisMode::Standalone => Self::Single(manager(&client(url)?).await?),
            RedisMode::Cluster => Self::Cluster(cluster(url).await?),
        })
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(conn) => conn.req_packed_command(cmd),
            Self::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(conn) => conn.req_packed_commands(cmd, offset, count),
            Self::Cluster(conn) => conn.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(conn) => conn.get_db(),
            Self::Cluster(conn) => conn.get_db(),
        }
    }
}
