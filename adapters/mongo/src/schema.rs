//! Collection names and the indexes each one needs, created idempotently at start-up.

use anyhow::Context;
use bson::{doc, Document};
use futures::TryStreamExt;
use mongodb::options::IndexOptions;
use mongodb::{Database, IndexModel};

pub(crate) const USERS: &str = "users";
pub(crate) const REFRESH_TOKENS: &str = "refresh_tokens";
pub(crate) const REVOKED_SESSIONS: &str = "revoked_sessions";
pub(crate) const ROOMS: &str = "rooms";
pub(crate) const MEMBERSHIPS: &str = "memberships";
pub(crate) const MESSAGES: &str = "messages";
pub(crate) const FILES: &str = "files";
/// One document per user: the quota holds of uploads in progress, and a version for compare-and-swap.
pub(crate) const QUOTA_HOLDS: &str = "quota_holds";
pub(crate) const DELETED_ROOMS: &str = "deleted_rooms";

/// Every collection the store writes, in the order `ensure_indexes` visits them.
pub(crate) const COLLECTIONS: [&str; 9] =
    [USERS, REFRESH_TOKENS, REVOKED_SESSIONS, ROOMS, MEMBERSHIPS, MESSAGES, FILES, QUOTA_HOLDS, DELETED_ROOMS];

fn index(name: &str, keys: Document, unique: bool) -> IndexModel {
    let options = IndexOptions::builder().name(name.to_owned()).unique(unique.then_some(true)).build();
    IndexModel::builder().keys(keys).options(options).build()
}

// ---- Issue 16: direct rooms (unique pair key) and message search (text index) ----

/// Unique over the rooms that have a `direct_key`: a second direct room for a pair is refused
/// with a duplicate key, atomically, which is how concurrent opens end with one room.
fn direct_key_index() -> IndexModel {
    let options =
        IndexOptions::builder().name("direct_key_unique".to_owned()).unique(Some(true)).sparse(Some(true)).build();
    IndexModel::builder().keys(doc! { "direct_key": 1 }).options(options).build()
}

/// The text index message search uses. `none`: no stemming and no stop words, in any language,
/// as the embedded FTS5 index does.
pub(crate) fn text_index() -> IndexModel {
    let options = IndexOptions::builder().name(TEXT_INDEX.to_owned()).default_language(Some("none".to_owned())).build();
    IndexModel::builder().keys(doc! { "text": "text" }).options(options).build()
}

pub(crate) const TEXT_INDEX: &str = "text_search";

/// Creates the messages' text index; false when the server has no text indexes (SecantusDB
/// answers `CannotCreateIndex`), so search answers that it is unavailable instead of scanning.
pub(crate) async fn ensure_text_index(db: &Database) -> anyhow::Result<bool> {
    match db.collection::<Document>(MESSAGES).create_index(text_index()).await {
        Ok(_) => Ok(true),
        Err(e) if is_text_unsupported(&e) => {
            tracing::warn!(
                error = %e,
                "this MongoDB-compatible server has no text indexes; message search is unavailable"
            );
            Ok(false)
        }
        Err(e) => Err(e).context("creating the text index of messages"),
    }
}

/// The server does not do text search: `CannotCreateIndex` (67) for the index, `BadValue` (2) or
/// `IndexNotFound` (27) for a `$text` query.
pub(crate) fn is_text_unsupported(error: &mongodb::error::Error) -> bool {
    matches!(error.kind.as_ref(), mongodb::error::ErrorKind::Command(e) if [2, 27, 67].contains(&e.code))
}

// ---- end of issue 16 ----

/// An index whose documents MongoDB deletes once the date in `field` has passed.
fn expiry_index(name: &str, field: &str) -> IndexModel {
    let options = IndexOptions::builder().name(name.to_owned()).expire_after(std::time::Duration::ZERO).build();
    IndexModel::builder().keys(doc! { field: 1 }).options(options).build()
}

/// The secondary indexes of `collection`; `_id` is always unique and indexed.
pub(crate) fn indexes(collection: &str) -> Vec<IndexModel> {
    match collection {
        // Names that differ only in case collide here, which is what makes `Duplicate` atomic.
        USERS => vec![index("username_key_unique", doc! { "username_key": 1 }, true)],
        REFRESH_TOKENS => vec![expiry_index("expires_at_ttl", "expires_at")],
        REVOKED_SESSIONS => {
            vec![index("revoked_at", doc! { "revoked_at": 1 }, false), expiry_index("expires_at_ttl", "expires_at")]
        }
        ROOMS => vec![
            index("visibility_id", doc! { "visibility": 1, "_id": 1 }, false),
            // Issue 16: one direct room per pair of users; group rooms have no key (sparse).
            direct_key_index(),
        ],
        MEMBERSHIPS => vec![
            index("room_user_unique", doc! { "room_id": 1, "user_id": 1 }, true),
            index("user_room", doc! { "user_id": 1, "room_id": 1 }, false),
        ],
        // `_id` is the message id, so a retried batch collides on it; a second message claiming a
        // room's seq collides on `room_seq_unique` instead, which is a real inconsistency.
        DELETED_ROOMS => vec![index("deleted_at", doc! { "deleted_at": 1, "_id": 1 }, false)],
        // `room_seq_unique` is also the shard key of a sharded archive (`{room_id: 1, seq: 1}`,
        // docs/scaling.md): a unique index must start with the shard key, and a retried message
        // has the same room and seq, so it reaches the same shard and collides there on `_id` too.
        MESSAGES => vec![
            index("room_seq_unique", doc! { "room_id": 1, "seq": 1 }, true),
            index("sent_at", doc! { "sent_at": 1 }, false),
            // The changes archived for a message, found when the message is archived after them.
            index("room_target", doc! { "room_id": 1, "target_seq": 1 }, false),
        ],
        // The purge finds expired live entries (`purged_at: null`) and old tombstones separately.
        FILES => vec![
            index("owner_id", doc! { "owner_id": 1 }, false),
            index("expires_at", doc! { "expires_at": 1 }, false),
            index("purged_at_expires_at", doc! { "purged_at": 1, "expires_at": 1 }, false),
        ],
        _ => Vec::new(),
    }
}

/// Creates every collection and index that does not exist yet. Collections are created here rather
/// than on first insert because servers before 4.4 cannot create one inside a transaction.
///
/// # Errors
/// When the server is unreachable, or an index of the same name exists with other keys or options.
pub(crate) async fn ensure_indexes(db: &Database) -> anyhow::Result<()> {
    let existing = db.list_collection_names().await.context("listing collections")?;
    for name in COLLECTIONS {
        if !existing.iter().any(|e| e == name) {
            match db.create_collection(name).await {
                Ok(()) => {}
                // Another process starting at the same time created it first.
                Err(e) if is_namespace_exists(&e) => {}
                Err(e) => return Err(e).with_context(|| format!("creating collection {name}")),
            }
        }
        let indexes = indexes(name);
        if !indexes.is_empty() {
            db.collection::<Document>(name)
                .create_indexes(indexes)
                .await
                .with_context(|| format!("creating the indexes of collection {name}"))?;
        }
    }
    count_members(db).await.context("counting the members of rooms stored before member_count")
}

/// Gives rooms stored before `member_count` existed their count, once: an add's guard needs it.
async fn count_members(db: &Database) -> anyhow::Result<()> {
    let rooms = db.collection::<Document>(ROOMS);
    let memberships = db.collection::<Document>(MEMBERSHIPS);
    let uncounted = doc! { "member_count": { "$exists": false } };
    let mut cursor = rooms.find(uncounted.clone()).projection(doc! { "_id": 1 }).await?;
    while let Some(room) = cursor.try_next().await? {
        let id = room.get_str("_id").context("a room has no id")?;
        let count = memberships.count_documents(doc! { "room_id": id }).await?;
        let mut only_if_uncounted = uncounted.clone();
        only_if_uncounted.insert("_id", id);
        rooms.update_one(only_if_uncounted, doc! { "$set": { "member_count": i64::try_from(count)? } }).await?;
    }
    Ok(())
}

/// `NamespaceExists` (48): the collection is already there.
fn is_namespace_exists(error: &mongodb::error::Error) -> bool {
    matches!(error.kind.as_ref(), mongodb::error::ErrorKind::Command(e) if e.code == 48)
}
