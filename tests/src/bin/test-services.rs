//! Starts the suite's Redis and MongoDB (a replica set) with testcontainers, prints their URLs, and
//! removes them when its input closes or it is told to stop.

use std::io::Write;

use testcontainers::runners::AsyncRunner;
use testcontainers::ImageExt;
use testcontainers_modules::mongo::Mongo;
use testcontainers_modules::redis::Redis;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let redis = Redis::default().with_tag("7.0.15").start().await?;
    let mongo = Mongo::repl_set().with_tag("7.0.14").start().await?;
    let redis_port = redis.get_host_port_ipv4(6379).await?;
    let mongo_port = mongo.get_host_port_ipv4(27017).await?;
    let mut out = std::io::stdout();
    writeln!(out, "CHAT_TEST_REDIS_URL=redis://127.0.0.1:{redis_port}")?;
    // directConnection: the replica set advertises the container's own host name.
    writeln!(out, "CHAT_TEST_MONGODB_URL=mongodb://127.0.0.1:{mongo_port}/?directConnection=true")?;
    writeln!(out, "READY")?;
    out.flush()?;

    // Stop on SIGTERM/SIGINT, or when the script closes our input; dropping the containers removes them.
    let stdin_closed = tokio::task::spawn_blocking(|| {
        let mut sink = String::new();
        while std::io::stdin().read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
            sink.clear();
        }
    });
    tokio::select! {
        _ = bootstrap::shutdown_signal() => {}
        _ = stdin_closed => {}
    }
    drop(mongo);
    drop(redis);
    Ok(())
}
