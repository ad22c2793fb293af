//! Schema migrations, applied in order and tracked by `PRAGMA user_version`.

use rusqlite::{Connection, TransactionBehavior};

/// Migration `n` (1-based) is `MIGRATIONS[n - 1]`. Append new ones; never edit one that has shipped.
const MIGRATIONS: &[&str] = &[
    V1_INITIAL,
    V2_FILE_TOMBSTONES,
    V3_DURABLE_LOG,
    V4_QUOTA_HOLDS,
    V5_SESSION_EXPIRY,
    V6_DELETED_ROOMS,
    V7_MESSAGE_CHANGES,
    // Issue 16: direct rooms, read markers, search.
    V8_DIRECT_ROOMS_AND_READ_MARKERS,
    V9_MESSAGE_SEARCH,
];

/// The schema version this build writes.
#[cfg(test)]
pub(crate) const CURRENT_VERSION: i64 = MIGRATIONS.len() as i64;

// Ids are lowercase hyphenated UUID text, so text order is UUIDv7 time order; instants are integer
// milliseconds since the epoch; enums are their domain `as_str()` spelling.
// Only memberships reference another table: each port owns its own records, and the use cases,
// not the database, keep them consistent, as they must for any other adapter too.
const V1_INITIAL: &str = "
CREATE TABLE users (
    id            TEXT    NOT NULL PRIMARY KEY,
    username      TEXT    NOT NULL,
    username_key  TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,
    created_at    INTEGER NOT NULL
) STRICT;
CREATE UNIQUE INDEX users_username_key ON users (username_key);

CREATE TABLE refresh_tokens (
    hash       TEXT    NOT NULL PRIMARY KEY,
    user_id    TEXT    NOT NULL,
    session_id TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
) STRICT;
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);

CREATE TABLE revoked_sessions (
    session_id TEXT    NOT NULL PRIMARY KEY,
    revoked_at INTEGER NOT NULL
) STRICT;

CREATE TABLE rooms (
    id           TEXT    NOT NULL PRIMARY KEY,
    name         TEXT    NOT NULL,
    visibility   TEXT    NOT NULL CHECK (visibility IN ('public', 'private')),
    owner_id     TEXT    NOT NULL,
    member_limit INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    version      INTEGER NOT NULL
) STRICT;
CREATE INDEX rooms_visibility_id ON rooms (visibility, id);

CREATE TABLE room_members (
    room_id   TEXT    NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    user_id   TEXT    NOT NULL,
    role      TEXT    NOT NULL CHECK (role IN ('owner', 'member')),
    joined_at INTEGER NOT NULL,
    PRIMARY KEY (room_id, user_id)
) STRICT;
CREATE INDEX room_members_user ON room_members (user_id, room_id);

CREATE TABLE messages (
    id              TEXT    NOT NULL PRIMARY KEY,
    room_id         TEXT    NOT NULL,
    seq             INTEGER NOT NULL,
    sender_id       TEXT    NOT NULL,
    sender_username TEXT    NOT NULL,
    kind            TEXT    NOT NULL CHECK (kind IN ('text', 'image', 'file')),
    text            TEXT,
    file_id         TEXT,
    file_name       TEXT,
    file_size       INTEGER,
    content_type    TEXT,
    file_kind       TEXT,
    expires_at      INTEGER,
    sent_at         INTEGER NOT NULL
) STRICT;
CREATE UNIQUE INDEX messages_room_seq ON messages (room_id, seq);
CREATE INDEX messages_sent_at ON messages (sent_at);

CREATE TABLE files (
    id           TEXT    NOT NULL PRIMARY KEY,
    room_id      TEXT    NOT NULL,
    owner_id     TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    size         INTEGER NOT NULL,
    content_type TEXT    NOT NULL,
    kind         TEXT    NOT NULL CHECK (kind IN ('image', 'file')),
    expires_at   INTEGER NOT NULL,
    created_at   INTEGER NOT NULL
) STRICT;
CREATE INDEX files_owner ON files (owner_id);
CREATE INDEX files_expires_at ON files (expires_at);
";

// The purge keeps a file's entry as a tombstone (`purged_at` set) while messages may still point at
// it. Expired live files and old tombstones are found separately, each by a partial index.
const V2_FILE_TOMBSTONES: &str = "
ALTER TABLE files ADD COLUMN purged_at INTEGER;
DROP INDEX files_expires_at;
CREATE INDEX files_live_expires_at ON files (expires_at, id) WHERE purged_at IS NULL;
CREATE INDEX files_purged_at ON files (purged_at) WHERE purged_at IS NOT NULL;
";

// The embedded message log commits appends straight into `messages`. Each room's last given seq is
// kept apart from the messages, so a retention purge that empties a room never lets a seq be given
// out again; it starts from what the archive holds. A client message id maps to the message it
// created, by id only.
const V3_DURABLE_LOG: &str = "
CREATE TABLE room_seqs (
    room_id  TEXT    NOT NULL PRIMARY KEY,
    last_seq INTEGER NOT NULL
) STRICT;
INSERT INTO room_seqs (room_id, last_seq) SELECT room_id, MAX(seq) FROM messages GROUP BY room_id;

CREATE TABLE message_dedupe (
    user_id       TEXT    NOT NULL,
    client_msg_id TEXT    NOT NULL,
    message_id    TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (user_id, client_msg_id)
) STRICT;
CREATE INDEX message_dedupe_created_at ON message_dedupe (created_at);
";

// An upload holds its share of the owner's quota here while it streams; a hold lapses at
// `expires_at`, so one left by a crash stops counting on its own and is deleted by the next reserve.
const V4_QUOTA_HOLDS: &str = "
CREATE TABLE quota_holds (
    id         TEXT    NOT NULL PRIMARY KEY,
    owner_id   TEXT    NOT NULL,
    bytes      INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;
CREATE INDEX quota_holds_owner ON quota_holds (owner_id, expires_at);
CREATE INDEX quota_holds_expires_at ON quota_holds (expires_at);
";

// A revocation lives as long as a refresh token of its session can, then both are purged. Those
// from before this version get a year, longer than any refresh token lifetime in use.
const V5_SESSION_EXPIRY: &str = "
ALTER TABLE revoked_sessions ADD COLUMN expires_at INTEGER NOT NULL DEFAULT 0;
UPDATE revoked_sessions SET expires_at = revoked_at + 31622400000;
CREATE INDEX revoked_sessions_revoked_at ON revoked_sessions (revoked_at);
CREATE INDEX revoked_sessions_expires_at ON revoked_sessions (expires_at);
CREATE INDEX refresh_tokens_expires_at ON refresh_tokens (expires_at);
";

// A deleted room is remembered until the purge has deleted its messages and files.
const V6_DELETED_ROOMS: &str = "
CREATE TABLE deleted_rooms (
    room_id    TEXT    NOT NULL PRIMARY KEY,
    deleted_at INTEGER NOT NULL
) STRICT;
CREATE INDEX deleted_rooms_deleted_at ON deleted_rooms (deleted_at, room_id);
CREATE INDEX messages_room ON messages (room_id, seq);
CREATE INDEX files_room ON files (room_id) WHERE purged_at IS NULL;
";

// Edits, deletes and reactions are entries of the log with seqs of their own, in `messages` with
// the kinds 'edit', 'delete' and 'reaction': `target_seq` names the message they change, and
// `edit_text`, `emoji` and `reaction_added` say how. Their `text` is always null, so anything that
// reads `text` (search) sees content only. The message they change is updated in place: an edit
// replaces `text` and sets `edited_at` (and `edit_seq`, the edit shown); a delete sets `deleted_at`
// and clears `text` and the file columns, keeping the kind as a tombstone; `reactions` holds the
// JSON array of each user's newest reaction change per emoji. SQLite cannot change a CHECK
// constraint, so the table is built anew.
const V7_MESSAGE_CHANGES: &str = "
CREATE TABLE messages_v7 (
    id              TEXT    NOT NULL PRIMARY KEY,
    room_id         TEXT    NOT NULL,
    seq             INTEGER NOT NULL,
    sender_id       TEXT    NOT NULL,
    sender_username TEXT    NOT NULL,
    kind            TEXT    NOT NULL CHECK (kind IN ('text', 'image', 'file', 'edit', 'delete', 'reaction')),
    text            TEXT,
    file_id         TEXT,
    file_name       TEXT,
    file_size       INTEGER,
    content_type    TEXT,
    file_kind       TEXT,
    expires_at      INTEGER,
    sent_at         INTEGER NOT NULL,
    target_seq      INTEGER,
    edit_text       TEXT,
    emoji           TEXT,
    reaction_added  INTEGER,
    edited_at       INTEGER,
    edit_seq        INTEGER,
    deleted_at      INTEGER,
    reactions       TEXT,
    CHECK ((kind IN ('edit', 'delete', 'reaction')) = (target_seq IS NOT NULL)),
    CHECK (text IS NULL OR kind = 'text')
) STRICT;
INSERT INTO messages_v7 (id, room_id, seq, sender_id, sender_username, kind, text, file_id, file_name, file_size,
                         content_type, file_kind, expires_at, sent_at)
SELECT id, room_id, seq, sender_id, sender_username, kind, text, file_id, file_name, file_size,
       content_type, file_kind, expires_at, sent_at
FROM messages;
DROP TABLE messages;
ALTER TABLE messages_v7 RENAME TO messages;
CREATE UNIQUE INDEX messages_room_seq ON messages (room_id, seq);
CREATE INDEX messages_sent_at ON messages (sent_at);
CREATE INDEX messages_room ON messages (room_id, seq);
CREATE INDEX messages_changes ON messages (room_id, target_seq, seq) WHERE target_seq IS NOT NULL;
";

// ---- Issue 16: direct rooms, read markers and receipts, message search (migrations 8 and 9) ----

// A direct room is a room of kind `direct` whose `direct_key` names its pair of users (lower id
// first); the unique index makes a second room for the same pair fail, which is how concurrent
// opens from both sides end with one room. A member's read marker lives on the membership, so it
// goes with it; a user's choice about read receipts lives on the user.
const V8_DIRECT_ROOMS_AND_READ_MARKERS: &str = "
ALTER TABLE rooms ADD COLUMN kind TEXT NOT NULL DEFAULT 'group';
ALTER TABLE rooms ADD COLUMN direct_key TEXT;
CREATE UNIQUE INDEX rooms_direct_key ON rooms (direct_key) WHERE direct_key IS NOT NULL;
ALTER TABLE room_members ADD COLUMN last_read_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN send_read_receipts INTEGER NOT NULL DEFAULT 1;
";

// Full-text search over message text with FTS5, as an external-content index of `messages` kept
// in step by triggers (every row is indexed, a file message as an empty text), so a message is
// searchable once committed and gone from the index once deleted or purged. `unicode61` folds
// case and diacritics, in any script.
const V9_MESSAGE_SEARCH: &str = "
CREATE VIRTUAL TABLE messages_fts USING fts5(
    text, content = 'messages', content_rowid = 'rowid', tokenize = 'unicode61 remove_diacritics 2'
);
INSERT INTO messages_fts (messages_fts) VALUES ('rebuild');
CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts (rowid, text) VALUES (new.rowid, new.text);
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, text) VALUES ('delete', old.rowid, old.text);
END;
CREATE TRIGGER messages_fts_update AFTER UPDATE OF text ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, text) VALUES ('delete', old.rowid, old.text);
    INSERT INTO messages_fts (rowid, text) VALUES (new.rowid, new.text);
END;
";

// ---- end of issue 16 ----

/// The first migration alone, to build a database as an older build left it.
#[cfg(test)]
pub(crate) const FIRST_MIGRATION: &str = V1_INITIAL;

/// Applies every migration the database has not seen yet, each in its own transaction.
pub(crate) fn migrate(conn: &mut Connection) -> anyhow::Result<()> {
    loop {
        // IMMEDIATE takes the write lock before reading the version, so two processes opening the
        // same file cannot both apply the same migration.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version: i64 = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
        let applied = usize::try_from(version)?;
        anyhow::ensure!(
            applied <= MIGRATIONS.len(),
            "database schema version {applied} is newer than this build supports ({})",
            MIGRATIONS.len()
        );
        let Some(sql) = MIGRATIONS.get(applied) else {
            return Ok(());
        };
        tx.execute_batch(sql)?;
        let next = version + 1;
        tx.pragma_update(None, "user_version", next)?;
        tx.commit()?;
        tracing::info!(version = next, "applied sqlite schema migration");
    }
}
