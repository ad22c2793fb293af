//! The message log on Redis or a Redis Cluster: INCR seqs, a sorted-set hot cache per room, and
//! an archive stream per hash slot, so every step touches one slot.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use application::metrics::Metrics;
use application::ports::{
    AppendError, Appended, DedupeKey, MessageLog, NewMessage, Queued, RoomTail, SeqRange, TailQuery, Take,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::{Message, MessageState, RoomId, Seq, Timestamp};
use futures::{StreamExt, TryStreamExt};
use parking_lot::Mutex;
use redis::{AsyncCommands, RedisError};

use crate::config::RedisConfig;
use crate::connection::RedisConn;
use crate::dto::{decode_message, MessageDto};
use crate::health::RedisHealth;
use crate::keys::{room_slot, Keys, SLOTS};
use crate::retry::once_more;
use crate::scripts::Scripts;
use redis::Script;

/// The consumer group every archiver reads the archive streams through.
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

/// Commands in flight at once when one operation visits many slots.
const SLOT_CONCURRENCY: usize = 256;

/// How often an archiver looks at every slot's queue, in case a process died between appending
/// a slot's first queued message and saying that the slot has work (`ready_slots`).
const SWEEP_EVERY: Duration = Duration::from_secs(300);

/// A `MessageLog` shared by every node, on one Redis or a Redis Cluster.
///
/// Each room's keys and the archive queue of the room's hash slot live in that one slot, so an
/// append is one script, and so is each claim and ack of a slot's queue. Archivers find the slots
/// with work in a set (`ready_slots`) that appends add to when a slot's queue goes from empty to
/// one entry, and that archivers take a slot out of only after seeing its queue empty (checked
/// again after the removal, so a concurrent append is never missed). A process that dies between
/// its append and that add is covered by a sweep of every slot's queue, at start and every
/// `SWEEP_EVERY`.
///
/// Trimming is safe because a message leaves the room's `pending` set only when its stream entry
/// is acknowledged, i.e. after the archive stored it (or when it is dead-lettered, and the
/// dead-letter stream holds it). The trim never removes a seq at or above the lowest pending one,
/// so every message is always in the cache, the archive, or both, and history that merges the two
/// has no holes.
#[derive(Clone)]
pub struct RedisMessageLog {
    /// Reconnects by itself; clones share the multiplexed connections.
    conn: RedisConn,
    keys: Keys,
    /// How many archived messages per room stay readable from the cache.
    cache_per_room: usize,
    /// Idle time after which another consumer's unacknowledged entry may be taken over.
    reclaim_idle: Duration,
    /// Deliveries an entry gets before it is moved to the dead-letter stream.
    max_deliveries: u32,
    /// How long a client message id is remembered.
    dedupe_ttl: Duration,
    /// Replicas that must hold a write before it counts (WAIT), and how long to wait for them.
    min_replicas: u32,
    replica_timeout: Duration,
    scripts: Scripts,
    /// Where each operation's latency goes, once `measured`.
    metrics: Option<Arc<Metrics>>,
    /// Where this process's next claim starts among the ready slots, so workers take them in turn.
    turn: Arc<AtomicUsize>,
    /// When this process last swept every slot's queue; `None` before the first claim.
    swept: Arc<Mutex<Option<Instant>>>,
}

impl RedisMessageLog {
    /// Connects to one Redis or, in cluster mode, to the cluster the seeds of `config.url` lead to.
    ///
    /// # Errors
    /// When the URL is invalid or Redis cannot be reached.
    pub async fn connect(config: RedisConfig) -> anyhow::Result<Self> {
        let conn = RedisConn::open(&config.url, config.mode).await?;
        Ok(Self {
            conn,
            keys: Keys::new(&config.key_prefix),
            cache_per_room: config.cache_per_room,
            reclaim_idle: config.reclaim_idle,
            max_deliveries: config.max_deliveries.max(1),
            dedupe_ttl: config.dedupe_ttl,
            min_replicas: config.min_replicas,
            replica_timeout: config.replica_timeout,
            scripts: Scripts::new(),
            metrics: None,
            turn: Arc::default(),
            swept: Arc::default(),
        })
    }

    /// Reports every operation's latency, retries included, as `store="redis"`.
    #[must_use]
    pub fn measured(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    async fn timed<T>(&self, op: &'static str, call: impl std::future::Future<Output = T>) -> T {
        let started = Instant::now();
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

    /// How many entries sit in the dead-letter streams, for metrics.
    ///
    /// # Errors
    /// Only storage failures.
    pub async fn dead_letter_count(&self) -> anyhow::Result<u64> {
        let slots = self.slots_in(&self.keys.dead_slots()).await?;
        let lengths: Vec<u64> = self
            .each_slot(slots, |mut conn, keys, slot| async move { Ok(conn.xlen(keys.dead_letters(slot)).await?) })
            .await?;
        Ok(lengths.into_iter().sum())
    }

    /// When the oldest message still waiting to be archived was appended, for the archive-lag metric.
    ///
    /// Acknowledged and dead-lettered entries are deleted from the streams, so each one's first
    /// entry is its oldest one not yet archived; its id starts with the append time in milliseconds.
    ///
    /// # Errors
    /// Only storage failures.
    pub async fn oldest_unarchived(&self) -> anyhow::Result<Option<Timestamp>> {
        let slots = self.slots_in(&self.keys.ready_slots()).await?;
        let firsts: Vec<Option<Timestamp>> = self
            .each_slot(slots, |mut conn, keys, slot| async move {
                let first: redis::streams::StreamRangeReply =
                    conn.xrange_count(keys.archive(slot), "-", "+", 1).await?;
                Ok(first.ids.first().and_then(|entry| entry_time(&entry.id)))
            })
            .await?;
        Ok(firsts.into_iter().flatten().min())
    }

    /// The slots listed in the set at `key`.
    async fn slots_in(&self, key: &str) -> anyhow::Result<Vec<u16>> {
        let mut conn = self.conn.clone();
        let members: Vec<u16> = conn.smembers(key).await?;
        Ok(members.into_iter().filter(|s| *s < SLOTS).collect())
    }

    /// Runs `op` for every slot, a bounded number at once, answers in the order of `slots`.
    async fn each_slot<T, F, Fut>(&self, slots: Vec<u16>, op: F) -> anyhow::Result<Vec<T>>
    where
        F: Fn(RedisConn, Keys, u16) -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<T>>,
    {
        futures::stream::iter(slots)
            .map(|slot| op(self.conn.clone(), self.keys.clone(), slot))
            .buffered(SLOT_CONCURRENCY)
            .try_collect()
            .await
    }

    /// Runs `cmd` and, when replicas are required, `WAIT`s for them right after it in one
    /// pipeline: on the same connection to the same node, so the wait covers exactly that node's
    /// writes up to `cmd`'s, even when a failover moves the slot in between. `script` is the one
    /// `cmd` calls by hash, loaded when a node does not know it yet.
    ///
    /// # Errors
    /// `cmd`'s own error, or too few replicas in time; `cmd` may have run then.
    async fn waiting<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd, script: Option<&Script>) -> anyhow::Result<T> {
        let mut pipe = redis::pipe();
        pipe.add_command(cmd.clone());
        if self.min_replicas > 0 {
            let timeout_ms = u64::try_from(self.replica_timeout.as_millis()).unwrap_or(u64::MAX);
            pipe.cmd("WAIT").arg(self.min_replicas).arg(timeout_ms);
        }
        let mut conn = self.conn.clone();
        let replies: Vec<redis::Value> = match pipe.query_async(&mut conn).await {
            Err(e) if e.kind() == redis::ErrorKind::NoScriptError && script.is_some() => {
                if let Some(script) = script {
                    script.prepare_invoke().load_async(&mut conn).await?;
                }
                pipe.query_async(&mut conn).await?
            }
            other => other?,
        };
        let mut replies = replies.into_iter();
        let reply = replies.next().context("no reply to a command")?;
        if let Some(acked) = replies.next() {
            let acked: u32 = redis::from_redis_value(&acked)?;
            anyhow::ensure!(
                acked >= self.min_replicas,
                "only {acked} of {} replicas confirmed the write within {:?}",
                self.min_replicas,
                self.replica_timeout
            );
        }
        Ok(redis::from_redis_value(&reply)?)
    }

    /// Says that `slot`'s queue has entries, so archivers visit it. Waits for replicas like an
    /// append does: a failover that lost this word would leave the slot's queue to the sweep.
    async fn mark_ready(&self, slot: u16) -> anyhow::Result<()> {
        let _added: i64 = self.waiting(redis::cmd("SADD").arg(self.keys.ready_slots()).arg(slot), None).await?;
        Ok(())
    }

    /// Stops visiting `slot`, whose queue was just seen empty. It is removed first and looked at
    /// again after, so an append that filled it meanwhile either sees the removal and adds it back
    /// itself, or is seen here. An empty answer counts only once the slot's node has its replicas
    /// (`WAIT`): a master that came back empty and does not know yet that a replica replaced it
    /// must not make the slot's queue look drained.
    async fn retire(&self, slot: u16) -> anyhow::Result<()> {
        let mut conn = self.conn.clone();
        let _removed: i64 = conn.srem(self.keys.ready_slots(), slot).await?;
        match self.waiting::<u64>(redis::cmd("XLEN").arg(self.keys.archive(slot)), None).await {
            Ok(0) => Ok(()),
            Ok(_) => self.mark_ready(slot).await,
            Err(e) => {
                self.mark_ready(slot).await?;
                Err(e)
            }
        }
    }

    /// Marks every slot with a non-empty queue as ready: the net under a process that died between
    /// an append and its `mark_ready`.
    async fn sweep(&self) -> anyhow::Result<()> {
        let lengths: Vec<u64> =
            self.each_slot((0..SLOTS).collect(), |mut conn, keys, slot| async move {
                Ok(conn.xlen(keys.archive(slot)).await?)
            })
            .await?;
        for (slot, queued) in (0..SLOTS).zip(lengths) {
            if queued > 0 {
                self.mark_ready(slot).await?;
            }
        }
        Ok(())
    }

    async fn sweep_when_due(&self) -> anyhow::Result<()> {
        let due = self.swept.lock().is_none_or(|at| at.elapsed() >= SWEEP_EVERY);
        if due {
            self.sweep().await?;
            *self.swept.lock() = Some(Instant::now());
        }
        Ok(())
    }

    async fn ensure_group(&self, slot: u16) -> anyhow::Result<()> {
        let mut conn = self.conn.clone();
        let created: redis::RedisResult<()> =
            conn.xgroup_create_mkstream(self.keys.archive(slot), ARCHIVE_GROUP, "0").await;
        match created {
            Ok(()) => Ok(()),
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            Err(e) => Err(e).context("cannot create the archive consumer group"),
        }
    }

    /// The claim script on `slot`'s queue; what it hands out is on the replicas before it returns,
    /// or an archiver could store seqs that a failover then hands out again.
    async fn invoke_claim(&self, slot: u16, consumer: &str, max: usize) -> anyhow::Result<ClaimReply> {
        let idle_ms = u64::try_from(self.reclaim_idle.as_millis()).unwrap_or(u64::MAX);
        let mut cmd = evalsha(&self.scripts.claim, &[self.keys.archive(slot), self.keys.dead_letters(slot)]);
        cmd.arg(ARCHIVE_GROUP).arg(consumer).arg(max).arg(idle_ms).arg(self.max_deliveries);
        self.waiting(&cmd, Some(&self.scripts.claim)).await
    }

    /// Moves undecodable entries of `slot` to its dead-letter stream.
    async fn dead_letter(&self, slot: u16, ids: &[&str], reason: &str) -> anyhow::Result<()> {
        let mut conn = self.conn.clone();
        let dropped: Vec<String> = self
            .scripts
            .dead_letter
            .key(self.keys.archive(slot))
            .key(self.keys.dead_letters(slot))
            .arg(ARCHIVE_GROUP)
            .arg(reason)
            .arg(ids)
            .invoke_async(&mut conn)
            .await?;
        self.forget_dead(slot, &dropped).await
    }

    /// After entries of `slot` moved to its dead-letter stream (`{id, deliveries, room, seq}`
    /// quadruples): they are no longer pending in their rooms, and the slot has dead letters.
    async fn forget_dead(&self, slot: u16, dropped: &[String]) -> anyhow::Result<()> {
        if dropped.is_empty() {
            return Ok(());
        }
        let mut by_room: BTreeMap<RoomId, Vec<&str>> = BTreeMap::new();
        for dead in dropped.chunks(4) {
            if let [_, _, room, seq] = dead {
                if let Ok(room) = room.parse::<uuid::Uuid>() {
                    by_room.entry(RoomId::from_uuid(room)).or_default().push(seq);
                }
            }
        }
        let mut conn = self.conn.clone();
        for (room, seqs) in by_room {
            let _removed: i64 = conn.zrem(self.keys.pending(room), seqs).await?;
        }
        let _added: i64 = conn.sadd(self.keys.dead_slots(), slot).await?;
        Ok(())
    }
}

/// A call of `script` by its hash with `keys`; the caller adds the arguments.
fn evalsha(script: &Script, keys: &[String]) -> redis::Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash()).arg(keys.len()).arg(keys);
    cmd
}

/// What the claim script answers: `{id, json, ...}`, `{id, deliveries, room, seq, ...}`, length.
type ClaimReply = (Vec<String>, Vec<String>, u64);

/// A claimed entry's receipt names its slot, its room and its stream entry: `slot/room/entry`.
fn receipt(slot: u16, room: RoomId, entry: &str) -> String {
    format!("{slot}/{room}/{entry}")
}

/// The parts of a receipt this log gave out; anything else is unknown.
fn parse_receipt(receipt: &str) -> Option<(u16, RoomId, &str)> {
    let mut parts = receipt.splitn(3, '/');
    let slot = parts.next()?.parse::<u16>().ok().filter(|s| *s < SLOTS)?;
    let room = RoomId::from_uuid(parts.next()?.parse().ok()?);
    let entry = parts.next()?;
    (is_entry_id(entry) && room_slot(room) == slot).then_some((slot, room, entry))
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

/// Whether `id` is shaped like a stream entry id (`<ms>-<n>`).
fn is_entry_id(id: &str) -> bool {
    id.split_once('-').is_some_and(|(ms, n)| ms.parse::<u64>().is_ok() && n.parse::<u64>().is_ok())
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
        let slot = room_slot(room);
        let dto = MessageDto::unsequenced(message.id, room, &message.sender, &message.body, message.sent_at);
        let json = serde_json::to_string(&dto).context("encoding a message")?;
        let mut keys = vec![
            self.keys.seq(room),
            self.keys.cache(room),
            self.keys.pending(room),
            self.keys.archive(slot),
            self.keys.counters(slot),
        ];
        if let Some(key) = &dedupe {
            keys.push(self.keys.dedupe(room, key.user, key.client_msg_id.as_str()));
        }
        let mut cmd = evalsha(&self.scripts.append, &keys);
        cmd.arg(json).arg(room.to_string()).arg(self.dedupe_ttl.as_secs().max(1)).arg(ARCHIVE_GROUP);
        if let Some(target) = target {
            cmd.arg(target.seq.get()).arg(target.next.get()).arg(&target.before).arg(&target.after);
        }
        // A duplicate waits too: its original's own wait may have failed.
        let (outcome, stored, queued): (i64, String, u64) =
            self.waiting(&cmd, Some(&self.scripts.append)).await.context("appending a message to Redis")?;
        match outcome {
            2 => return Ok(Append::CountersLost),
            3 => return Ok(Append::Moved),
            _ => {}
        }
        // A duplicate says so too: its original may have failed right before it did.
        if queued == 1 || outcome == 0 {
            self.mark_ready(room_slot(room)).await?;
        }
        let message = decode_message(&stored)?;
        Ok(Append::Done(Box::new(if outcome == 1 { Appended::Created(message) } else { Appended::Duplicate(message) })))
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
        self.sweep_when_due().await?;
        let mut slots = self.slots_in(&self.keys.ready_slots()).await?;
        if !slots.is_empty() {
            let start = self.turn.fetch_add(1, Ordering::Relaxed) % slots.len();
            slots.rotate_left(start);
        }
        let mut batch = Vec::new();
        for slot in slots {
            if batch.len() >= max {
                break;
            }
            let before = batch.len();
            let queued = self.claim_slot(slot, consumer, max - batch.len(), &mut batch).await?;
            if batch.len() == before && queued == 0 {
                self.retire(slot).await?;
            }
        }
        Ok(batch)
    }

    /// Claims up to `max` entries of `slot`'s queue into `batch`; returns the queue's length after.
    async fn claim_slot(&self, slot: u16, consumer: &str, max: usize, batch: &mut Vec<Queued>) -> anyhow::Result<u64> {
        let (entries, dropped, queued) = match self.invoke_claim(slot, consumer, max).await {
            Err(e) if e.chain().any(|c| c.downcast_ref::<RedisError>().is_some_and(is_missing_group)) => {
                tracing::warn!(slot, "an archive consumer group is missing (did Redis lose its data?); recreating it");
                self.ensure_group(slot).await?;
                self.invoke_claim(slot, consumer, max).await?
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
        self.forget_dead(slot, &dropped).await?;
        let mut undecodable = Vec::new();
        for pair in entries.chunks(2) {
            if let [entry, json] = pair {
                match decode_message(json) {
                    Ok(message) if room_slot(message.room_id) == slot => {
                        batch.push(Queued { receipt: receipt(slot, message.room_id, entry), message });
                    }
                    Ok(_) | Err(_) => {
                        tracing::error!(entry = %entry, slot, "archive entry cannot be decoded; moved to the dead-letter stream");
                        undecodable.push(entry.as_str());
                    }
                }
            }
        }
        if !undecodable.is_empty() {
            self.dead_letter(slot, &undecodable, "undecodable").await?;
        }
        Ok(queued)
    }

    /// Four reads per room, all in one pipelined round trip: the counter, the lowest and newest
    /// cached entries, and how many cached entries lie past the marker. The cache is not indexed
    /// by `sent_at`, so the count leaves out expired messages only when the newest one expired
    /// (then all have); `newest` is never an expired message.
    async fn tails_once(
        &self,
        rooms: &[TailQuery],
        not_before: Option<Timestamp>,
        cap: u64,
    ) -> anyhow::Result<Vec<RoomTail>> {
        if rooms.is_empty() {
            return Ok(Vec::new());
        }
        // One script per room, all in flight together: a room's keys share a slot, but on a
        // cluster different rooms' do not. The script skips change entries, which take seqs but
        // are no messages to count or show.
        type Reply = (String, String, String, u64);
        let calls: Vec<redis::Cmd> = rooms
            .iter()
            .map(|query| {
                let mut cmd = evalsha(&self.scripts.tails, &[self.keys.seq(query.room), self.keys.cache(query.room)]);
                cmd.arg(query.read.get()).arg(cap);
                cmd
            })
            .collect();
        let replies: Vec<Reply> = futures::stream::iter(calls)
            .map(|cmd| {
                let mut conn = self.conn.clone();
                let script = &self.scripts.tails;
                async move {
                    match cmd.query_async::<Reply>(&mut conn).await {
                        Err(e) if e.kind() == redis::ErrorKind::NoScriptError => {
                            script.prepare_invoke().load_async(&mut conn).await?;
                            Ok(cmd.query_async::<Reply>(&mut conn).await?)
                        }
                        other => other.context("reading the ends of rooms"),
                    }
                }
            })
            .buffered(SLOT_CONCURRENCY)
            .try_collect()
            .await?;
        anyhow::ensure!(replies.len() == rooms.len(), "Redis answered {} of {} rooms", replies.len(), rooms.len());
        let mut tails = Vec::with_capacity(rooms.len());
        for (query, (last, lowest, newest, count)) in rooms.iter().zip(replies) {
            let newest = Some(newest).filter(|json| !json.is_empty()).map(|json| decode_message(&json)).transpose()?;
            let live = newest.filter(|m| not_before.is_none_or(|cutoff| m.sent_at >= cutoff));
            let unread = if live.is_some() { count.min(cap) } else { 0 };
            tails.push(RoomTail {
                room: query.room,
                last_seq: last.parse::<u64>().ok().and_then(Seq::new),
                holds_from: lowest.parse::<u64>().ok().and_then(Seq::new),
                newest: live,
                unread,
            });
        }
        Ok(tails)
    }

    async fn oldest_unarchived_once(&self) -> anyhow::Result<Option<Timestamp>> {
        RedisMessageLog::oldest_unarchived(self).await
    }

    async fn ack_once(&self, receipts: &[String]) -> anyhow::Result<()> {
        let mut by_slot: BTreeMap<u16, Vec<(RoomId, &str)>> = BTreeMap::new();
        for (slot, room, entry) in receipts.iter().filter_map(|r| parse_receipt(r)) {
            by_slot.entry(slot).or_default().push((room, entry));
        }
        for (slot, entries) in by_slot {
            for chunk in entries.chunks(ACK_CHUNK) {
                self.ack_slot(slot, chunk).await?;
            }
        }
        Ok(())
    }

    /// Acknowledges entries of one slot's queue, each with its room.
    async fn ack_slot(&self, slot: u16, entries: &[(RoomId, &str)]) -> anyhow::Result<()> {
        let mut rooms: Vec<RoomId> = entries.iter().map(|(room, _)| *room).collect();
        rooms.sort_unstable();
        rooms.dedup();
        let mut invocation = self.scripts.ack.prepare_invoke();
        invocation.key(self.keys.archive(slot));
        for room in &rooms {
            invocation.key(self.keys.pending(*room)).key(self.keys.cache(*room));
        }
        invocation.arg(ARCHIVE_GROUP).arg(self.cache_per_room).arg(rooms.len());
        for room in &rooms {
            invocation.arg(room.to_string());
        }
        for (room, entry) in entries {
            let k = rooms.binary_search(room).unwrap_or_default() + 1;
            invocation.arg(*entry).arg(k);
        }
        let mut conn = self.conn.clone();
        let acked: redis::RedisResult<(u64, u64)> = invocation.invoke_async(&mut conn).await;
        match acked {
            Ok((_, 0)) => self.retire(slot).await,
            Ok(_) => Ok(()),
            // Without the group nothing is pending, so every receipt is unknown.
            Err(e) if is_missing_group(&e) => {
                tracing::warn!(slot, "acknowledging with no archive consumer group; receipts ignored");
                Ok(())
            }
            Err(e) => Err(e).context("acknowledging archived messages"),
        }
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
        // One marker per slot: on a cluster each node loses its own slots' data, and only appends
        // there must wait for a recovery.
        let at = chrono::Utc::now().timestamp_millis();
        once_more("counters_recovered", || async {
            self.each_slot((0..SLOTS).collect(), |mut conn, keys, slot| async move {
                Ok(conn.set::<_, _, ()>(keys.counters(slot), at).await?)
            })
            .await
            .map(drop)
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

    async fn tails(
        &self,
        rooms: &[TailQuery],
        not_before: Option<Timestamp>,
        cap: u64,
    ) -> anyhow::Result<Vec<RoomTail>> {
        self.timed("tails", once_more("tails", || self.tails_once(rooms, not_before, cap))).await
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
