//! Opening the reconnecting connection every adapter here shares, with a start-up error that names the server.

use std::time::Duration;

use anyhow::Context;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// A command that gets no answer in this time fails instead of hanging a request.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Reconnect attempts after a failure wait about 1 s, then twice as long each time, up to this.
/// (redis-rs's own default would grow the wait a hundredfold per attempt.)
const MAX_RETRY_DELAY_MS: u64 = 2_000;
/// Attempts per reconnect; a start-up against an unreachable server fails after about 3 s.
const RETRIES: usize = 2;

/// Where `client` connects, without credentials, for logs and errors.
pub(crate) fn address(client: &redis::Client) -> String {
    client.get_connection_info().addr.to_string()
}

pub(crate) fn client(url: &str) -> anyhow::Result<redis::Client> {
    // The URL may carry a password, so the error never repeats it.
    redis::Client::open(url).context("invalid Redis URL")
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
