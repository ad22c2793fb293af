//! Runs every port contract against real SQLite files, plus the SQLite-specific guarantees.

use std::path::PathBuf;

use application::ports::{
    Consumed, FileCatalog, HealthCheck, MessageArchive, RefreshTokenStore, RoomRepository, SeqRange, Take,
    UserRepository,
};
use domain::Visibility;
use tempfile::TempDir;

use crate::schema::{CURRENT_VERSION, FIRST_MIGRATION};
use crate::SqliteStore;
use application::contract::{archive, files, rooms, tokens, users};

/// A store on a new database file that lives as long as this value.
struct TestDb {
    store: SqliteStore,
    path: PathBuf,
    _dir: TempDir,
}

impl TestDb {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chat.db");
        let store = SqliteStore::open(&path).unwrap();
        Self { store, path, _dir: dir }
    }

    /// A plain connection to the same file, to inspect or tamper with it behind the store's back.
    fn raw(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(&self.path).unwrap()
    }
}

impl std::ops::Deref for TestDb {
    type Target = SqliteStore;

    fn deref(&self) -> &SqliteStore {
        &self.store
    }
}

mod user_repository {
    use application::contract_tests;

    use super::TestDb;

    application::users_contract!(contract_tests!(&*TestDb::new()));
}

mod refresh_token_store {
    use application::contract_tests;

    use super::TestDb;

    application::tokens_contract!(contract_tests!(&*TestDb::new()));
}

mod room_repository {
    use application::contract_tests;

    use super::TestDb;

    application::rooms_contract!(contract_tests!(&*TestDb::new()));
}

mod message_archive {
    use application::contract_tests;

    use super::TestDb;

    application::archive_contract!(contract_tests!(&*TestDb::new()));
}

mod message_search {
    use application::contract_tests;

    use super::TestDb;

    application::search_contract!(contract_tests!(&*TestDb::new()));
}

mod file_catalog {
    use application::contract_tests;

    use super::TestDb;

    application::files_contract!(contract_tests!(&*TestDb::new()));
}

#[tokio::test]
async fn data_survives_reopening_the_database_file() {
    let TestDb { store, path, _dir } = TestDb::new();
    let alice = users::stored_user(1, "alice");
    let token = tokens::record("hash-a", 10);
    let room = rooms::room(1, Visibility::Public, alice.user.id, &[rooms::user(2)]);
    let messages = vec![archive::text_message(1, 1), archive::text_message(1, 2)];
    let file = files::file(1, alice.user.id, 10, 0);
    store.create(&alice).await.unwrap();
    RefreshTokenStore::insert(&store, &token).await.unwrap();
    store.consume(&token.hash).await.unwrap();
    RoomRepository::insert(&store, &room).await.unwrap();
    store.insert_batch(&messages).await.unwrap();
    FileCatalog::insert(&store, &file).await.unwrap();

    drop(store);
    let reopened = SqliteStore::open(&path).unwrap();

    assert_eq!(reopened.by_username(&alice.user.username).await.unwrap(), Some(alice));
    assert_eq!(reopened.consume(&token.hash).await.unwrap(), Consumed::Reused(token));
    assert_eq!(RoomRepository::get(&reopened, room.id()).await.unwrap(), Some(room));
    let everything = SeqRange::default();
    assert_eq!(
        MessageArchive::fetch(&reopened, archive::room(1), everything, Take::Oldest(10)).await.unwrap(),
        messages
    );
    assert_eq!(FileCatalog::get(&reopened, file.meta.id).await.unwrap(), Some(file));
}

#[tokio::test]
async fn a_file_catalogued_before_tombstones_existed_is_live_after_the_migration() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chat.db");
    let file = files::file(1, files::owner(1), 10, 0);
    let old = rusqlite::Connection::open(&path).unwrap();
    old.execute_batch(FIRST_MIGRATION).unwrap();
    old.pragma_update(None, "user_version", 1).unwrap();
    old.execute(
        "INSERT INTO files (id, room_id, owner_id, name, size, content_type, kind, expires_at, created_at)
         VALUES (?1, ?2, ?3, ?4, 10, 'image/png', 'image', ?5, ?5)",
        rusqlite::params![
            file.meta.id.to_string(),
            file.room_id.to_string(),
            file.owner.to_string(),
            file.meta.name.as_str(),
            file.meta.expires_at.timestamp_millis(),
        ],
    )
    .unwrap();
    drop(old);

    let store = SqliteStore::open(&path).unwrap();

    assert_eq!(FileCatalog::get(&store, file.meta.id).await.unwrap(), Some(file.clone()));
    assert_eq!(store.expired(file.meta.expires_at, 10).await.unwrap(), [file.meta.id]);
    assert_eq!(store.usage_of(file.owner).await.unwrap(), 10);
    let version: i64 =
        rusqlite::Connection::open(&path).unwrap().pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    assert_eq!(version, CURRENT_VERSION);
}

#[tokio::test]
async fn opening_creates_missing_parent_directories() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/deeper/chat.db");

    let store = SqliteStore::open(&path);

    assert!(store.is_ok(), "{store:?}");
    assert!(path.is_file());
}

#[tokio::test]
async fn opening_enables_wal_foreign_keys_and_records_the_schema_version() {
    let db = TestDb::new();

    let (journal, foreign_keys, version) = db
        .store
        .run(|conn| {
            let journal: String = conn.pragma_query_value(None, "journal_mode", |r| r.get(0))?;
            let foreign_keys: bool = conn.pragma_query_value(None, "foreign_keys", |r| r.get(0))?;
            let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
            anyhow::Ok((journal, foreign_keys, version))
        })
        .await
        .unwrap();

    assert_eq!(journal, "wal");
    assert!(foreign_keys);
    assert_eq!(version, CURRENT_VERSION);
}

#[tokio::test]
async fn reopening_an_up_to_date_database_applies_no_migration() {
    let db = TestDb::new();
    db.store.create(&users::stored_user(1, "alice")).await.unwrap();

    let reopened = SqliteStore::open(&db.path);

    assert!(reopened.is_ok(), "{reopened:?}");
    let version: i64 = db.raw().pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    assert_eq!(version, CURRENT_VERSION);
}

#[tokio::test]
async fn a_database_from_a_newer_build_is_refused() {
    let db = TestDb::new();
    db.raw().pragma_update(None, "user_version", CURRENT_VERSION + 1).unwrap();

    let reopened = SqliteStore::open(&db.path);

    let error = format!("{:#}", reopened.unwrap_err());
    assert!(error.contains("newer than this build"), "{error}");
}

#[tokio::test]
async fn a_corrupt_room_row_is_an_error_not_a_panic() {
    let db = TestDb::new();
    let room = rooms::room(1, Visibility::Public, rooms::user(1), &[]);
    RoomRepository::insert(&db.store, &room).await.unwrap();
    db.raw().execute("UPDATE rooms SET member_limit = 0", []).unwrap();

    let read = RoomRepository::get(&db.store, room.id()).await;

    let error = format!("{:#}", read.unwrap_err());
    assert!(error.contains("member limit"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consumes_racing_through_separate_handles_on_one_file_yield_exactly_one_fresh() {
    const HANDLES: usize = 8;
    let db = TestDb::new();
    let token = tokens::record("hash-raced", 10);
    RefreshTokenStore::insert(&db.store, &token).await.unwrap();
    let handles: Vec<SqliteStore> = (0..HANDLES).map(|_| SqliteStore::open(&db.path).unwrap()).collect();
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(HANDLES));

    let racers: Vec<_> = handles
        .into_iter()
        .map(|store| {
            let (start, hash) = (start.clone(), token.hash.clone());
            tokio::spawn(async move {
                start.wait().await;
                store.consume(&hash).await
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for racer in racers {
        outcomes.push(racer.await.unwrap().unwrap());
    }

    let fresh = outcomes.iter().filter(|c| matches!(c, Consumed::Fresh(_))).count();
    assert_eq!(fresh, 1, "{outcomes:?}");
    assert!(outcomes.iter().all(|c| matches!(c, Consumed::Fresh(_) | Consumed::Reused(_))), "{outcomes:?}");
}

#[tokio::test]
async fn the_health_check_is_named_sqlite_and_passes() {
    let db = TestDb::new();

    let checked = db.store.check().await;

    assert_eq!(db.store.name(), "sqlite");
    assert!(checked.is_ok(), "{checked:?}");
}

/// The durable message log on a new database file.
struct TestLog {
    log: crate::SqliteMessageLog,
    db: TestDb,
}

impl TestLog {
    fn new() -> Self {
        let db = TestDb::new();
        let log =
            crate::SqliteMessageLog::start(db.store.clone(), crate::SqliteMessageLog::DEFAULT_DEDUPE_TTL).unwrap();
        Self { log, db }
    }

    /// A new store and log on the same file, as after a restart.
    fn reopened(&self) -> crate::SqliteMessageLog {
        let store = SqliteStore::open(&self.db.path).unwrap();
        crate::SqliteMessageLog::start(store, crate::SqliteMessageLog::DEFAULT_DEDUPE_TTL).unwrap()
    }
}

impl std::ops::Deref for TestLog {
    type Target = crate::SqliteMessageLog;

    fn deref(&self) -> &crate::SqliteMessageLog {
        &self.log
    }
}

mod message_log {
    use application::contract_tests;

    use super::TestLog;

    // Not `archive_queue_contract!`: this log archives as it commits, so it never queues.
    application::message_log_contract!(contract_tests!(&*TestLog::new()));
}

mod durable_log {
    use application::contract::message_log::{dedupe, new_message};
    use application::contract::{room, sender};
    use application::ports::{Appended, MessageArchive, MessageLog, SeqRange, Take};

    use super::TestLog;

    fn created(appended: Appended) -> domain::Message {
        match appended {
            Appended::Created(message) => message,
            Appended::Duplicate(message) => panic!("expected a new message, got a duplicate of {}", message.seq),
        }
    }

    #[tokio::test]
    async fn an_appended_message_is_in_the_archive_before_append_returns() {
        let log = TestLog::new();

        let message = created(log.append(new_message(room(1), &sender(1), "hello"), None).await.unwrap());

        let archived = log.db.store.fetch(room(1), SeqRange::default(), Take::Oldest(10)).await.unwrap();
        assert_eq!(archived, vec![message]);
        assert!(log.claim_batch("archiver", 10).await.unwrap().is_empty(), "nothing is left to archive");
        assert_eq!(log.oldest_unarchived().await.unwrap(), None);
    }

    #[tokio::test]
    async fn seqs_continue_after_a_restart_even_when_the_purge_emptied_the_room() {
        let log = TestLog::new();
        for n in 0..3 {
            log.append(new_message(room(1), &sender(1), &format!("m{n}")), None).await.unwrap();
        }
        let far_future = chrono::Utc::now() + chrono::Duration::days(1);
        assert_eq!(log.db.store.delete_sent_before(far_future, 100).await.unwrap(), 3);

        let reopened = log.reopened();
        let next = created(reopened.append(new_message(room(1), &sender(1), "after"), None).await.unwrap());

        assert_eq!(next.seq.get(), 4, "seqs 1 to 3 were given out once and are never given again");
        assert_eq!(reopened.last_seq(room(1)).await.unwrap().map(|s| s.get()), Some(4));
    }

    #[tokio::test]
    async fn a_resend_after_a_restart_returns_the_original_message() {
        let log = TestLog::new();
        let alice = sender(1);
        let original =
            created(log.append(new_message(room(1), &alice, "hello"), Some(dedupe(&alice, "c-1"))).await.unwrap());

        let reopened = log.reopened();
        let resent = reopened.append(new_message(room(1), &alice, "hello"), Some(dedupe(&alice, "c-1"))).await;

        assert_eq!(resent.unwrap(), Appended::Duplicate(original));
        assert_eq!(reopened.last_seq(room(1)).await.unwrap().map(|s| s.get()), Some(1), "no seq was used up");
    }

    #[tokio::test]
    async fn the_same_key_twice_in_one_group_stores_one_message() {
        let log = TestLog::new();
        let alice = sender(1);

        let sends = (0..20).map(|n| {
            let log = log.log.clone();
            let alice = alice.clone();
            tokio::spawn(async move {
                log.append(new_message(room(1), &alice, &format!("try {n}")), Some(dedupe(&alice, "same"))).await
            })
        });
        let outcomes: Vec<Appended> =
            futures::future::join_all(sends).await.into_iter().map(|r| r.unwrap().unwrap()).collect();

        let created: Vec<_> = outcomes.iter().filter(|o| matches!(o, Appended::Created(_))).collect();
        assert_eq!(created.len(), 1, "{outcomes:?}");
        let stored = log.fetch(room(1), SeqRange::default(), Take::Oldest(100)).await.unwrap();
        assert_eq!(stored.len(), 1);
    }
}

#[test]
fn search_reads_the_full_text_index_and_never_scans_the_messages() {
    let db = TestDb::new();
    let conn = db.raw();

    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {}", crate::archive::search_sql())).unwrap();
    let plan: Vec<String> = stmt
        .query_map(rusqlite::params!["\"x\"", "[]", 0, "some-id", 10], |row| row.get::<_, String>(3))
        .unwrap()
        .map(Result::unwrap)
        .collect();

    assert!(plan.iter().any(|step| step.starts_with("SCAN f VIRTUAL TABLE INDEX")), "{plan:#?}");
    assert!(plan.iter().any(|step| step.starts_with("SEARCH m USING INTEGER PRIMARY KEY")), "{plan:#?}");
    assert!(!plan.iter().any(|step| step.contains("TEMP B-TREE")), "no sort: the index gives the order {plan:#?}");
    assert!(!plan.iter().any(|step| step.starts_with("SCAN m") || step.starts_with("SCAN messages")), "{plan:#?}");
}

#[test]
fn the_room_lists_unread_counts_read_a_room_seq_index_not_the_messages() {
    let db = TestDb::new();
    let conn = db.raw();
    let sql = format!(
        "EXPLAIN QUERY PLAN WITH ranges AS ({}) SELECT (SELECT COUNT(*) FROM (SELECT 1 FROM messages m
         WHERE m.room_id = r.room AND m.seq > r.after AND m.seq < r.before AND m.sent_at >= r.not_before LIMIT 10))
         FROM ranges r",
        crate::archive::RANGES
    );

    let mut stmt = conn.prepare(&sql).unwrap();
    let plan: Vec<String> =
        stmt.query_map(["[]"], |row| row.get::<_, String>(3)).unwrap().map(Result::unwrap).collect();

    assert!(
        plan.iter().any(|step| step.contains("USING INDEX messages_room") && step.contains("(room_id=? AND seq>?")),
        "{plan:#?}"
    );
    assert!(!plan.iter().any(|step| step.starts_with("SCAN m") || step.starts_with("SCAN messages")), "{plan:#?}");
}

/// The figure in docs/benchmarks.md (issue 16): search and the room list's tails over 100 000
/// messages, measured at the store (no HTTP). Run it optimised, on its own:
/// `cargo test --release -p adapter-sqlite -- --ignored --nocapture search_and_room_list_latency`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: minutes in a debug build"]
async fn search_and_room_list_latency_over_100k_messages() {
    use application::ports::{MessageLog, MessageSearch, TailQuery};
    use domain::{Message, MessageBody, MessageId, MessageText, ReadMarker, RoomId, SearchQuery, Sender, Seq, UserId};
    use std::time::{Duration, Instant};

    const ROOMS: u64 = 10;
    const PER_ROOM: u64 = 10_000;
    const VOCABULARY: u64 = 5_000;
    let db = TestDb::new();
    // A fixed pseudo-random sequence, so every run searches the same text.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        state >> 33
    };
    let rooms: Vec<RoomId> = (1..=ROOMS).map(|n| RoomId::from_uuid(uuid::Uuid::from_u128(u128::from(n)))).collect();
    let sender =
        Sender { id: UserId::from_uuid(uuid::Uuid::from_u128(7)), username: domain::Username::new("bench").unwrap() };
    let started = chrono::Utc::now() - chrono::Duration::days(1);
    let fill = Instant::now();
    for seq in 1..=PER_ROOM {
        let batch: Vec<Message> = rooms
            .iter()
            .enumerate()
            .map(|(r, room)| {
                let words: Vec<String> = (0..8).map(|_| format!("w{}", next() % VOCABULARY)).collect();
                let n = seq * ROOMS + r as u64;
                Message {
                    id: MessageId::from_uuid(uuid::Uuid::from_u128(u128::from(n) << 64)),
                    room_id: *room,
                    seq: Seq::new(seq).unwrap(),
                    sender: sender.clone(),
                    body: MessageBody::Text(MessageText::new(&format!("common {}", words.join(" "))).unwrap()),
                    sent_at: started + chrono::Duration::milliseconds(i64::try_from(n).unwrap()),
                    state: domain::MessageState::default(),
                }
            })
            .collect();
        db.insert_batch(&batch).await.unwrap();
    }
    let fill = fill.elapsed();
    let log = crate::SqliteMessageLog::start(db.store.clone(), Duration::from_secs(60)).unwrap();

    let measure = |label: &str, mut samples: Vec<Duration>| {
        samples.sort();
        let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
        println!(
            "{label}: {} runs, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            samples.len(),
            at(0.50).as_secs_f64() * 1e3,
            at(0.99).as_secs_f64() * 1e3,
            samples[samples.len() - 1].as_secs_f64() * 1e3
        );
    };
    let search = |words: String| MessageSearch {
        query: SearchQuery::new(&words).unwrap(),
        rooms: rooms.clone(),
        not_before: Some(started),
        before: None,
        limit: 21,
    };
    let mut rare = Vec::new();
    let mut hits = 0;
    for _ in 0..1000 {
        let query = search(format!("w{}", next() % VOCABULARY));
        let t = Instant::now();
        hits += db.search(&query).await.unwrap().len();
        rare.push(t.elapsed());
    }
    let mut two = Vec::new();
    for _ in 0..1000 {
        let query = search(format!("w{} w{}", next() % VOCABULARY, next() % VOCABULARY));
        let t = Instant::now();
        db.search(&query).await.unwrap();
        two.push(t.elapsed());
    }
    let mut common = Vec::new();
    for _ in 0..100 {
        let t = Instant::now();
        assert_eq!(db.search(&search("common".to_owned())).await.unwrap().len(), 21);
        common.push(t.elapsed());
    }
    let mut tails = Vec::new();
    for _ in 0..1000 {
        let queries: Vec<TailQuery> =
            rooms.iter().map(|&room| TailQuery { room, read: ReadMarker::restore(next() % PER_ROOM) }).collect();
        let t = Instant::now();
        log.tails(&queries, Some(started), domain::UNREAD_CAP).await.unwrap();
        tails.push(t.elapsed());
    }
    println!("filled {} messages in {:.1} s", ROOMS * PER_ROOM, fill.as_secs_f64());
    measure("search, one word in ~160 messages (first page of 20)", rare);
    println!("  {hits} results in all");
    measure("search, two such words", two);
    measure("search, a word in every message (first page of 20)", common);
    measure("room list tails, 10 rooms, unread up to 1000 each", tails);
}
