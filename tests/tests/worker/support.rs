//! Test world: the real Archiver over Redis, MongoDB and a temp-dir file store, on a private Redis
//! key prefix and a private MongoDB database that are removed afterwards, also after a panic.

use std::sync::Arc;

use adapter_fs::LocalFileStore;
use adapter_memory::InMemoryEventBus;
use adapter_mongo::MongoStore;
use adapter_redis::{RedisConfig, RedisMessageLog};
use adapter_security::{SystemClock, UuidV7Ids};
use application::archive::PurgePolicy;
use application::files::FileLimits;
use application::ports::{Appended, Clock, MessageArchive, MessageLog, RoomRepository, SeqRange, Take};
use application::{Archiver, Files, Messaging};
use domain::{
    MemberLimit, Message, MessageId, RetentionPolicy, Room, RoomId, RoomName, Sender, User, UserId, Username,
    Visibility,
};
use e2e::services::{mongo_url, redis_url, url_with_database, Cleanup};
use tempfile::TempDir;

/// More than any test here stores in one room, so one read returns a room's whole archive.
const EVERYTHING: usize = 100_000;

/// The purge batch of [`World::archiver`]; tests that exercise batching pick their own.
pub const PURGE_BATCH: u32 = 100;

/// One test's Redis key prefix, MongoDB database and file directory, with connections to them.
pub struct World {
    pub config: RedisConfig,
    pub mongo_url: String,
    /// The node's message log, as the sending side sees it.
    pub log: Arc<RedisMessageLog>,
    /// Archive, file catalog and rooms.
    pub store: MongoStore,
    pub files: Arc<LocalFileStore>,
    /// Holds the file store's directory until the test ends.
    _dir: TempDir,
    /// Declared last so it runs after every connection above is closed.
    _cleanup: Cleanup,
}

impl World {
    /// A world with the default Redis settings.
    pub async fn new() -> Self {
        Self::with(|_| {}).await
    }

    /// A world whose Redis settings `adjust` changes from the defaults.
    pub async fn with(adjust: impl FnOnce(&mut RedisConfig)) -> Self {
        let prefix = format!("test:{}:", uuid::Uuid::new_v4());
        let database = format!("worker_{}", uuid::Uuid::new_v4().simple());
        let mut config = RedisConfig { key_prefix: prefix.clone(), ..RedisConfig::new(redis_url()) };
        adjust(&mut config);
        // Armed before connecting, so whatever a half-started test created is removed too.
        let redis = config.url.split(',').map(str::to_owned).collect();
        let cleanup = Cleanup { prefix, database: database.clone(), mongo: mongo_url(), redis };
        let mongo_url = url_with_database(&mongo_url(), &database);
        let dir = tempfile::tempdir().expect("a temp dir");
        let files = Arc::new(LocalFileStore::new(dir.path().join("files")).expect("a file store"));
        let log = Arc::new(connect_log(&config).await);
        let store = connect_store(&mongo_url).await;
        Self { config, mongo_url, log, store, files, _dir: dir, _cleanup: cleanup }
    }

    /// A new connection to the same log, as a restarted worker process would open.
    pub async fn reconnect_log(&self) -> Arc<RedisMessageLog> {
        Arc::new(connect_log(&self.config).await)
    }

    /// A new connection to the same database.
    pub async fn reconnect_store(&self) -> MongoStore {
        connect_store(&self.mongo_url).await
    }

    /// An archiver as the worker composes it, on the given connections and the system clock.
    pub fn archiver(&self, log: Arc<RedisMessageLog>, store: &MongoStore) -> Archiver {
        self.archiver_with(log, store, Arc::new(SystemClock), PURGE_BATCH)
    }

    pub fn archiver_with(
        &self,
        log: Arc<RedisMessageLog>,
        store: &MongoStore,
        clock: Arc<dyn Clock>,
        purge_batch: u32,
    ) -> Archiver {
        let store = Arc::new(store.clone());
        let purge = PurgePolicy { retention: RetentionPolicy::default(), batch: purge_batch };
        Archiver::new(log, store.clone(), self.files.clone(), store.clone(), store, clock, purge)
    }

    /// The messaging use case as a node composes it, reading history from this world's log and
    /// the given archive (this world's, or one wrapped to interfere with reads).
    pub fn messaging(&self, archive: Arc<dyn MessageArchive>) -> Messaging {
        let store = Arc::new(self.store.clone());
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let files = Files::new(
            self.files.clone(),
            store.clone(),
            store.clone(),
            clock.clone(),
            Arc::new(UuidV7Ids),
            FileLimits::default(),
            RetentionPolicy::default(),
        );
        Messaging::new(
            store,
            self.log.clone(),
            archive,
            Arc::new(InMemoryEventBus::default()),
            files,
            clock,
            Arc::new(UuidV7Ids),
        )
        .with_retention(RetentionPolicy::default())
    }

    /// A user and a new room they own, so they may read its history.
    pub async fn reader_and_room(&self) -> (User, RoomId) {
        let now = SystemClock.now();
        let reader = User {
            id: UserId::from_uuid(uuid::Uuid::now_v7()),
            username: Username::new("reader").expect("a valid username"),
            created_at: now,
        };
        let room = Room::create(
            new_room(),
            RoomName::new("history").expect("a valid room name"),
            Visibility::Private,
            reader.id,
            MemberLimit::default(),
            now,
        );
        self.store.insert(&room).await.expect("room stored");
        (reader, room.id())
    }

    /// A restarted worker: fresh connections to the same Redis and MongoDB.
    pub async fn restarted_archiver(&self) -> Archiver {
        let (log, store) = (self.reconnect_log().await, self.reconnect_store().await);
        self.archiver(log, &store)
    }
}

async fn connect_log(config: &RedisConfig) -> RedisMessageLog {
    let log = RedisMessageLog::connect(config.clone())
        .await
        .expect("Redis is reachable at CHAT_TEST_REDIS_URL (or redis://127.0.0.1:6379)");
    // A new deployment: nothing is archived, so the (empty) counters are whole.
    log.counters_recovered().await.expect("Redis is reachable");
    log
}

async fn connect_store(url: &str) -> MongoStore {
    MongoStore::connect(url)
        .await
        .expect("MongoDB is reachable at CHAT_TEST_MONGODB_URL (or mongodb://127.0.0.1:27017)")
}

pub fn new_room() -> RoomId {
    RoomId::from_uuid(uuid::Uuid::now_v7())
}

pub fn new_sender(name: &str) -> Sender {
    Sender { id: UserId::from_uuid(uuid::Uuid::now_v7()), username: Username::new(name).expect("a valid username") }
}

pub use application::contract::message_log::{new_message, text};

/// Appends one message and returns it as stored, with its seq.
pub async fn append(log: &dyn MessageLog, room: RoomId, sender: &Sender, body: &str) -> Message {
    match log.append(new_message(room, sender, body), None).await.expect("append") {
        Appended::Created(message) => message,
        Appended::Duplicate(message) => {
            panic!("no dedupe key was given, yet seq {} came back as a duplicate", message.seq)
        }
    }
}

/// Appends `count` messages to `room`, one after the other.
pub async fn append_many(log: &dyn MessageLog, room: RoomId, count: u64) -> Vec<Message> {
    let sender = new_sender("alice");
    let mut appended = Vec::new();
    for n in 1..=count {
        appended.push(append(log, room, &sender, &format!("message {n}")).await);
    }
    appended
}

/// Every archived message of `room`, ascending by seq.
pub async fn archived(archive: &dyn MessageArchive, room: RoomId) -> Vec<Message> {
    archive.fetch(room, SeqRange::default(), Take::Oldest(EVERYTHING)).await.expect("reading the archive")
}

/// The archive holds exactly `appended`: each seq from 1 once, each under its own id.
pub async fn assert_archived_exactly_once(archive: &dyn MessageArchive, room: RoomId, appended: &[Message]) {
    let stored = archived(archive, room).await;
    let expected: Vec<u64> = (1..=appended.len() as u64).collect();
    assert_eq!(seqs(&stored), expected, "every seq archived once, none twice, none missing");
    assert_eq!(ids(&stored), ids(appended), "each seq holds the message appended under it");
    assert_eq!(stored, appended, "archived messages equal the appended ones field for field");
}

/// Nothing is left to archive: no consumer is handed anything, and no entry waits.
pub async fn assert_queue_empty(log: &dyn MessageLog, consumers: &[&str]) {
    for consumer in consumers {
        let left = log.claim_batch(consumer, 1000).await.expect("claim");
        assert!(
            left.is_empty(),
            "{consumer} was still handed seqs {:?}",
            left.iter().map(|q| q.message.seq.get()).collect::<Vec<_>>()
        );
    }
    assert_eq!(log.oldest_unarchived().await.expect("oldest unarchived"), None, "an entry still waits in the queue");
}

pub fn seqs(messages: &[Message]) -> Vec<u64> {
    messages.iter().map(|m| m.seq.get()).collect()
}

pub fn ids(messages: &[Message]) -> Vec<MessageId> {
    messages.iter().map(|m| m.id).collect()
}
