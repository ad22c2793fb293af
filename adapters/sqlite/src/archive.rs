//! `MessageArchive` on SQLite: idempotent batch inserts, seq-range reads and retention purges.

use anyhow::Context;
use application::ports::{ArchiveSearchError, MessageArchive, MessageSearch, SeqRange, Take};
use async_trait::async_trait;
use domain::{
    FileKind, FileMeta, FileName, Message, MessageBody, MessageKind, MessageText, RoomId, Sender, Seq, Timestamp,
    Username,
};
use rusqlite::{params, Row, TransactionBehavior};

use crate::codec::{
    delete_oldest_before, id_text, json_id_list, millis, parse_id, saturating_i64, timestamp, to_i64, to_u64,
};
use crate::SqliteStore;

const COLUMNS: &str = "id, room_id, seq, sender_id, sender_username, kind, text,
                       file_id, file_name, file_size, content_type, file_kind, expires_at, sent_at";

fn seq_from(raw: i64) -> anyhow::Result<Seq> {
    Seq::new(to_u64(raw)?).with_context(|| format!("stored seq {raw} is not positive"))
}

fn body_from_row(row: &Row<'_>) -> anyhow::Result<MessageBody> {
    let kind: String = row.get("kind")?;
    if kind == MessageKind::Text.as_str() {
        let text: String = row.get::<_, Option<String>>("text")?.context("a text message has no text")?;
        return Ok(MessageBody::Text(MessageText::new(&text).context("stored message text is invalid")?));
    }
    let file_id: String = row.get::<_, Option<String>>("file_id")?.context("a file message has no file id")?;
    let name: String = row.get::<_, Option<String>>("file_name")?.context("a file message has no file name")?;
    let file_kind: String = row.get::<_, Option<String>>("file_kind")?.context("a file message has no file kind")?;
    let size: i64 = row.get::<_, Option<i64>>("file_size")?.context("a file message has no size")?;
    let expires_at: i64 = row.get::<_, Option<i64>>("expires_at")?.context("a file message has no expiry")?;
    let meta = FileMeta {
        id: parse_id(&file_id)?,
        name: FileName::sanitize(&name),
        size: to_u64(size)?,
        content_type: row.get::<_, Option<String>>("content_type")?.context("a file message has no content type")?,
        kind: FileKind::parse(&file_kind).with_context(|| format!("unknown file kind {file_kind:?}"))?,
        expires_at: timestamp(expires_at)?,
    };
    let body = MessageBody::File(meta);
    anyhow::ensure!(body.kind().as_str() == kind, "message kind {kind:?} does not match its file kind {file_kind:?}");
    Ok(body)
}

pub(crate) fn message_from_row(row: &Row<'_>) -> anyhow::Result<Message> {
    let id: String = row.get("id")?;
    let room_id: String = row.get("room_id")?;
    let sender_id: String = row.get("sender_id")?;
    let username: String = row.get("sender_username")?;
    Ok(Message {
        body: body_from_row(row).with_context(|| format!("message {id} is corrupt"))?,
        id: parse_id(&id)?,
        room_id: parse_id(&room_id)?,
        seq: seq_from(row.get("seq")?)?,
        sender: Sender {
            id: parse_id(&sender_id)?,
            username: Username::new(&username)
                .with_context(|| format!("message {id} has an invalid sender name {username:?}"))?,
        },
        sent_at: timestamp(row.get("sent_at")?)?,
    })
}

/// The file columns of a message, all null for text.
struct FileColumns {
    id: Option<String>,
    name: Option<String>,
    size: Option<i64>,
    content_type: Option<String>,
    kind: Option<&'static str>,
    expires_at: Option<i64>,
}

impl FileColumns {
    fn of(body: &MessageBody) -> anyhow::Result<Self> {
        Ok(match body {
            MessageBody::Text(_) => {
                Self { id: None, name: None, size: None, content_type: None, kind: None, expires_at: None }
            }
            MessageBody::File(meta) => Self {
                id: Some(id_text(meta.id.as_uuid())),
                name: Some(meta.name.as_str().to_owned()),
                size: Some(to_i64(meta.size)?),
                content_type: Some(meta.content_type.clone()),
                kind: Some(meta.kind.as_str()),
                expires_at: Some(millis(meta.expires_at)),
            },
        })
    }
}

/// Inserts one message; returns 1 when stored, 0 when its id is already there. Only a repeated id
/// is skipped: the same seq under another id is a real inconsistency and fails, rather than
/// silently dropping a message.
pub(crate) fn insert_message(conn: &rusqlite::Connection, message: &Message) -> anyhow::Result<usize> {
    let mut insert = conn.prepare_cached(&format!(
        "INSERT INTO messages ({COLUMNS})
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
         ON CONFLICT (id) DO NOTHING"
    ))?;
    let text = match &message.body {
        MessageBody::Text(text) => Some(text.as_str()),
        MessageBody::File(_) => None,
    };
    let file = FileColumns::of(&message.body)?;
    Ok(insert.execute(params![
        id_text(message.id.as_uuid()),
        id_text(message.room_id.as_uuid()),
        to_i64(message.seq.get())?,
        id_text(message.sender.id.as_uuid()),
        message.sender.username.as_str(),
        message.body.kind().as_str(),
        text,
        file.id,
        file.name,
        file.size,
        file.content_type,
        file.kind,
        file.expires_at,
        millis(message.sent_at),
    ])?)
}

/// The message stored under `id`, if any.
pub(crate) fn message_by_id(conn: &rusqlite::Connection, id: &str) -> anyhow::Result<Option<Message>> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM messages WHERE id = ?1"))?;
    let mut rows = stmt.query(params![id])?;
    rows.next()?.map(message_from_row).transpose()
}

/// Ranges of several rooms as one JSON array for `json_each`: `[[room, after, before, not_before]]`,
/// in order, open bounds saturated. Ids and integers only, so nothing needs escaping.
pub(crate) fn ranges_json(ranges: &[(RoomId, SeqRange)]) -> String {
    let items: Vec<String> = ranges
        .iter()
        .map(|(room, range)| {
            format!(
                "[\"{}\",{},{},{}]",
                id_text(room.as_uuid()),
                range.after.map_or(0, |s| saturating_i64(s.get())),
                range.before.map_or(i64::MAX, |s| saturating_i64(s.get())),
                range.not_before.map_or(i64::MIN, millis),
            )
        })
        .collect();
    format!("[{}]", items.join(","))
}

/// The ranges of `ranges_json` as rows `(i, room, after, before, not_before)`, `i` their position.
pub(crate) const RANGES: &str = "SELECT CAST(key AS INTEGER) AS i, json_extract(value, '$[0]') AS room,
            json_extract(value, '$[1]') AS after, json_extract(value, '$[2]') AS before,
            json_extract(value, '$[3]') AS not_before
     FROM json_each(?1)";

/// How many messages of each range there are, up to `cap`: each count reads at most `cap`
/// entries of the `(room_id, seq)` index, so a room with a large backlog costs no more.
pub(crate) fn count_in(conn: &rusqlite::Connection, json: &str, cap: u64) -> anyhow::Result<Vec<u64>> {
    let mut stmt = conn.prepare_cached(&format!(
        "WITH ranges AS ({RANGES})
         SELECT (SELECT COUNT(*) FROM (
                    SELECT 1 FROM messages m
                    WHERE m.room_id = r.room AND m.seq > r.after AND m.seq < r.before AND m.sent_at >= r.not_before
                    LIMIT ?2))
         FROM ranges r ORDER BY r.i"
    ))?;
    let mut rows = stmt.query(params![json, saturating_i64(cap)])?;
    let mut counts = Vec::new();
    while let Some(row) = rows.next()? {
        counts.push(to_u64(row.get(0)?)?);
    }
    Ok(counts)
}

/// The newest message of each range, if any.
pub(crate) fn newest_in(conn: &rusqlite::Connection, json: &str) -> anyhow::Result<Vec<Option<Message>>> {
    let mut stmt = conn.prepare_cached(&format!(
        "WITH ranges AS ({RANGES})
         SELECT m.* FROM ranges r
         LEFT JOIN messages m ON m.rowid = (
             SELECT n.rowid FROM messages n
             WHERE n.room_id = r.room AND n.seq > r.after AND n.seq < r.before AND n.sent_at >= r.not_before
             ORDER BY n.seq DESC LIMIT 1)
         ORDER BY r.i"
    ))?;
    let mut rows = stmt.query(params![json])?;
    let mut newest = Vec::new();
    while let Some(row) = rows.next()? {
        let found: Option<String> = row.get("id")?;
        newest.push(found.map(|_| message_from_row(row)).transpose()?);
    }
    Ok(newest)
}

/// An FTS5 query that every word must match, each quoted as a phrase: the words hold letters
/// and digits only, so no input reaches FTS5's own syntax.
fn fts_match(search: &MessageSearch) -> String {
    let phrases: Vec<String> = search.query.words().iter().map(|word| format!("\"{word}\"")).collect();
    phrases.join(" ")
}

/// The search statement. The FTS5 index hands out matching rows newest first (highest rowid: rows
/// are inserted as they are committed) and the first `?5` that pass the filters end it, so a word
/// found in every message costs no more than a rare one. `?1` match, `?2` rooms (JSON), `?3`
/// cutoff, `?4` the cursor's message id or null (a cursor whose message is gone ends the search),
/// `?5` limit.
pub(crate) fn search_sql() -> String {
    let columns: Vec<String> = COLUMNS.split(',').map(|column| format!("m.{}", column.trim())).collect();
    format!(
        "SELECT {} FROM messages_fts f JOIN messages m ON m.rowid = f.rowid
         WHERE messages_fts MATCH ?1
           AND (?4 IS NULL OR f.rowid < (SELECT c.rowid FROM messages c WHERE c.id = ?4))
           AND m.room_id IN (SELECT value FROM json_each(?2))
           AND m.sent_at >= ?3
         ORDER BY f.rowid DESC LIMIT ?5",
        columns.join(", ")
    )
}

#[async_trait]
impl MessageArchive for SqliteStore {
    async fn insert_batch(&self, messages: &[Message]) -> anyhow::Result<u64> {
        let messages = messages.to_vec();
        self.run(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut inserted = 0_u64;
            for message in &messages {
                inserted += insert_message(&tx, message)? as u64;
            }
            tx.commit()?;
            Ok(inserted)
        })
        .await
    }

    async fn fetch(&self, room: RoomId, range: SeqRange, take: Take) -> anyhow::Result<Vec<Message>> {
        let after = range.after.map_or(0, |s| saturating_i64(s.get()));
        let before = range.before.map_or(i64::MAX, |s| saturating_i64(s.get()));
        let not_before = range.not_before.map_or(i64::MIN, millis);
        let (order, count) = match take {
            Take::Oldest(n) => ("ASC", n),
            Take::Newest(n) => ("DESC", n),
        };
        let limit = i64::try_from(count).unwrap_or(i64::MAX);
        self.run(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM messages
                 WHERE room_id = ?1 AND seq > ?2 AND seq < ?3 AND sent_at >= ?4
                 ORDER BY seq {order} LIMIT ?5"
            ))?;
            let mut rows = stmt.query(params![id_text(room.as_uuid()), after, before, not_before, limit])?;
            let mut messages = Vec::new();
            while let Some(row) = rows.next()? {
                messages.push(message_from_row(row)?);
            }
            if matches!(take, Take::Newest(_)) {
                messages.reverse();
            }
            Ok(messages)
        })
        .await
    }

    async fn last_seqs(&self) -> anyhow::Result<Vec<(RoomId, Seq)>> {
        self.run(|conn| {
            let mut stmt = conn.prepare_cached("SELECT room_id, MAX(seq) FROM messages GROUP BY room_id")?;
            let mut rows = stmt.query([])?;
            let mut seqs = Vec::new();
            while let Some(row) = rows.next()? {
                seqs.push((parse_id(&row.get::<_, String>(0)?)?, seq_from(row.get(1)?)?));
            }
            Ok(seqs)
        })
        .await
    }

    async fn delete_sent_before(&self, cutoff: Timestamp, limit: u32) -> anyhow::Result<u64> {
        self.run(move |conn| delete_oldest_before(conn, "messages", "sent_at", cutoff, limit)).await
    }

    async fn delete_room(&self, room: RoomId, limit: u32) -> anyhow::Result<u64> {
        self.run(move |conn| {
            let deleted = conn.execute(
                "DELETE FROM messages WHERE id IN (SELECT id FROM messages WHERE room_id = ?1 ORDER BY seq LIMIT ?2)",
                rusqlite::params![id_text(room.as_uuid()), limit],
            )?;
            Ok(deleted as u64)
        })
        .await
    }

    async fn count_in(&self, ranges: &[(RoomId, SeqRange)], cap: u64) -> anyhow::Result<Vec<u64>> {
        let json = ranges_json(ranges);
        self.run(move |conn| count_in(conn, &json, cap)).await
    }

    async fn newest_in(&self, ranges: &[(RoomId, SeqRange)]) -> anyhow::Result<Vec<Option<Message>>> {
        let json = ranges_json(ranges);
        self.run(move |conn| newest_in(conn, &json)).await
    }

    async fn search(&self, search: &MessageSearch) -> Result<Vec<Message>, ArchiveSearchError> {
        let matching = fts_match(search);
        let rooms = json_id_list(search.rooms.iter().map(RoomId::as_uuid));
        let not_before = search.not_before.map_or(i64::MIN, millis);
        let before = search.before.map(|id| id_text(id.as_uuid()));
        let limit = i64::try_from(search.limit).unwrap_or(i64::MAX);
        self.run(move |conn| {
            let mut stmt = conn.prepare_cached(&search_sql())?;
            let mut rows = stmt.query(params![matching, rooms, not_before, before, limit])?;
            let mut messages = Vec::new();
            while let Some(row) = rows.next()? {
                messages.push(message_from_row(row)?);
            }
            Ok::<_, anyhow::Error>(messages)
        })
        .await
        .map_err(ArchiveSearchError::Unknown)
    }
}
