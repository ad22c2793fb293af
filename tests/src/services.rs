//! The shared Redis and MongoDB that split-shape and worker tests use: where they are, and removing
//! what a test left in them.

use std::time::Duration;

/// How long cleanup may take before it gives up, so a dead server cannot hang the test run.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(5);

/// `CHAT_TEST_REDIS_URL`, else a local Redis on its usual port.
pub fn redis_url() -> String {
    std::env::var("CHAT_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// `CHAT_TEST_REDIS_CLUSTER_URL`: the seed nodes of the test Redis Cluster (all its masters),
/// comma-separated; scripts/test.sh starts one.
pub fn redis_cluster_url() -> String {
    std::env::var("CHAT_TEST_REDIS_CLUSTER_URL")
        .expect("CHAT_TEST_REDIS_CLUSTER_URL names a Redis Cluster's seed nodes; scripts/test.sh starts one")
}

/// `CHAT_TEST_MONGODB_CLUSTER_URL`, the MongoDB of the split shape on a Redis Cluster, else the
/// one of the others: scripts/test.sh gives that shape a server of its own, so the two split
/// shapes' tests do not queue behind one single-threaded SecantusDB.
pub fn mongo_url_for_cluster_shape() -> String {
    std::env::var("CHAT_TEST_MONGODB_CLUSTER_URL").unwrap_or_else(|_| mongo_url())
}

/// `CHAT_TEST_MONGODB_URL`, else a local MongoDB on its usual port, as docs/testing.md says.
pub fn mongo_url() -> String {
    std::env::var("CHAT_TEST_MONGODB_URL").unwrap_or_else(|_| "mongodb://127.0.0.1:27017".to_owned())
}

/// `base` with its path replaced by `database`, keeping any options after `?`.
pub fn url_with_database(base: &str, database: &str) -> String {
    let (address, query) = base.split_once('?').map_or((base, None), |(a, q)| (a, Some(q)));
    let scheme_end = address.find("://").map_or(0, |i| i + 3);
    let hosts_end = address[scheme_end..].find('/').map_or(address.len(), |i| scheme_end + i);
    let mut url = format!("{}/{database}", &address[..hosts_end]);
    if let Some(query) = query {
        url.push('?');
        url.push_str(query);
    }
    url
}

/// Removes a test's Redis keys and MongoDB database when dropped, on a thread of its own with its
/// own runtime: `Drop` cannot await, and it also runs while a failed test unwinds.
pub struct Cleanup {
    pub prefix: String,
    pub database: String,
    /// The MongoDB server the database is on.
    pub mongo: String,
    /// The Redis servers the keys may be on: one, or each master of a cluster.
    pub redis: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let (prefix, database, redis) = (self.prefix.clone(), self.database.clone(), self.redis.clone());
        let mongo = self.mongo.clone();
        let cleaner = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            runtime.block_on(async {
                for url in &redis {
                    if let Err(e) = within_cleanup(delete_keys(url, &prefix)).await {
                        eprintln!("could not delete the Redis keys {prefix}*: {e:#}");
                    }
                }
                if let Err(e) = within_cleanup(drop_database(&mongo, &database)).await {
                    eprintln!("could not drop the MongoDB database {database}: {e:#}");
                }
            });
        });
        let _ = cleaner.join();
    }
}

async fn within_cleanup(work: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::time::timeout(CLEANUP_TIMEOUT, work).await.map_err(|_| anyhow::anyhow!("timed out"))?
}

/// SCAN, never KEYS, on the one server at `url`.
async fn delete_keys(url: &str, prefix: &str) -> anyhow::Result<()> {
    let mut conn = redis::Client::open(url)?.get_multiplexed_async_connection().await?;
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await?;
        // One key per DEL: a cluster node refuses keys of several slots in one command.
        for key in keys {
            let _: i64 = redis::cmd("DEL").arg(key).query_async(&mut conn).await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

async fn drop_database(url: &str, name: &str) -> anyhow::Result<()> {
    mongodb::Client::with_uri_str(url).await?.database(name).drop().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_with_database_replaces_the_path_and_keeps_the_options() {
        assert_eq!(url_with_database("mongodb://h:1", "db"), "mongodb://h:1/db");
        assert_eq!(url_with_database("mongodb://h:1/", "db"), "mongodb://h:1/db");
        assert_eq!(url_with_database("mongodb://h:1/old", "db"), "mongodb://h:1/db");
        assert_eq!(
            url_with_database("mongodb://u:p@h:1,k:2/old?replicaSet=rs0", "db"),
            "mongodb://u:p@h:1,k:2/db?replicaSet=rs0"
        );
    }
}
