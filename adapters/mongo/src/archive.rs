//! `MessageArchive` on MongoDB: idempotent unordered batch inserts that apply changes, seq-range
//! reads and purges.

use std::collections::{BTreeMap, HashSet};

use anyhow::Context;
use application::ports::{ArchiveSearchError, MessageArchive, MessageSearch, SeqRange, Take};
use async_trait::async_trait;
use bson::{doc, Document};
use domain::{
    Change, Emoji, FileKind, FileMeta, FileName, Message, MessageBody, MessageKind, MessageState, MessageText,
    ReactionMark, RoomId, Sender, Seq, Timestamp, Username,
};
use futures::TryStreamExt;
use mongodb::error::{ErrorKind, IndexedWriteError};
use mongodb::Collection;
use serde::{Deserialize, Serialize};

use crate::codec::{
    date, delete_oldest, id_text, limit, parse_id, saturating_i64, timestamp, to_i64, to_u64, DUPLICATE_KEY,
};
use crate::schema::{is_text_unsupported, MESSAGES};
use crate::MongoStore;

/// How often applying a change to a message is tried while other changes to it keep winning.
const APPLY_ATTEMPTS: usize = 16;

/// A message or a change entry. A change has `target_seq` and no `text`: `text` is only ever the
/// current text of a text message, replaced in place by an edit and removed by a delete, so that
/// anything reading `text` (a text index) sees content only. A deleted message keeps its `kind`
/// and gets `deleted_at`, and loses `text` and `file`.
#[derive(Serialize, Deserialize)]
struct MessageDoc {
    /// The message id: a retried batch collides on it and is skipped.
    #[serde(rename = "_id")]
    id: String,
    room_id: String,
    seq: i64,
    sender_id: String,
    /// Kept so history renders without a user lookup, as the domain's `Sender` does.
    sender_username: String,
    /// `text`, `image` or `file`, as clients show it; `edit`, `delete` or `reaction` for a change.
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    file: Option<AttachmentDoc>,
    sent_at: bson::DateTime,
    /// A change: the seq of the message it changes, and how.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    target_seq: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    edit_text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    emoji: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    added: Option<bool>,
    /// A message: what changes made of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    edited_at: Option<bson::DateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    edit_seq: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    deleted_at: Option<bson::DateTime>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    reactions: Vec<MarkDoc>,
    /// Bumped by every change applied, so two changes of one message never overwrite each other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rev: Option<i64>,
}

#[derive(Serialize, Deserialize)]
struct AttachmentDoc {
    id: String,
    name: String,
    size: i64,
    content_type: String,
    kind: String,
    expires_at: bson::DateTime,
}

/// One user's newest reaction change with one emoji.
#[derive(Serialize, Deserialize)]
struct MarkDoc {
    emoji: String,
    user: String,
    seq: i64,
    added: bool,
}

impl MessageDoc {
    fn of(message: &Message) -> anyhow::Result<Self> {
        let (mut text, mut file) = (None, None);
        let (mut target_seq, mut edit_text, mut emoji, mut added) = (None, None, None, None);
        match &message.body {
            MessageBody::Text(t) => text = Some(t.as_str().to_owned()),
            MessageBody::File(meta) => {
                file = Some(AttachmentDoc {
                    id: id_text(meta.id.as_uuid()),
                    name: meta.name.as_str().to_owned(),
                    size: to_i64(meta.size)?,
                    content_type: meta.content_type.clone(),
                    kind: meta.kind.as_str().to_owned(),
                    expires_at: date(meta.expires_at),
                });
            }
            MessageBody::Removed(_) => {}
            MessageBody::Change(change) => {
                target_seq = Some(to_i64(change.target().get())?);
                match change {
                    Change::Edit { text, .. } => edit_text = Some(text.as_str().to_owned()),
                    Change::Delete { .. } => {}
                    Change::React { emoji: e, added: a, .. } => {
                        emoji = Some(e.as_str().to_owned());
                        added = Some(*a);
                    }
                }
            }
        }
        let state = &message.state;
        Ok(Self {
            id: id_text(message.id.as_uuid()),
            room_id: id_text(message.room_id.as_uuid()),
            seq: to_i64(message.seq.get())?,
            sender_id: id_text(message.sender.id.as_uuid()),
            sender_username: message.sender.username.as_str().to_owned(),
            kind: message.body.kind().as_str().to_owned(),
            text,
            file,
            sent_at: date(message.sent_at),
            target_seq,
            edit_text,
            emoji,
            added,
            edited_at: state.edited_at.map(date),
            edit_seq: state.edit_seq.map(|s| to_i64(s.get())).transpose()?,
            deleted_at: state.deleted_at.map(date),
            reactions: state
                .reactions
                .iter()
                .map(|m| {
                    Ok(MarkDoc {
                        emoji: m.emoji.as_str().to_owned(),
                        user: id_text(m.user.as_uuid()),
                        seq: to_i64(m.seq.get())?,
                        added: m.added,
                    })
                })
                .collect::<anyhow::Result<_>>()?,
            rev: None,
        })
    }

    fn body(&self) -> anyhow::Result<MessageBody> {
        let kind = MessageKind::parse(&self.kind).with_context(|| format!("unknown message kind {:?}", self.kind))?;
        if kind.is_content() && self.deleted_at.is_some() {
            return Ok(MessageBody::Removed(kind));
        }
        let target = || -> anyhow::Result<Seq> { seq_from(self.target_seq.context("a change has no target")?) };
        match kind {
            MessageKind::Text => {
                let text = self.text.as_deref().context("a text message has no text")?;
                return Ok(MessageBody::Text(MessageText::new(text).context("stored message text is invalid")?));
            }
            MessageKind::Edit => {
                let text = self.edit_text.as_deref().context("an edit has no text")?;
                let text = MessageText::new(text).context("stored edit text is invalid")?;
                return Ok(MessageBody::Change(Change::Edit { target: target()?, text }));
            }
            MessageKind::Delete => return Ok(MessageBody::Change(Change::Delete { target: target()? })),
            MessageKind::Reaction => {
                let emoji = Emoji::new(self.emoji.as_deref().context("a reaction has no emoji")?)
                    .context("stored emoji is invalid")?;
                let added = self.added.context("a reaction has no direction")?;
                return Ok(MessageBody::Change(Change::React { target: target()?, emoji, added }));
            }
            MessageKind::Image | MessageKind::File => {}
        }
        let file = self.file.as_ref().context("a file message has no attachment")?;
        let body = MessageBody::File(FileMeta {
            id: parse_id(&file.id)?,
            name: FileName::sanitize(&file.name),
            size: to_u64(file.size)?,
            content_type: file.content_type.clone(),
            kind: FileKind::parse(&file.kind).with_context(|| format!("unknown file kind {:?}", file.kind))?,
            expires_at: timestamp(file.expires_at),
        });
        anyhow::ensure!(
            body.kind() == kind,
            "message kind {:?} does not match its file kind {:?}",
            self.kind,
            file.kind
        );
        Ok(body)
    }

    fn state(&self) -> anyhow::Result<MessageState> {
        Ok(MessageState {
            edited_at: self.edited_at.map(timestamp),
            edit_seq: self.edit_seq.map(seq_from).transpose()?,
            deleted_at: self.deleted_at.map(timestamp),
            reactions: self
                .reactions
                .iter()
                .map(|m| {
                    Ok(ReactionMark {
                        emoji: Emoji::new(&m.emoji).context("stored emoji is invalid")?,
                        user: parse_id(&m.user)?,
                        seq: seq_from(m.seq)?,
                        added: m.added,
                    })
                })
                .collect::<anyhow::Result<_>>()?,
        })
    }

    fn into_message(self) -> anyhow::Result<Message> {
        let id = &self.id;
        Ok(Message {
            body: self.body().with_context(|| format!("message {id} is corrupt"))?,
            state: self.state().with_context(|| format!("message {id} is corrupt"))?,
            id: parse_id(id)?,
            room_id: parse_id(&self.room_id)?,
            seq: seq_from(self.seq)?,
            sender: Sender {
                id: parse_id(&self.sender_id)?,
                username: Username::new(&self.sender_username)
                    .with_context(|| format!("message {id} has an invalid sender name {:?}", self.sender_username))?,
            },
            sent_at: timestamp(self.sent_at),
        })
    }
}

/// The messages of `room` that `range` admits. Bounds past what BSON holds saturate: no stored
/// seq is that high, so "after" matches nothing and "before" everything, as with wider integers.
fn range_filter(room: RoomId, range: &SeqRange) -> Document {
    let mut filter = doc! { "room_id": id_text(room.as_uuid()) };
    let mut seq = Document::new();
    if let Some(after) = range.after {
        seq.insert("$gt", saturating_i64(after.get()));
    }
    if let Some(before) = range.before {
        seq.insert("$lt", saturating_i64(before.get()));
    }
    if !seq.is_empty() {
        filter.insert("seq", seq);
    }
    if let Some(not_before) = range.not_before {
        filter.insert("sent_at", doc! { "$gte": date(not_before) });
    }
    if range.content_only {
        let content: Vec<&str> = MessageKind::CONTENT.iter().map(|k| k.as_str()).collect();
        filter.insert("kind", doc! { "$in": content });
    }
    filter
}

/// What search leaves out besides expiry: deleted messages (a tombstone's `deleted_at`, absent on
/// live ones).
fn not_deleted() -> Document {
    doc! { "deleted_at": null }
}

/// The `$text` query of a search, every word a quoted phrase, so all must occur; the words are
/// letters and digits only, so none reaches the query language.
pub(crate) fn search_filter(search: &MessageSearch) -> Document {
    let phrases: Vec<String> = search.query.words().iter().map(|word| format!("\"{word}\"")).collect();
    let rooms: Vec<String> = search.rooms.iter().map(|r| id_text(r.as_uuid())).collect();
    let mut filter = doc! { "$text": { "$search": phrases.join(" ") }, "room_id": { "$in": rooms } };
    filter.extend(not_deleted());
    if let Some(not_before) = search.not_before {
        filter.insert("sent_at", doc! { "$gte": date(not_before) });
    }
    if let Some(before) = search.before {
        filter.insert("_id", doc! { "$lt": id_text(before.as_uuid()) });
    }
    filter
}

fn seq_from(raw: i64) -> anyhow::Result<Seq> {
    Seq::new(to_u64(raw)?).with_context(|| format!("stored seq {raw} is not positive"))
}

/// The write errors of an unordered `insert_many` when every one of them is a duplicate key and
/// the write concern was met; `None` for any other failure.
fn only_duplicates(error: &mongodb::error::Error) -> Option<&[IndexedWriteError]> {
    let ErrorKind::InsertMany(failure) = error.kind.as_ref() else {
        return None;
    };
    let errors = failure.write_errors.as_deref()?;
    let all_duplicates = failure.write_concern_error.is_none() && errors.iter().all(|e| e.code == DUPLICATE_KEY);
    all_duplicates.then_some(errors)
}

impl MongoStore {
    fn messages(&self) -> Collection<MessageDoc> {
        self.db().collection(MESSAGES)
    }

    /// Applies `change` to the stored message `target` of its room, compare-and-swap on the
    /// message's `rev`, so that changes applied at once by several workers all stick.
    async fn apply_to(&self, target: Seq, change: &Message) -> anyhow::Result<bool> {
        let room = id_text(change.room_id.as_uuid());
        let filter = doc! { "room_id": &room, "seq": to_i64(target.get())? };
        for _ in 0..APPLY_ATTEMPTS {
            let Some(stored) = self.messages().find_one(filter.clone()).await? else { return Ok(false) };
            let rev = stored.rev;
            let mut message = stored.into_message()?;
            if !message.apply(change) {
                return Ok(false);
            }
            let mut replacement = MessageDoc::of(&message)?;
            replacement.rev = Some(rev.unwrap_or(0) + 1);
            let current = match rev {
                Some(rev) => doc! { "_id": &replacement.id, "rev": rev },
                None => doc! { "_id": &replacement.id, "rev": { "$exists": false } },
            };
            if self.messages().replace_one(current, &replacement).await?.matched_count == 1 {
                return Ok(true);
            }
        }
        anyhow::bail!("message {target} of room {room} kept changing while a change was applied to it")
    }

    /// Applies to each message of `messages` the changes to it archived before it was.
    async fn fold_archived_changes(&self, messages: &[&Message]) -> anyhow::Result<()> {
        let mut by_room: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for message in messages {
            by_room.entry(id_text(message.room_id.as_uuid())).or_default().push(to_i64(message.seq.get())?);
        }
        if by_room.is_empty() {
            return Ok(());
        }
        let any_of: Vec<Document> =
            by_room.iter().map(|(room, seqs)| doc! { "room_id": room, "target_seq": { "$in": seqs } }).collect();
        let changes: Vec<MessageDoc> =
            self.messages().find(doc! { "$or": any_of }).sort(doc! { "seq": 1 }).await?.try_collect().await?;
        for change in changes {
            let change = change.into_message()?;
            if let Some(target) = change.body.change().map(Change::target) {
                self.apply_to(target, &change).await?;
            }
        }
        Ok(())
    }

    /// Confirms that every message refused as a duplicate is stored under its own id. A duplicate on
    /// the `(room_id, seq)` index with a new id is a different message claiming a taken seq: a real
    /// inconsistency that must fail the batch rather than silently drop a message.
    ///
    /// The query names the messages' rooms too, so on a collection sharded by `room_id` it goes to
    /// the shards of those rooms only.
    async fn ensure_already_stored(&self, refused: Vec<&MessageDoc>) -> anyhow::Result<()> {
        let rooms: HashSet<&str> = refused.iter().map(|d| d.room_id.as_str()).collect();
        let refused: HashSet<&str> = refused.into_iter().map(|d| d.id.as_str()).collect();
        let stored: Vec<Document> = self
            .messages()
            .clone_with_type::<Document>()
            .find(doc! {
                "room_id": { "$in": rooms.into_iter().collect::<Vec<_>>() },
                "_id": { "$in": refused.iter().collect::<Vec<_>>() },
            })
            .projection(doc! { "_id": 1 })
            .await?
            .try_collect()
            .await?;
        let stored: HashSet<&str> = stored.iter().filter_map(|d| d.get_str("_id").ok()).collect();
        let mut missing: Vec<&&str> = refused.difference(&stored).collect();
        missing.sort();
        anyhow::ensure!(
            missing.is_empty(),
            "archive refused messages {missing:?}: another message already holds their room and seq"
        );
        Ok(())
    }
}

#[async_trait]
impl MessageArchive for MongoStore {
    async fn insert_batch(&self, messages: &[Message]) -> anyhow::Result<u64> {
        if messages.is_empty() {
            return Ok(0);
        }
        let docs = messages.iter().map(MessageDoc::of).collect::<anyhow::Result<Vec<_>>>()?;
        // Unordered, so one message already stored does not stop the rest of the batch.
        let inserted = match self.messages().insert_many(&docs).ordered(false).await {
            Ok(inserted) => inserted.inserted_ids.len() as u64,
            Err(error) => {
                let Some(duplicates) = only_duplicates(&error) else {
                    return Err(anyhow::Error::new(error).context("archiving a batch of messages"));
                };
                let refused = duplicates
                    .iter()
                    .map(|e| docs.get(e.index).context("a write error names no message of the batch"))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let skipped = refused.len();
                self.ensure_already_stored(refused).await?;
                (docs.len() - skipped) as u64
            }
        };
        // Stored first, then applied: a worker archiving a message at the same time as another
        // archives a change to it finds the change, or the other finds the message. Repeats,
        // already stored or not, are applied again: a crash may have come before it was.
        let contents: Vec<&Message> = messages.iter().filter(|m| m.body.change().is_none()).collect();
        self.fold_archived_changes(&contents).await?;
        for change in messages {
            if let Some(target) = change.body.change().map(Change::target) {
                self.apply_to(target, change).await?;
            }
        }
        Ok(inserted)
    }

    async fn apply_change(&self, change: &Message) -> anyhow::Result<bool> {
        match change.body.change() {
            Some(c) => self.apply_to(c.target(), change).await,
            None => Ok(false),
        }
    }

    async fn fetch(&self, room: RoomId, range: SeqRange, take: Take) -> anyhow::Result<Vec<Message>> {
        let (direction, count) = match take {
            Take::Oldest(n) => (1, n),
            Take::Newest(n) => (-1, n),
        };
        if count == 0 {
            return Ok(Vec::new());
        }
        let filter = range_filter(room, &range);
        let docs: Vec<MessageDoc> = self
            .messages()
            .find(filter)
            .sort(doc! { "seq": direction })
            .limit(limit(count))
            .await?
            .try_collect()
            .await?;
        let mut messages = docs.into_iter().map(MessageDoc::into_message).collect::<anyhow::Result<Vec<_>>>()?;
        if matches!(take, Take::Newest(_)) {
            messages.reverse();
        }
        Ok(messages)
    }

    async fn last_seqs(&self) -> anyhow::Result<Vec<(RoomId, Seq)>> {
        let pipeline = [doc! { "$group": { "_id": "$room_id", "seq": { "$max": "$seq" } } }];
        let groups: Vec<Document> = self.messages().aggregate(pipeline).await?.try_collect().await?;
        groups
            .iter()
            .map(|group| {
                let room = group.get_str("_id").context("a last-seq group has no room id")?;
                let seq = group.get_i64("seq").with_context(|| format!("room {room} has no integer last seq"))?;
                Ok((parse_id(room)?, seq_from(seq)?))
            })
            .collect()
    }

    async fn delete_sent_before(&self, cutoff: Timestamp, limit_to: u32) -> anyhow::Result<u64> {
        delete_oldest(&self.messages(), doc! { "sent_at": { "$lt": date(cutoff) } }, "sent_at", limit_to).await
    }

    async fn delete_room(&self, room: RoomId, limit_to: u32) -> anyhow::Result<u64> {
        delete_oldest(&self.messages(), doc! { "room_id": id_text(room.as_uuid()) }, "seq", limit_to).await
    }

    /// One aggregation for every range: MongoDB counts each room's range through the
    /// `(room_id, seq)` index, without the cap (a `$group` cannot stop early); the cap applies after.
    async fn count_in(&self, ranges: &[(RoomId, SeqRange)], cap: u64) -> anyhow::Result<Vec<u64>> {
        if ranges.is_empty() {
            return Ok(Vec::new());
        }
        let branches: Vec<Document> = ranges.iter().map(|(room, range)| range_filter(*room, range)).collect();
        let pipeline =
            [doc! { "$match": { "$or": branches } }, doc! { "$group": { "_id": "$room_id", "n": { "$sum": 1_i64 } } }];
        let groups: Vec<Document> = self.messages().aggregate(pipeline).await?.try_collect().await?;
        let mut counts = std::collections::HashMap::new();
        for group in &groups {
            let room = group.get_str("_id").context("a count has no room id")?;
            let n = match group.get("n") {
                Some(bson::Bson::Int64(n)) => *n,
                Some(bson::Bson::Int32(n)) => i64::from(*n),
                other => anyhow::bail!("room {room} has a count of {other:?}"),
            };
            counts.insert(room.to_owned(), to_u64(n)?);
        }
        Ok(ranges.iter().map(|(room, _)| counts.get(&id_text(room.as_uuid())).copied().unwrap_or(0).min(cap)).collect())
    }

    /// One aggregation for every range: the newest message of each room's range.
    async fn newest_in(&self, ranges: &[(RoomId, SeqRange)]) -> anyhow::Result<Vec<Option<Message>>> {
        if ranges.is_empty() {
            return Ok(Vec::new());
        }
        let branches: Vec<Document> = ranges.iter().map(|(room, range)| range_filter(*room, range)).collect();
        let pipeline = [
            doc! { "$match": { "$or": branches } },
            doc! { "$sort": { "room_id": 1, "seq": -1 } },
            doc! { "$group": { "_id": "$room_id", "newest": { "$first": "$$ROOT" } } },
        ];
        let groups: Vec<Document> = self.messages().aggregate(pipeline).await?.try_collect().await?;
        let mut newest = std::collections::HashMap::new();
        for group in groups {
            let room = group.get_str("_id").context("a newest message has no room id")?.to_owned();
            let message: MessageDoc =
                bson::from_document(group.get_document("newest").context("no newest message")?.clone())?;
            newest.insert(room, message.into_message()?);
        }
        Ok(ranges.iter().map(|(room, _)| newest.remove(&id_text(room.as_uuid()))).collect())
    }

    async fn search(&self, search: &MessageSearch) -> Result<Vec<Message>, ArchiveSearchError> {
        if !self.supports_text_search() {
            return Err(ArchiveSearchError::Unavailable);
        }
        if search.limit == 0 || search.rooms.is_empty() {
            return Ok(Vec::new());
        }
        let found =
            self.messages().find(search_filter(search)).sort(doc! { "_id": -1 }).limit(limit(search.limit)).await;
        let docs: Vec<MessageDoc> = match found {
            Ok(cursor) => cursor.try_collect().await.map_err(anyhow::Error::from)?,
            Err(e) if is_text_unsupported(&e) => return Err(ArchiveSearchError::Unavailable),
            Err(e) => return Err(anyhow::Error::from(e).context("searching messages").into()),
        };
        Ok(docs.into_iter().map(MessageDoc::into_message).collect::<anyhow::Result<Vec<_>>>()?)
    }
}

#[cfg(test)]
mod tests {
    use application::ports::MessageSearch;
    use bson::doc;
    use domain::{MessageId, RoomId, SearchQuery};

    use super::search_filter;

    #[test]
    fn a_search_is_one_text_query_of_quoted_words_bounded_to_the_rooms_the_cutoff_and_the_cursor() {
        let room = RoomId::from_uuid(uuid::Uuid::from_u128(1));
        let before = MessageId::from_uuid(uuid::Uuid::from_u128(9));
        let cutoff = chrono::DateTime::from_timestamp_millis(1_700_000_000_000).expect("in range");
        let search = MessageSearch {
            query: SearchQuery::new("Release \"notes\" $where").expect("valid"),
            rooms: vec![room],
            not_before: Some(cutoff),
            before: Some(before),
            limit: 10,
        };

        let filter = search_filter(&search);

        assert_eq!(
            filter,
            doc! {
                "$text": { "$search": "\"release\" \"notes\" \"where\"" },
                "room_id": { "$in": [room.to_string()] },
                "deleted_at": null,
                "sent_at": { "$gte": bson::DateTime::from_millis(1_700_000_000_000) },
                "_id": { "$lt": before.to_string() },
            }
        );
    }
}
