//! The shared MongoDB client: connecting, picking the database, indexes, transactions and health.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use application::metrics::Metrics;
use application::ports::HealthCheck;
use async_trait::async_trait;
use bson::doc;
use futures::future::BoxFuture;
use mongodb::event::command::CommandEvent;
use mongodb::event::EventHandler;
use mongodb::options::{ClientOptions, WriteConcern};
use mongodb::{Client, ClientSession, Database};

use crate::schema;

/// The database used when the URL names none.
pub(crate) const DEFAULT_DATABASE: &str = "chat";

/// How long a health check waits for `ping` before reporting MongoDB unavailable.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// One MongoDB database implementing every storage port. Cloning is cheap and shares the client's
/// connection pool.
#[derive(Clone)]
pub struct MongoStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    db: Database,
    /// Whether the deployment runs multi-document transactions (a replica set or sharded cluster).
    /// A standalone server does not; there, a room and its memberships are written one after the
    /// other, and a reader or a crash in between can see the room with some memberships missing.
    transactions: bool,
    /// Whether the server took the messages' text index: search runs only then, never as a scan.
    text_search: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for MongoStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoStore")
            .field("database", &self.inner.db.name())
            .field("transactions", &self.inner.transactions)
            .finish_non_exhaustive()
    }
}

/// The database a connection string names in its path, or [`DEFAULT_DATABASE`].
pub(crate) fn database_name(options: &ClientOptions) -> &str {
    options.default_database.as_deref().filter(|name| !name.is_empty()).unwrap_or(DEFAULT_DATABASE)
}

impl MongoStore {
    /// Connects to the deployment at `url` and uses the database named in its path (default
    /// `chat`), with write concern `majority` for every write, whatever the URL says. Creates
    /// missing collections and indexes before returning.
    ///
    /// # Errors
    /// When the URL is invalid, no server answers in the driver's server selection timeout (30 s
    /// unless the URL sets `serverSelectionTimeoutMS`), or an index cannot be created.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        Self::connect_measured(url, None).await
    }

    /// As `connect`, and reports every command's latency to `metrics` as `store="mongodb"`,
    /// `op` the command's name (`find`, `insert`, `aggregate`…, a set the driver bounds).
    ///
    /// # Errors
    /// As `connect`.
    pub async fn connect_measured(url: &str, metrics: Option<Arc<Metrics>>) -> anyhow::Result<Self> {
        let mut options = ClientOptions::parse(url).await.context("invalid MongoDB URL")?;
        if let Some(metrics) = metrics {
            options.command_event_handler = Some(EventHandler::callback(move |event: CommandEvent| match event {
                CommandEvent::Succeeded(done) => metrics.store_call("mongodb", &done.command_name, done.duration),
                CommandEvent::Failed(failed) => metrics.store_call("mongodb", &failed.command_name, failed.duration),
                _ => {}
            }));
        }
        let name = database_name(&options).to_owned();
        // Log the hosts, never the URL: it may carry a password.
        let hosts: Vec<String> = options.hosts.iter().map(ToString::to_string).collect();
        let hosts = hosts.join(",");
        options.write_concern = Some(WriteConcern::majority());
        options.app_name.get_or_insert_with(|| "chat".to_owned());
        let client = Client::with_options(options).context("configuring the MongoDB client")?;
        let transactions =
            supports_transactions(&client).await.with_context(|| format!("cannot reach MongoDB at {hosts}"))?;
        if !transactions {
            tracing::warn!(
                %hosts,
                "MongoDB is a standalone server without transactions; room updates are not atomic"
            );
        }
        let store = Self {
            inner: Arc::new(Inner {
                db: client.database(&name),
                client,
                transactions,
                text_search: std::sync::atomic::AtomicBool::new(false),
            }),
        };
        store.ensure_indexes().await.with_context(|| format!("preparing MongoDB database {name} at {hosts}"))?;
        tracing::info!(%hosts, database = %name, transactions, "connected to MongoDB");
        Ok(store)
    }

    /// Creates every collection and index the store needs that does not exist yet; safe to call
    /// at any time and from several processes at once.
    ///
    /// # Errors
    /// When the server is unreachable, or an index of the same name exists with other keys or options.
    pub async fn ensure_indexes(&self) -> anyhow::Result<()> {
        schema::ensure_indexes(&self.inner.db).await?;
        let text = schema::ensure_text_index(&self.inner.db).await?;
        self.inner.text_search.store(text, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// Whether the server keeps a text index of messages, so search can run.
    pub fn supports_text_search(&self) -> bool {
        self.inner.text_search.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The name of the database in use.
    pub fn database_name(&self) -> &str {
        self.inner.db.name()
    }

    /// Whether writes spanning documents run in transactions on this deployment.
    pub fn uses_transactions(&self) -> bool {
        self.inner.transactions
    }

    pub(crate) fn db(&self) -> &Database {
        &self.inner.db
    }

    /// Runs `work` in a transaction with write concern `majority` where the deployment has them,
    /// retrying it on transient transaction errors; on a standalone server runs it once, without a
    /// session. `work` must return every driver error it meets, or a failed transaction could commit.
    pub(crate) async fn write_together<C, R, F>(&self, mut context: C, mut work: F) -> mongodb::error::Result<R>
    where
        C: Send,
        F: for<'b> FnMut(Option<&'b mut ClientSession>, &'b mut C) -> BoxFuture<'b, mongodb::error::Result<R>> + Send,
    {
        if !self.inner.transactions {
            return work(None, &mut context).await;
        }
        let mut session = self.inner.client.start_session().await?;
        session
            .start_transaction()
            .write_concern(WriteConcern::majority())
            .and_run(context, |session, context| work(Some(session), context))
            .await
    }
}

/// Runs a driver action inside `$session` when there is one, otherwise on its own.
macro_rules! in_session {
    ($session:expr, $action:expr) => {
        match $session.as_deref_mut() {
            Some(session) => $action.session(session).await,
            None => $action.await,
        }
    };
}
pub(crate) use in_session;

/// Replica set members and `mongos` routers run transactions; standalone servers do not.
async fn supports_transactions(client: &Client) -> anyhow::Result<bool> {
    let hello = client.database("admin").run_command(doc! { "hello": 1 }).await?;
    let replica_set = hello.get_str("setName").is_ok();
    let router = hello.get_str("msg") == Ok("isdbgrid");
    let sessions = hello.contains_key("logicalSessionTimeoutMinutes");
    Ok(sessions && (replica_set || router))
}

#[async_trait]
impl HealthCheck for MongoStore {
    fn name(&self) -> &'static str {
        "mongodb"
    }

    async fn check(&self) -> anyhow::Result<()> {
        // The driver turns a reply without `ok: 1` into an error.
        tokio::time::timeout(PING_TIMEOUT, self.inner.db.run_command(doc! { "ping": 1 }))
            .await
            .context("MongoDB did not answer ping in time")?
            .context("MongoDB ping failed")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use mongodb::options::ClientOptions;

    use super::database_name;

    async fn name_in(url: &str) -> String {
        database_name(&ClientOptions::parse(url).await.expect("valid URL")).to_owned()
    }

    #[tokio::test]
    async fn the_database_is_the_path_of_the_url_or_chat() {
        assert_eq!(name_in("mongodb://db.example:27017").await, "chat");
        assert_eq!(name_in("mongodb://db.example:27017/").await, "chat");
        assert_eq!(name_in("mongodb://db.example:27017/?replicaSet=rs0").await, "chat");
        assert_eq!(name_in("mongodb://u:p@a:1,b:2/history?replicaSet=rs0").await, "history");
    }
}
