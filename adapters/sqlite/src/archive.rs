//! `MessageArchive` on SQLite: idempotent batch inserts that apply changes, seq-range reads and
//! retention purges.

use anyhow::Context;
use application::ports::{ArchiveSearchError, MessageArchive, MessageSearch, SeqRange, Take};
use async_trait::async_trait;
use domain::{
    Change, Emoji, FileKind, FileMeta, FileName, Message, MessageBody, MessageKind, MessageState, MessageText,
    ReactionMark, RoomId, Sender, Seq, Timestamp, Username,
};
use rusqlite::{params, OptionalExtension, Row, TransactionBehavior};

use crate::codec::{
    delete_oldest_before, id_text, json_id_list, millis, parse_id, saturating_i64, timestamp, to_i64, to_u64,
};
use crate::SqliteStore;

const COLUMNS: &str = "id, room_id, seq, sender_id, sender_username, kind, text,
                       file_id, file_name, file_size, content_type, file_kind, expires_at, sent_at,
                       target_seq, edit_text, emoji, reaction_added, edited_at, edit_seq, deleted_at, reactions";

fn seq_from(raw: i64) -> anyhow::Result<Seq> {
    Seq::new(to_u64(raw)?).with_context(|| format!("stored seq {raw} is not positive"))
}

fn body_from_row(row: &Row<'_>) -> anyhow::Result<MessageBody> {
    let raw_kind: String = row.get("kind")?;
    let kind = MessageKind::parse(&raw_kind).with_context(|| format!("unknown message kind {raw_kind:?}"))?;
    if kind.is_content() && row.get::<_, Option<i64>>("deleted_at")?.is_some() {
        return Ok(MessageBody::Removed(kind));
    }
    let target = || -> anyhow::Result<Seq> {
        seq_from(row.get::<_, Option<i64>>("target_seq")?.context("a change has no target")?)
    };
    match kind {
        MessageKind::Text => {
            let text: String = row.get::<_, Option<String>>("text")?.context("a text message has no text")?;
            return Ok(MessageBody::Text(MessageText::new(&text).context("stored message text is invalid")?));
        }
        MessageKind::Edit => {
            let text: String = row.get::<_, Option<String>>("edit_text")?.context("an edit has no text")?;
            let text = MessageText::new(&text).context("stored edit text is invalid")?;
            return Ok(MessageBody::Change(Change::Edit { target: target()?, text }));
        }
        MessageKind::Delete => return Ok(MessageBody::Change(Change::Delete { target: target()? })),
        MessageKind::Reaction => {
            let emoji: String = row.get::<_, Option<String>>("emoji")?.context("a reaction has no emoji")?;
            let emoji = Emoji::new(&emoji).context("stored emoji is invalid")?;
            let added = row.get::<_, Option<bool>>("reaction_added")?.context("a reaction has no direction")?;
            return Ok(MessageBody::Change(Change::React { target: target()?, emoji, added }));
        }
        MessageKind::Image | MessageKind::File => {}
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
    anyhow::ensure!(body.kind() == kind, "message kind {raw_kind:?} does not match its file kind {file_kind:?}");
    Ok(body)
}

fn optional_timestamp(raw: Option<i64>) -> anyhow::Result<Option<Timestamp>> {
    raw.map(timestamp).transpose()
}

fn state_from_row(row: &Row<'_>) -> anyhow::Result<MessageState> {
    let reactions = match row.get::<_, Option<String>>("reactions")? {
        Some(json) => marks_from_json(&json)?,
        None => Vec::new(),
    };
    Ok(MessageState {
        edited_at: optional_timestamp(row.get("edited_at")?)?,
        edit_seq: row.get::<_, Option<i64>>("edit_seq")?.map(seq_from).transpose()?,
        deleted_at: optional_timestamp(row.get("deleted_at")?)?,
        reactions,
    })
}

/// The reaction marks as a JSON array of `{"emoji", "user", "seq", "added"}`; null when none.
fn marks_to_json(marks: &[ReactionMark]) -> Option<String> {
    if marks.is_empty() {
        return None;
    }
    let array: Vec<serde_json::Value> = marks
        .iter()
        .map(|m| {
            serde_json::json!({
                "emoji": m.emoji.as_str(), "user": id_text(m.user.as_uuid()), "seq": m.seq.get(), "added": m.added,
            })
        })
        .collect();
    Some(serde_json::Value::Array(array).to_string())
}

fn marks_from_json(json: &str) -> anyhow::Result<Vec<ReactionMark>> {
    let array: Vec<serde_json::Value> = serde_json::from_str(json).context("stored reactions are not a JSON array")?;
    array
        .iter()
        .map(|mark| {
            let field = |name: &str| mark.get(name).with_context(|| format!("a stored reaction has no {name}"));
            Ok(ReactionMark {
                emoji: Emoji::new(field("emoji")?.as_str().context("emoji is not a string")?)
                    .context("stored emoji is invalid")?,
                user: parse_id(field("user")?.as_str().context("user is not a string")?)?,
                seq: Seq::new(field("seq")?.as_u64().context("seq is not a number")?).context("seq is 0")?,
                added: field("added")?.as_bool().context("added is not a boolean")?,
            })
        })
        .collect()
}

pub(crate) fn message_from_row(row: &Row<'_>) -> anyhow::Result<Message> {
    let id: String = row.get("id")?;
    let room_id: String = row.get("room_id")?;
    let sender_id: String = row.get("sender_id")?;
    let username: String = row.get("sender_username")?;
    Ok(Message {
        body: body_from_row(row).with_context(|| format!("message {id} is corrupt"))?,
        state: state_from_row(row).with_context(|| format!("message {id} is corrupt"))?,
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

/// The columns of a message's body that may change: text, or the file, both null once deleted.
struct Content {
    text: Option<String>,
    file_id: Option<String>,
    name: Option<String>,
    size: Option<i64>,
    content_type: Option<String>,
    kind: Option<&'static str>,
    expires_at: Option<i64>,
}

impl Content {
    fn of(body: &MessageBody) -> anyhow::Result<Self> {
        let none = Self {
            text: None,
            file_id: None,
            name: None,
            size: None,
            content_type: None,
            kind: None,
            expires_at: None,
        };
        Ok(match body {
            MessageBody::Text(text) => Self { text: Some(text.as_str().to_owned()), ..none },
            MessageBody::File(meta) => Self {
                file_id: Some(id_text(meta.id.as_uuid())),
                name: Some(meta.name.as_str().to_owned()),
                size: Some(to_i64(meta.size)?),
                content_type: Some(meta.content_type.clone()),
                kind: Some(meta.kind.as_str()),
                expires_at: Some(millis(meta.expires_at)),
                ..none
            },
            MessageBody::Removed(_) | MessageBody::Change(_) => none,
        })
    }
}

/// The columns of a change entry, all null for a message.
struct ChangeColumns {
    target: Option<i64>,
    edit_text: Option<String>,
    emoji: Option<String>,
    added: Option<bool>,
}

impl ChangeColumns {
    fn of(body: &MessageBody) -> anyhow::Result<Self> {
        let mut columns = Self { target: None, edit_text: None, emoji: None, added: None };
        if let Some(change) = body.change() {
            columns.target = Some(to_i64(change.target().get())?);
            match change {
                Change::Edit { text, .. } => columns.edit_text = Some(text.as_str().to_owned()),
                Change::Delete { .. } => {}
                Change::React { emoji, added, .. } => {
                    columns.emoji = Some(emoji.as_str().to_owned());
                    columns.added = Some(*added);
                }
            }
        }
        Ok(columns)
    }
}

/// Inserts one entry; returns 1 when stored, 0 when its id is already there. Only a repeated id
/// is skipped: the same seq under another id is a real inconsistency and fails, rather than
/// silently dropping a message.
///
/// A change entry is then applied to its target, new or not. With `fold`, a message new here gets
/// the changes to it already stored applied: an archive may get them first; the log never does.
pub(crate) fn insert_entry(conn: &rusqlite::Connection, message: &Message, fold: bool) -> anyhow::Result<usize> {
    let mut insert = conn.prepare_cached(&format!(
        "INSERT INTO messages ({COLUMNS})
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14,
                 ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22)
         ON CONFLICT (id) DO NOTHING"
    ))?;
    let content = Content::of(&message.body)?;
    let change = ChangeColumns::of(&message.body)?;
    let state = &message.state;
    let inserted = insert.execute(params![
        id_text(message.id.as_uuid()),
        id_text(message.room_id.as_uuid()),
        to_i64(message.seq.get())?,
        id_text(message.sender.id.as_uuid()),
        message.sender.username.as_str(),
        message.body.kind().as_str(),
        content.text,
        content.file_id,
        content.name,
        content.size,
        content.content_type,
        content.kind,
        content.expires_at,
        millis(message.sent_at),
        change.target,
        change.edit_text,
        change.emoji,
        change.added,
        state.edited_at.map(millis),
        state.edit_seq.map(|s| to_i64(s.get())).transpose()?,
        state.deleted_at.map(millis),
        marks_to_json(&state.reactions),
    ])?;
    if message.body.change().is_some() {
        apply_change(conn, message)?;
    } else if fold && inserted == 1 {
        fold_changes(conn, message)?;
    }
    Ok(inserted)
}

/// Applies the change entry to its stored target; true when the target changed.
pub(crate) fn apply_change(conn: &rusqlite::Connection, change: &Message) -> anyhow::Result<bool> {
    let Some(target) = change.body.change().map(Change::target) else { return Ok(false) };
    let mut select = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM messages WHERE room_id = ?1 AND seq = ?2"))?;
    let stored = select
        .query_row(params![id_text(change.room_id.as_uuid()), to_i64(target.get())?], |row| Ok(message_from_row(row)))
        .optional()?
        .transpose()?;
    let Some(mut message) = stored else { return Ok(false) };
    if !message.apply(change) {
        return Ok(false);
    }
    update_state(conn, &message)?;
    Ok(true)
}

/// Applies every stored change to `message`, which was just stored, in seq order.
fn fold_changes(conn: &rusqlite::Connection, message: &Message) -> anyhow::Result<()> {
    let mut select = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM messages WHERE room_id = ?1 AND target_seq = ?2 ORDER BY seq"
    ))?;
    let mut rows = select.query(params![id_text(message.room_id.as_uuid()), to_i64(message.seq.get())?])?;
    let mut folded = message.clone();
    let mut changed = false;
    while let Some(row) = rows.next()? {
        changed |= folded.apply(&message_from_row(row)?);
    }
    if changed {
        update_state(conn, &folded)?;
    }
    Ok(())
}

/// Writes what changes may change of a stored message: its content and its state.
fn update_state(conn: &rusqlite::Connection, message: &Message) -> anyhow::Result<()> {
    let content = Content::of(&message.body)?;
    let state = &message.state;
    conn.prepare_cached(
        "UPDATE messages SET text = ?2, file_id = ?3, file_name = ?4, file_size = ?5, content_type = ?6,
                file_kind = ?7, expires_at = ?8, edited_at = ?9, edit_seq = ?10, deleted_at = ?11, reactions = ?12
         WHERE id = ?1",
    )?
    .execute(params![
        id_text(message.id.as_uuid()),
        content.text,
        content.file_id,
        content.name,
        content.size,
        content.content_type,
        content.kind,
        content.expires_at,
        state.edited_at.map(millis),
        state.edit_seq.map(|s| to_i64(s.get())).transpose()?,
        state.deleted_at.map(millis),
        marks_to_json(&state.reactions),
    ])?;
    Ok(())
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
                      AND m.kind IN ('text', 'image', 'file')
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
              AND n.kind IN ('text', 'image', 'file')
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
                inserted += insert_entry(&tx, message, true)? as u64;
            }
            tx.commit()?;
            Ok(inserted)
        })
        .await
    }

    async fn apply_change(&self, change: &Message) -> anyhow::Result<bool> {
        let change = change.clone();
        self.run(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let changed = apply_change(&tx, &change)?;
            tx.commit()?;
            Ok(changed)
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
                   AND (?6 = 0 OR target_seq IS NULL)
                 ORDER BY seq {order} LIMIT ?5"
            ))?;
            let content_only = range.content_only;
            let mut rows =
                stmt.query(params![id_text(room.as_uuid()), after, before, not_before, limit, content_only])?;
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
