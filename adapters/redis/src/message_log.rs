//! The message log on Redis: INCR seqs, a sorted-set hot cache per room, and one archive stream.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use application::metrics::Metrics;
use application::ports::{AppendError, Appended, DedupeKey, MessageLog, NewMessage, Queued, SeqRange, Take};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::{Message, MessageState, RoomId, Seq, Timestamp};
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, RedisError};

use crate::config::RedisConfig;
use crate::connection;
use crate::dto::{decode_message, MessageDto};
use crate::health::RedisHealth;
use crate::keys::Keys;
use crate::retry::once_more;
use crate::scripts::Scripts;

/// The consumer group every archiver reads the archive stream through.
pub const ARCHIVE_GROUP: &str = "archivers";

/// The most entries one claim hands out, whatever is asked; keeps each script call short.
pub const MAX_CLAIM: usize = 10_000;

/// Receipts acknowledged per script call, so one huge ack never blocks Redis for long.
const ACK_CHUNK: usize = 500;

/// The fewest cached messages read per command when some may have expired, so that skipping
/// expired ones rarely takes another round trip.
const FETCH_CHUNK_MIN: usize = 100;
/// The most cached messages read per command, so a huge `take` is never one huge reply.
const FETCH_CHUNK_MAX: usize = 1_000;

/// A `MessageLog` shared by every node: each operation is one Lua script or one read command, but
/// a fetch that must skip expired cached messages may take a few reads.
///
/// Trimming is safe because a message leaves the room's `pending` set only when its stream entry
/// is acknowledged, i.e. after the archive stored it (or when it is dead-lettered, and the
/// dead-letter stream holds it). The trim never removes a seq at or above the lowest pending one,
/// so every message is always in the cache, the archive, or both, and history that merges the two
/// has no holes.
#[derive(Clone)]
pub struct RedisMessageLog {
    /// Reconnects by itself; clones share the one multiplexed connection.
    conn: ConnectionManager,
    keys: Keys,
    /// How many archived messages per room stay readable from the cache.
    cache_per_room: usize,
    /// Idle time after which another consumer's unacknowledged entry may be taken over.
    reclaim_idle: Duration,
    /// Deliveries an entry gets before it is moved to the dead-letter stream.
    max_deliveries: u32,
    /// How long a client message id is remembered.
    dedupe_ttl: Duration,
    scripts: Scripts,
    /// Where each operation's latency goes, once `measured`.
    metrics: Option<Arc<Metrics>>,
}

impl RedisMessageLog {
    /// Connects, and creates the archive stream and its consumer group if they are missing.
    ///
    /// # Errors
    /// When the URL is invalid or Redis cannot be reached.
    pub async fn connect(config: RedisConfig) -> anyhow::Result<Self> {
        let client = connection::client(&config.url)?;
        let conn = connection::manager(&client).await?;
        let log = Self {
            conn,
            keys: Keys::new(&config.key_prefix),
            cache_per_room: config.cache_per_room,
            reclaim_idle: config.reclaim_idle,
            max_deliveries: config.max_deliveries.max(1),
            dedupe_ttl: config.dedupe_ttl,
            scripts: Scripts::new(),
            metrics: None,
        };
        log.ensure_group().await?;
        Ok(log)
    }

    /// Reports every operation's latency, retries included, as `store="redis"`.
    #[must_use]
    pub fn measured(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    async fn timed<T>(&self, op: &'static str, call: impl std::future::Future<Output = T>) -> T {
        let started = std::time::Instant::now();
        let out = call.await;
        if let Some(metrics) = &self.metrics {
            metrics.store_call("redis", op, started.elapsed());
        }
        out
    }

    /// A readiness check on the same connection.
    pub fn health(&self) -> RedisHealth {
        RedisHealth::new(self.conn.clone())
    }

    /// How many entries sit in the dead-letter stream, for metrics.
    ///
    /// # Errors
    /// Only storage failures.
    pub async fn dead_letter_count(&self) -> anyhow::Result<u64> {
        let mut conn = self.conn.clone();
        Ok(conn.xlen(self.keys.dead_letters()).await?)
    }

    /// When the oldest message still waiting to be archived was appended, for the archive-lag metric.
    ///
    /// Acknowledged and dead-lettered entries are deleted from the stream, so its first entry is
    /// the oldest one not yet archived; its id starts with the append time in milliseconds.
    ///
    /// # Errors
    /// Only storage failures.
    pub async fn oldest_unarchived(&self) -> anyhow::Result<Option<Timestamp>> {
        let mut conn = self.conn.clone();
        let first: redis::streams::StreamRangeReply = conn.xrange_count(self.keys.archive(), "-", "+", 1).await?;
        Ok(first.ids.first().and_then(|entry| entry_time(&entry.id)))
    }

    async fn ensure_group(&self) -> anyhow::Result<()> {
        let mut conn = self.conn.clone();
        let created: redis::RedisResult<()> =
            conn.xgroup_create_mkstream(self.keys.archive(), ARCHIVE_GROUP, "0").await;
        match created {
            Ok(()) => Ok(()),
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            Err(e) => Err(e).context("cannot create the archive consumer group"),
        }
    }

    async fn invoke_claim(&self, consumer: &str, max: usize) -> redis::RedisResult<(Vec<String>, Vec<String>)> {
        let mut conn = self.conn.clone();
        let idle_ms = u64::try_from(self.reclaim_idle.as_millis()).unwrap_or(u64::MAX);
        self.scripts
            .claim
            .key(self.keys.archive())
            .key(self.keys.dead_letters())
            .arg(ARCHIVE_GROUP)
            .arg(consumer)
            .arg(max)
            .arg(idle_ms)
            .arg(self.max_deliveries)
            .arg(self.keys.prefix())
            .invoke_async(&mut conn)
            .await
    }

    async fn dead_letter(&self, ids: &[&str], reason: &str) -> anyhow::Result<()> {
        let mut conn = self.conn.clone();
        let _moved: u64 = self
            .scripts
            .dead_letter
            .key(self.keys.archive())
            .key(self.keys.dead_letters())
            .arg(ARCHIVE_GROUP)
            .arg(self.keys.prefix())
            .arg(reason)
            .arg(ids)
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }
}

/// How often a change is tried while other appends keep moving its target or the room's seq on.
const CHANGE_ATTEMPTS: usize = 50;

/// A change's cached target: as read, and as the change leaves it when it gets the seq `next`.
struct ChangedTarget {
    seq: Seq,
    next: Seq,
    before: String,
    after: String,
}

/// What one run of the append script did.
enum Append {
    Done(Box<Appended>),
    CountersLost,
    /// The change's target or the room's seq moved on since they were read: nothing was stored.
    Moved,
}

/// The consumer group (or the whole stream) is gone, e.g. after Redis restarted without its data.
fn is_missing_group(e: &RedisError) -> bool {
    e.code() == Some("NOGROUP") || e.to_string().contains("NOGROUP")
}

/// Whether `receipt` is shaped like a stream entry id (`<ms>-<n>`); anything else is unknown.
fn is_entry_id(receipt: &str) -> bool {
    receipt.split_once('-').is_some_and(|(ms, n)| ms.parse::<u64>().is_ok() && n.parse::<u64>().is_ok())
}

fn entry_time(id: &str) -> Option<Timestamp> {
    let ms = id.split_once('-')?.0.parse::<i64>().ok()?;
    DateTime::<Utc>::from_timestamp_millis(ms)
}

/// An exclusive score bound: `(n`, or the open end.
fn bound(seq: Option<Seq>, open: &str) -> String {
    seq.map_or_else(|| open.to_owned(), |s| format!("({}", s.get()))
}

/// Single attempts; the `MessageLog` impl below retries the ones that are safe to repeat.
impl RedisMessageLog {
    /// `None` when the counters are lost: nothing was stored. A change whose cached target moved
    /// on while it was applied is tried again, against the target as it is then.
    async fn append_once(&self, message: NewMessage, dedupe: Option<DedupeKey>) -> anyhow::Result<Option<Appended>> {
        for _ in 0..CHANGE_ATTEMPTS {
            let target = match message.body.change() {
                Some(change) => self.changed_target(&message, change.target()).await?,
                None => None,
            };
            match self.append_with(&message, dedupe.as_ref(), target.as_ref()).await? {
                Append::Done(appended) => return Ok(Some(*appended)),
                Append::CountersLost => return Ok(None),
                Append::Moved => continue,
            }
        }
        anyhow::bail!("the message a change applies to kept changing in the cache; giving up")
    }

    /// The cached target of a change, and what the change makes of it should it get the room's
    /// next seq; `None` when the target is not cached or the change leaves it as it is.
    async fn changed_target(&self, message: &NewMessage, target: Seq) -> anyhow::Result<Option<ChangedTarget>> {
        let room = message.room_id;
        let mut conn = self.conn.clone();
        let (cached, last): (Vec<String>, Option<u64>) = redis::pipe()
            .atomic()
            .cmd("ZRANGEBYSCORE")
            .arg(self.keys.cache(room))
            .arg(target.get())
            .arg(target.get())
            .get(self.keys.seq(room))
            .query_async(&mut conn)
            .await
            .context("reading the target of a change")?;
        let Some(before) = cached.into_iter().next() else { return Ok(None) };
        let next = Seq::new(last.unwrap_or(0) + 1).context("seqs start at 1")?;
        let change = Message {
            id: message.id,
            room_id: room,
            seq: next,
            sender: message.sender.clone(),
            body: message.body.clone(),
            sent_at: message.sent_at,
            state: MessageState::default(),
        };
        let mut changed = decode_message(&before)?;
        if !changed.apply(&change) {
            return Ok(None);
        }
        let after = serde_json::to_string(&MessageDto::from_message(&changed)).context("encoding a message")?;
        Ok(Some(ChangedTarget { seq: target, next, before, after }))
    }

    async fn append_with(
        &self,
        message: &NewMessage,
        dedupe: Option<&DedupeKey>,
        target: Option<&ChangedTarget>,
    ) -> anyhow::Result<Append> {
        let room = message.room_id;
        let dto = MessageDto::unsequenced(message.id, room, &message.sender, &message.body, message.sent_at);
        let json = serde_json::to_string(&dto).context("encoding a message")?;
        let mut invocation = self.scripts.append.prepare_invoke();
        invocation
            .key(self.keys.seq(room))
            .key(self.keys.cache(room))
            .key(self.keys.pending(room))
            .key(self.keys.archive())
            .key(self.keys.counters());
        if let Some(key) = &dedupe {
            invocation.key(self.keys.dedupe(key.user, key.client_msg_id.as_str()));
        }
        invocation.arg(json).arg(room.to_string()).arg(self.dedupe_ttl.as_secs().max(1));
        if let Some(target) = target {
            invocation.arg(target.seq.get()).arg(target.next.get()).arg(&target.before).arg(&target.after);
        }
        let mut conn = self.conn.clone();
        let (outcome, stored): (i64, String) =
            invocation.invoke_async(&mut conn).await.context("appending a message to Redis")?;
        Ok(match outcome {
            1 => Append::Done(Box::new(Appended::Created(decode_message(&stored)?))),
            0 => Append::Done(Box::new(Appended::Duplicate(decode_message(&stored)?))),
            3 => Append::Moved,
            _ => Append::CountersLost,
        })
    }

    async fn fetch_once(&self, room: RoomId, range: SeqRange, take: Take) -> anyhow::Result<Vec<Message>> {
        let (limit, newest) = match take {
            Take::Oldest(n) => (n, false),
            Take::Newest(n) => (n, true),
        };
        let mut messages = Vec::new();
        // Seq bounds are score bounds, but `sent_at` and the kind sit inside the JSON: retention
        // and the content-only bound filter here,
        // chunk by chunk, until `take` is met or the range is exhausted. Each chunk starts past the
        // last seq seen, not at an offset, so a trim between chunks cannot shift one past a
        // message; whatever a trim removes is already in the archive, which is read after this.
        let mut range = range;
        while messages.len() < limit {
            let wanted = limit - messages.len();
            let chunk = if range.not_before.is_some() || range.content_only {
                // Some of what is read may have expired, or be changes: read ahead rather than
                // one more time.
                wanted.clamp(FETCH_CHUNK_MIN, FETCH_CHUNK_MAX)
            } else {
                wanted.min(FETCH_CHUNK_MAX)
            };
            let raw = self.cache_range(room, range, newest, chunk).await?;
            let exhausted = raw.len() < chunk;
            for json in &raw {
                let message = decode_message(json)?;
                // Within the seq bounds, as read: admitted unless expired or, when asked, a change.
                let admitted = range.admits(&message);
                if newest {
                    range.before = Some(message.seq);
                } else {
                    range.after = Some(message.seq);
                }
                if admitted {
                    messages.push(message);
                    if messages.len() == limit {
                        break;
                    }
                }
            }
            if exhausted {
                break;
            }
        }
        if newest {
            messages.reverse();
        }
        Ok(messages)
    }

    /// Up to `count` cached messages of `room` within the seq bounds of `range`, as stored: from
    /// the lowest seq up, or with `newest` from the highest down.
    async fn cache_range(
        &self,
        room: RoomId,
        range: SeqRange,
        newest: bool,
        count: usize,
    ) -> anyhow::Result<Vec<String>> {
        let (min, max) = (bound(range.after, "-inf"), bound(range.before, "+inf"));
        let mut command = if newest {
            let mut c = redis::cmd("ZREVRANGEBYSCORE");
            c.arg(self.keys.cache(room)).arg(max).arg(min);
            c
        } else {
            let mut c = redis::cmd("ZRANGEBYSCORE");
            c.arg(self.keys.cache(room)).arg(min).arg(max);
            c
        };
        command.arg("LIMIT").arg(0).arg(i64::try_from(count).unwrap_or(i64::MAX));
        let mut conn = self.conn.clone();
        command.query_async(&mut conn).await.context("reading the message cache")
    }

    async fn last_seq_once(&self, room: RoomId) -> anyhow::Result<Option<Seq>> {
        let mut conn = self.conn.clone();
        let last: Option<u64> = conn.get(self.keys.seq(room)).await?;
        Ok(last.and_then(Seq::new))
    }

    async fn raise_seq_once(&self, room: RoomId, seq: Seq) -> anyhow::Result<()> {
        let mut conn = self.conn.clone();
        let _raised: i64 =
            self.scripts.raise_seq.key(self.keys.seq(room)).arg(seq.get()).invoke_async(&mut conn).await?;
        Ok(())
    }

    async fn claim_batch_once(&self, consumer: &str, max: usize) -> anyhow::Result<Vec<Queued>> {
        let max = max.min(MAX_CLAIM);
        if max == 0 {
            return Ok(Vec::new());
        }
        let (entries, dropped) = match self.invoke_claim(consumer, max).await {
            Err(e) if is_missing_group(&e) => {
                tracing::warn!("the archive consumer group is missing (did Redis lose its data?); recreating it");
                self.ensure_group().await?;
                self.invoke_claim(consumer, max).await?
            }
            other => other?,
        };
        for dead in dropped.chunks(4) {
            if let [entry, deliveries, room, seq] = dead {
                tracing::error!(
                    entry = %entry, deliveries = %deliveries, room_id = %room, seq = %seq,
                    "archive entry delivered too often; moved to the dead-letter stream"
                );
            }
        }
        let mut batch = Vec::with_capacity(entries.len() / 2);
        let mut undecodable = Vec::new();
        for pair in entries.chunks(2) {
            if let [receipt, json] = pair {
                match decode_message(json) {
                    Ok(message) => batch.push(Queued { receipt: receipt.clone(), message }),
                    Err(e) => {
                        tracing::error!(
                            entry = %receipt, error = %format!("{e:#}"),
                            "archive entry cannot be decoded; moved to the dead-letter stream"
                        );
                        undecodable.push(receipt.as_str());
                    }
                }
            }
        }
        if !undecodable.is_empty() {
            self.dead_letter(&undecodable, "undecodable").await?;
        }
        Ok(batch)
    }

    async fn oldest_unarchived_once(&self) -> anyhow::Result<Option<Timestamp>> {
        RedisMessageLog::oldest_unarchived(self).await
    }

    async fn ack_once(&self, receipts: &[String]) -> anyhow::Result<()> {
        let ids: Vec<&str> = receipts.iter().map(String::as_str).filter(|r| is_entry_id(r)).collect();
        let mut conn = self.conn.clone();
        for chunk in ids.chunks(ACK_CHUNK) {
            let acked: redis::RedisResult<u64> = self
                .scripts
                .ack
                .key(self.keys.archive())
                .arg(ARCHIVE_GROUP)
                .arg(self.keys.prefix())
                .arg(self.cache_per_room)
                .arg(chunk)
                .invoke_async(&mut conn)
                .await;
            match acked {
                Ok(_) => {}
                // Without the group nothing is pending, so every receipt is unknown.
                Err(e) if is_missing_group(&e) => {
                    tracing::warn!("acknowledging with no archive consumer group; receipts ignored");
                    return Ok(());
                }
                Err(e) => return Err(e).context("acknowledging archived messages"),
            }
        }
        Ok(())
    }
}

#[async_trait]
impl MessageLog for RedisMessageLog {
    async fn append(&self, message: NewMessage, dedupe: Option<DedupeKey>) -> Result<Appended, AppendError> {
        // A lost reply could hide a stored message; only a keyed append answers a repeat with the original.
        let appended = self
            .timed("append", async {
                match dedupe {
                    Some(_) => once_more("append", || self.append_once(message.clone(), dedupe.clone())).await,
                    None => self.append_once(message, dedupe).await,
                }
            })
            .await?;
        appended.ok_or(AppendError::CountersLost)
    }

    async fn counters_recovered(&self) -> anyhow::Result<()> {
        once_more("counters_recovered", || async {
            let mut conn = self.conn.clone();
            let at = chrono::Utc::now().timestamp_millis();
            Ok(conn.set::<_, _, ()>(self.keys.counters(), at).await?)
        })
        .await
    }

    async fn fetch(&self, room: RoomId, range: SeqRange, take: Take) -> anyhow::Result<Vec<Message>> {
        self.timed("fetch", once_more("fetch", || self.fetch_once(room, range, take))).await
    }

    async fn last_seq(&self, room: RoomId) -> anyhow::Result<Option<Seq>> {
        self.timed("last_seq", once_more("last_seq", || self.last_seq_once(room))).await
    }

    async fn forget_room(&self, room: RoomId) -> anyhow::Result<()> {
        let keys = [self.keys.seq(room), self.keys.cache(room), self.keys.pending(room)];
        once_more("forget_room", || async {
            let mut conn = self.conn.clone();
            let _deleted: i64 = conn.del(&keys).await?;
            Ok(())
        })
        .await
    }

    async fn raise_seq(&self, room: RoomId, seq: Seq) -> anyhow::Result<()> {
        self.timed("raise_seq", once_more("raise_seq", || self.raise_seq_once(room, seq))).await
    }

    async fn claim_batch(&self, consumer: &str, max: usize) -> anyhow::Result<Vec<Queued>> {
        // A repeat first re-reads this consumer's own pending entries, so a lost reply loses nothing.
        self.timed("claim_batch", once_more("claim_batch", || self.claim_batch_once(consumer, max))).await
    }

    async fn dead_lettered(&self) -> anyhow::Result<u64> {
        self.timed("dead_lettered", once_more("dead_lettered", || self.dead_letter_count())).await
    }

    async fn oldest_unarchived(&self) -> anyhow::Result<Option<Timestamp>> {
        self.timed("oldest_unarchived", once_more("oldest_unarchived", || self.oldest_unarchived_once())).await
    }

    async fn ack(&self, receipts: &[String]) -> anyhow::Result<()> {
        self.timed("ack", once_more("ack", || self.ack_once(receipts))).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_stream_entry_ids_are_receipts() {
        assert!(is_entry_id("1700000000000-0"));
        assert!(is_entry_id("1-12"));
        assert!(!is_entry_id(""));
        assert!(!is_entry_id("garbage"));
        assert!(!is_entry_id("1-"));
        assert!(!is_entry_id("-1"));
        assert!(!is_entry_id("1-2-3"));
        assert!(!is_entry_id("+"));
    }

    #[test]
    fn bounds_are_exclusive_or_open() {
        assert_eq!(bound(Seq::new(5), "-inf"), "(5");
        assert_eq!(bound(None, "+inf"), "+inf");
    }

    #[test]
    fn an_entry_id_starts_with_its_append_time() {
        let at = entry_time("1700000000123-4").expect("valid id");
        assert_eq!(at.timestamp_millis(), 1_700_000_000_123);
        assert_eq!(entry_time("nonsense"), None);
    }
}
