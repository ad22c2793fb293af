//! Test helpers: a store on a database of its own per test, dropped afterwards even after a panic.

use std::panic::AssertUnwindSafe;

use adapter_mongo::MongoStore;
use futures::FutureExt;

pub fn mongo_url() -> String {
    std::env::var("CHAT_TEST_MONGODB_URL").unwrap_or_else(|_| "mongodb://127.0.0.1:27018".to_owned())
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

/// Shows the adapter's logs when `TEST_LOG` is set.
pub fn init_logs() {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("debug").try_init();
    }
}

/// A store on a new database with a random name.
pub struct TestDb {
    pub store: MongoStore,
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn new() -> Self {
        init_logs();
        let name = format!("test_{}", uuid::Uuid::new_v4().simple());
        let url = url_with_database(&mongo_url(), &name);
        let store = MongoStore::connect(&url).await.expect("MongoDB is reachable");
        Self { store, name, url }
    }

    /// A plain driver handle on the same database, to inspect or tamper with it behind the store's back.
    pub async fn raw(&self) -> mongodb::Database {
        let client = mongodb::Client::with_uri_str(mongo_url()).await.expect("valid URL");
        client.database(&self.name)
    }

    /// Drops the database, then re-raises the test's panic if it had one.
    pub async fn finish(self, outcome: std::thread::Result<()>) {
        let dropped = self.raw().await.drop().await;
        match outcome {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => dropped.expect("dropping the test database"),
        }
    }
}

impl std::ops::Deref for TestDb {
    type Target = MongoStore;

    fn deref(&self) -> &MongoStore {
        &self.store
    }
}

/// Runs `test` and hands its outcome to [`TestDb::finish`]: a panic is caught so the database is
/// dropped either way.
pub async fn outcome_of(test: impl std::future::Future<Output = ()>) -> std::thread::Result<()> {
    AssertUnwindSafe(test).catch_unwind().await
}

#[test]
fn url_with_database_replaces_the_path_and_keeps_the_options() {
    assert_eq!(url_with_database("mongodb://h:1", "db"), "mongodb://h:1/db");
    assert_eq!(url_with_database("mongodb://h:1/", "db"), "mongodb://h:1/db");
    assert_eq!(
        url_with_database("mongodb://u:p@h:1,k:2/old?replicaSet=rs0", "db"),
        "mongodb://u:p@h:1,k:2/db?replicaSet=rs0"
    );
    assert_eq!(url_with_database("mongodb://h:1?w=1", "db"), "mongodb://h:1/db?w=1");
}
