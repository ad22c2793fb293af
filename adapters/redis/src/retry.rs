//! One more attempt for requests that failed because the connection dropped (e.g. a Redis restart).

use std::future::Future;

/// True when the failure came from the connection, not from Redis refusing the command; the
/// connection manager reconnects in the background, so one more attempt usually succeeds.
pub(crate) fn is_transient(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause.downcast_ref::<redis::RedisError>().is_some_and(|r| {
            r.is_connection_dropped() || r.is_io_error() || r.is_connection_refusal() || r.is_timeout()
        })
    })
}

/// Runs `op`, and once more when the first attempt hit a dropped connection. Only for operations
/// that are safe to repeat.
pub(crate) async fn once_more<T, F, Fut>(what: &'static str, mut op: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    match op().await {
        Err(e) if is_transient(&e) => {
            tracing::warn!(operation = what, error = %format!("{e:#}"), "Redis connection dropped; retrying once");
            op().await
        }
        other => other,
    }
}
