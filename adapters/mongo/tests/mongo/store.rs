//! What only the MongoDB adapter promises: its database, collections and indexes, duplicate-tolerant
//! archive batches, compare-and-swap under concurrency, and its health check.

use std::collections::BTreeMap;

use adapter_mongo::MongoStore;
use application::contract::{archive, at, files, rooms, users};
use application::ports::{
    FileCatalog, HealthCheck, MessageArchive, RoomRepository, SeqRange, Take, UpdateRoomError, UserRepository,
};
use bson::{doc, Document};
use domain::{Message, Visibility};
use futures::TryStreamExt;

use crate::support::{outcome_of, TestDb};

fn seqs(messages: &[Message]) -> Vec<u64> {
    messages.iter().map(|m| m.seq.get()).collect()
}

/// Each index of `collection` as its key pattern and whether it is unique.
async fn indexes_of(db: &mongodb::Database, collection: &str) -> BTreeMap<String, (Document, bool)> {
    let models: Vec<mongodb::IndexModel> = db
        .collection::<Document>(collection)
        .list_indexes()
        .await
        .expect("list indexes")
        .try_collect()
        .await
        .expect("indexes");
    models
        .into_iter()
        .map(|model| {
            let options = model.options.unwrap_or_default();
            (options.name.unwrap_or_default(), (model.keys, options.unique.unwrap_or(false)))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs MongoDB (CHAT_TEST_MONGODB_URL)"]
async fn a_retried_archive_batch_with_some_duplicates_inserts_only_the_new_ones() {
    let db = TestDb::new().await;
    let outcome = outcome_of(async {
        let first: Vec<Message> = (1..=3).map(|n| archive::text_message(1, n)).collect();
        let retried: Vec<Message> = [4, 1, 5, 3, 6].into_iter().map(|n| archive::text_message(1, n)).collect();

        let inserted_first = db.insert_batch(&first).await.expect("first batch");
        let inserted_retry = db.insert_batch(&retried).await.expect("retried batch");

        assert_eq!((inserted_first, inserted_retry), (3, 3));
        let stored = db.fetch(archive::room(1), SeqRange::default(), Take::Oldest(100)).await.expect("fetch");
        assert_eq!(seqs(&stored), vec![1, 2, 3, 4, 5, 6]);
        let raw = db.raw().await.collection::<Document>("messages").count_documents(doc! {}).await.expect("count");
        assert_eq!(raw, 6, "no message is stored twice");
    })
    .await;
    db.finish(outcome).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs MongoDB (CHAT_TEST_MONGODB_URL)"]
async fn a_different_message_claiming_an_archived_seq_fails_the_batch() {
    let db = TestDb::new().await;
    let outcome = outcome_of(async {
        let original = archive::text_message(1, 1);
        let mut impostor = archive::text_message(2, 1);
        impostor.room_id = original.room_id;
        db.insert_batch(std::slice::from_ref(&original)).await.expect("first batch");

        let outcome = db.insert_batch(&[impostor, archive::text_message(1, 2)]).await;

        let error = format!("{:#}", outcome.expect_err("a seq taken by another message is an inconsistency"));
        assert!(error.contains("already holds their room and seq"), "{error}");
        let stored = db.fetch(original.room_id, SeqRange::default(), Take::Oldest(100)).await.expect("fetch");
        assert_eq!(stored.first(), Some(&original), "the stored message is untouched");
    })
    .await;
    db.finish(outcome).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs MongoDB (CHAT_TEST_MONGODB_URL)"]
async fn indexes_exist_after_connect() {
    let db = TestDb::new().await;
    let outcome = outcome_of(async {
        let raw = db.raw().await;

        let users = indexes_of(&raw, "users").await;
        let memberships = indexes_of(&raw, "memberships").await;
        let messages = indexes_of(&raw, "messages").await;
        let rooms = indexes_of(&raw, "rooms").await;
        let files = indexes_of(&raw, "files").await;

        assert_eq!(users["username_key_unique"], (doc! { "username_key": 1 }, true));
        assert_eq!(memberships["room_user_unique"], (doc! { "room_id": 1, "user_id": 1 }, true));
        assert_eq!(memberships["user_room"], (doc! { "user_id": 1, "room_id": 1 }, false));
        assert_eq!(messages["room_seq_unique"], (doc! { "room_id": 1, "seq": 1 }, true));
        assert_eq!(messages["sent_at"], (doc! { "sent_at": 1 }, false));
        assert_eq!(rooms["visibility_id"], (doc! { "visibility": 1, "_id": 1 }, false));
        assert_eq!(files["owner_id"], (doc! { "owner_id": 1 }, false));
        assert_eq!(files["expires_at"], (doc! { "expires_at": 1 }, false));
        assert_eq!(files["purged_at_expires_at"], (doc! { "purged_at": 1, "expires_at": 1 }, false));
        for collection in ["users", "refresh_tokens", "revoked_sessions", "rooms", "memberships", "messages", "files"] {
            assert!(indexes_of(&raw, collection).await.contains_key("_id_"), "{collection} exists");
        }
    })
    .await;
    db.finish(outcome).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs MongoDB (CHAT_TEST_MONGODB_URL)"]
async fn the_database_is_the_one_named_in_the_url() {
    let db = TestDb::new().await;
    let outcome = outcome_of(async {
        let alice = users::stored_user(1, "alice");

        db.create(&alice).await.expect("create");

        assert_eq!(db.database_name(), db.name);
        let client = mongodb::Client::with_uri_str(crate::support::mongo_url()).await.expect("valid URL");
        let names = client.list_database_names().await.expect("list databases");
        assert!(names.contains(&db.name), "{names:?}");
        let stored = client.database(&db.name).collection::<Document>("users").find_one(doc! {}).await.expect("find");
        assert_eq!(stored.and_then(|u| u.get_str("username").ok().map(str::to_owned)), Some("alice".to_owned()));
    })
    .await;
    db.finish(outcome).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs MongoDB (CHAT_TEST_MONGODB_URL)"]
async fn reconnecting_to_an_existing_database_keeps_its_data() {
    let db = TestDb::new().await;
    let outcome = outcome_of(async {
        let room = rooms::room(1, Visibility::Public, rooms::user(1), &[rooms::user(2)]);
        RoomRepository::insert(&db.store, &room).await.expect("insert");

        let reconnected = MongoStore::connect(&db.url).await.expect("reconnect");

        assert_eq!(RoomRepository::get(&reconnected, room.id()).await.expect("get"), Some(room));
    })
    .await;
    db.finish(outcome).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs MongoDB (CHAT_TEST_MONGODB_URL)"]
async fn concurrent_updates_from_one_version_let_exactly_one_win() {
    const WRITERS: u128 = 8;
    let db = TestDb::new().await;
    let outcome = outcome_of(async {
        let original = rooms::room(1, Visibility::Public, rooms::user(1), &[]);
        RoomRepository::insert(&db.store, &original).await.expect("insert");
        let start = std::sync::Arc::new(tokio::sync::Barrier::new(WRITERS as usize));

        let writers: Vec<_> = (0..WRITERS)
            .map(|n| {
                let (store, start, mut room) = (db.store.clone(), start.clone(), original.clone());
                tokio::spawn(async move {
                    room.add_member(rooms::user(100 + n), application::contract::at(2_000)).expect("add");
                    start.wait().await;
                    (n, store.update(&room).await)
                })
            })
            .collect();
        let mut winners = Vec::new();
        for writer in writers {
            match writer.await.expect("task") {
                (n, Ok(())) => winners.push(n),
                (_, Err(UpdateRoomError::Conflict)) => {}
                (_, Err(other)) => panic!("expected a conflict, got {other:?}"),
            }
        }

        assert_eq!(winners.len(), 1, "{winners:?}");
        let stored = RoomRepository::get(&db.store, original.id()).await.expect("get").expect("stored");
        assert_eq!(stored.version(), original.version() + 1);
        let members: Vec<_> = stored.members().iter().map(|m| m.user_id).collect();
        assert_eq!(members, vec![rooms::user(1), rooms::user(100 + winners[0])]);
        for n in 0..WRITERS {
            let member = db.is_member(original.id(), rooms::user(100 + n)).await.expect("is_member");
            assert_eq!(member, n == winners[0], "only the winner's membership was written");
        }
    })
    .await;
    db.finish(outcome).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs MongoDB (CHAT_TEST_MONGODB_URL)"]
async fn a_file_document_written_before_tombstones_existed_is_live() {
    let db = TestDb::new().await;
    let outcome = outcome_of(async {
        let file = files::file(1, files::owner(1), 10, 0);
        FileCatalog::insert(&db.store, &file).await.expect("insert");
        let raw = db.raw().await.collection::<Document>("files");
        raw.update_one(doc! {}, doc! { "$unset": { "purged_at": "" } }).await.expect("as an older build wrote it");

        let read = FileCatalog::get(&db.store, file.meta.id).await.expect("get");
        let expired = db.expired(at(0), 10).await.expect("expired");
        let usage = db.usage_of(file.owner).await.expect("usage");

        assert_eq!(read, Some(file.clone()));
        assert_eq!(expired, [file.meta.id]);
        assert_eq!(usage, 10);
    })
    .await;
    db.finish(outcome).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs MongoDB (CHAT_TEST_MONGODB_URL)"]
async fn a_corrupt_room_document_is_an_error_not_a_panic() {
    let db = TestDb::new().await;
    let outcome = outcome_of(async {
        let room = rooms::room(1, Visibility::Public, rooms::user(1), &[]);
        RoomRepository::insert(&db.store, &room).await.expect("insert");
        let raw = db.raw().await.collection::<Document>("rooms");
        raw.update_one(doc! {}, doc! { "$set": { "member_limit": 0_i64 } }).await.expect("tamper");

        let read = RoomRepository::get(&db.store, room.id()).await;

        let error = format!("{:#}", read.expect_err("a corrupt room"));
        assert!(error.contains("member limit"), "{error}");
    })
    .await;
    db.finish(outcome).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs MongoDB (CHAT_TEST_MONGODB_URL)"]
async fn the_health_check_is_named_mongodb_and_passes() {
    let db = TestDb::new().await;
    let outcome = outcome_of(async {
        let checked = db.check().await;

        assert_eq!(db.name(), "mongodb");
        assert!(checked.is_ok(), "{checked:?}");
    })
    .await;
    db.finish(outcome).await;
}

#[tokio::test]
async fn connecting_to_an_unreachable_server_fails_with_a_clear_error() {
    let connected = MongoStore::connect("mongodb://127.0.0.1:9/chat?serverSelectionTimeoutMS=300").await;

    let error = format!("{:#}", connected.expect_err("nothing listens on port 9"));
    assert!(error.contains("cannot reach MongoDB at 127.0.0.1:9"), "{error}");
}

#[tokio::test]
async fn an_invalid_url_is_refused() {
    let connected = MongoStore::connect("postgres://127.0.0.1/chat").await;

    let error = format!("{:#}", connected.expect_err("not a MongoDB URL"));
    assert!(error.contains("invalid MongoDB URL"), "{error}");
}
