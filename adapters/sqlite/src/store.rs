//! The shared SQLite connection: opening, pragmas, and running blocking work off the async runtime.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use application::ports::HealthCheck;
use async_trait::async_trait;
use parking_lot::Mutex;
use rusqlite::Connection;

use crate::schema;

/// Prepared statements kept per connection; more than every statement this adapter runs.
const STATEMENT_CACHE: usize = 128;

/// How long a statement waits for another process's write lock before failing with `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How far a commit must reach before SQLite reports it done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous=NORMAL` in WAL mode: a commit survives the process being killed at any moment,
    /// not a power loss or OS crash, and costs no fsync.
    #[default]
    Process,
    /// `synchronous=FULL`: every commit is fsynced to the WAL, so it also survives a power loss.
    PowerLoss,
}

impl Durability {
    fn pragma(self) -> &'static str {
        match self {
            Self::Process => "NORMAL",
            Self::PowerLoss => "FULL",
        }
    }
}

/// One SQLite database implementing every storage port. Cloning is cheap and shares the connection.
#[derive(Clone)]
pub struct SqliteStore {
    /// A single connection serialises all access. SQLite admits one writer at a time anyway, and it
    /// keeps every read-check-write sequence (token consume, room compare-and-swap) race-free.
    conn: Arc<Mutex<Connection>>,
    /// Where the database lives, for diagnostics and for the message log's own connection.
    path: Arc<PathBuf>,
    durability: Durability,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and brings its schema up to date.
    ///
    /// # Errors
    /// When the directory or file cannot be created or opened, a pragma is refused, a migration
    /// fails, or the file was written by a newer build with a schema this one does not know.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        Self::open_with(path, Durability::default())
    }

    /// As [`open`](Self::open), with commits made as durable as `durability` says.
    ///
    /// # Errors
    /// As `open`.
    pub fn open_with(path: &Path, durability: Durability) -> anyhow::Result<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating database directory {}", parent.display()))?;
        }
        create_private(path).with_context(|| format!("creating sqlite database {}", path.display()))?;
        let mut conn = Connection::open(path).with_context(|| format!("opening sqlite database {}", path.display()))?;
        configure(&conn, durability).with_context(|| format!("configuring sqlite database {}", path.display()))?;
        schema::migrate(&mut conn).with_context(|| format!("migrating sqlite database {}", path.display()))?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)), path: Arc::new(path.to_owned()), durability })
    }

    /// A second connection to the same database, configured alike. WAL lets it commit while
    /// this store's connection reads, so the message log's commits never queue reads behind them.
    pub(crate) fn another_connection(&self) -> anyhow::Result<Connection> {
        let conn = Connection::open(self.path.as_path())
            .with_context(|| format!("opening sqlite database {}", self.path.display()))?;
        configure(&conn, self.durability)?;
        Ok(conn)
    }

    /// Runs `work` on the blocking pool with the connection, so SQLite never stalls the async runtime.
    pub(crate) async fn run<T, E, F>(&self, work: F) -> Result<T, E>
    where
        F: FnOnce(&mut Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<anyhow::Error> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || work(&mut conn.lock()))
            .await
            .map_err(|join| E::from(anyhow::Error::new(join).context("sqlite task did not finish")))?
    }
}

/// Creates the database file readable by this user only, unless it exists. SQLite gives its WAL
/// and shared-memory files the database file's mode, so they are private too.
fn create_private(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path).map(drop)
}

fn configure(conn: &Connection, durability: Durability) -> anyhow::Result<()> {
    // WAL lets readers in other processes (backups, the sqlite3 shell) work alongside our writer;
    // with it, NORMAL sync still keeps every committed transaction across a crash of this process.
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    anyhow::ensure!(mode.eq_ignore_ascii_case("wal"), "sqlite refused WAL journal mode (got {mode})");
    conn.pragma_update(None, "synchronous", durability.pragma())?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Every port's statements stay prepared; the default of 16 made them evict each other.
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(())
}

#[async_trait]
impl HealthCheck for SqliteStore {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    async fn check(&self) -> anyhow::Result<()> {
        self.run(|conn| {
            let one: i64 = conn.query_row("SELECT 1", [], |row| row.get(0))?;
            anyhow::ensure!(one == 1, "SELECT 1 returned {one}");
            Ok(())
        })
        .await
    }
}
