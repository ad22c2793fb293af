//! `MessageArchive` on MongoDB: idempotent unordered batch inserts, seq-range reads and purges.

use std::collections::HashSet;

use anyhow::Context;
use application::ports::{ArchiveSearchError, MessageArchive, MessageSearch, SeqRange, Take};
use async_trait::async_trait;
use bson::{doc, Document};
use domain::{
    FileKind, FileMeta, FileName, Message, MessageBody, MessageKind, MessageText, RoomId, Sender, Seq, Timestamp,
    Username,
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
    /// `text`, `image` or `file`, as clients show it.
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    file: Option<AttachmentDoc>,
    sent_at: bson::DateTime,
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

impl MessageDoc {
    fn of(message: &Message) -> anyhow::Result<Self> {
        let (text, file) = match &message.body {
            MessageBody::Text(text) => (Some(text.as_str().to_owned()), None),
            MessageBody::File(meta) => (
                None,
                Some(AttachmentDoc {
                    id: id_text(meta.id.as_uuid()),
                    name: meta.name.as_str().to_owned(),
                    size: to_i64(meta.size)?,
                    content_type: meta.content_type.clone(),
                    kind: meta.kind.as_str().to_owned(),
                    expires_at: date(meta.expires_at),
                }),
            ),
        };
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
        })
    }

    fn body(&self) -> anyhow::Result<MessageBody> {
        if self.kind == MessageKind::Text.as_str() {
            let text = self.text.as_deref().context("a text message has no text")?;
            return Ok(MessageBody::Text(MessageText::new(text).context("stored message text is invalid")?));
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
            body.kind().as_str() == self.kind,
            "message kind {:?} does not match its file kind {:?}",
            self.kind,
            file.kind
        );
        Ok(body)
    }

    fn into_message(self) -> anyhow::Result<Message> {
        let id = &self.id;
        Ok(Message {
            body: self.body().with_context(|| format!("message {id} is corrupt"))?,
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

/// The filter of one room's range, bounds saturated as `fetch` does.
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
        let error = match self.messages().insert_many(&docs).ordered(false).await {
            Ok(inserted) => return Ok(inserted.inserted_ids.len() as u64),
            Err(error) => error,
        };
        let Some(duplicates) = only_duplicates(&error) else {
            return Err(anyhow::Error::new(error).context("archiving a batch of messages"));
        };
        let refused = duplicates
            .iter()
            .map(|e| docs.get(e.index).context("a write error names no message of the batch"))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let skipped = refused.len();
        self.ensure_already_stored(refused).await?;
        Ok((docs.len() - skipped) as u64)
    }

    async fn fetch(&self, room: RoomId, range: SeqRange, take: Take) -> anyhow::Result<Vec<Message>> {
        let (direction, count) = match take {
            Take::Oldest(n) => (1, n),
            Take::Newest(n) => (-1, n),
        };
        if count == 0 {
            return Ok(Vec::new());
        }
        let mut seq = Document::new();
        // Bounds past what BSON holds saturate: no stored seq is that high, so "after" matches
        // nothing and "before" everything, as they would with wider integers.
        if let Some(after) = range.after {
            seq.insert("$gt", saturating_i64(after.get()));
        }
        if let Some(before) = range.before {
            seq.insert("$lt", saturating_i64(before.get()));
        }
        let mut filter = doc! { "room_id": id_text(room.as_uuid()) };
        if !seq.is_empty() {
            filter.insert("seq", seq);
        }
        if let Some(not_before) = range.not_before {
            filter.insert("sent_at", doc! { "$gte": date(not_before) });
        }
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
