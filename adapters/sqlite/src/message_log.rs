//! `MessageLog` on SQLite: one writer commits waiting appends in groups, straight into the archive.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use application::ports::{
    AppendError, Appended, DedupeKey, MessageArchive, MessageLog, NewMessage, Queued, RoomTail, SeqRange, TailQuery,
    Take,
};
use async_trait::async_trait;
use domain::{Message, MessageState, RoomId, Seq, Timestamp};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use crate::archive::{insert_entry, message_by_id, message_from_row, ranges_json, RANGES};
use crate::codec::{id_text, millis, saturating_i64, to_i64, to_u64};
use crate::SqliteStore;

/// Appends waiting for the writer; a full queue makes senders wait, so memory stays bounded.
const QUEUE: usize = 4096;
/// The most appends one transaction commits.
const MAX_GROUP: usize = 1024;
/// How often the writer forgets expired client message ids, and how many per statement.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
const PRUNE_BATCH: i64 = 1000;

/// The embedded message log. An append is acknowledged only once its transaction has committed, so
/// it survives the process being killed at any moment after (and, with `Durability::PowerLoss`,
/// a power loss). Messages go straight into the archive table, so the archive is the one copy:
/// nothing is ever queued for an archiver.
///
/// One writer thread commits whatever appends are waiting in one transaction (group commit), so a
/// burst costs one commit, not one per message. Seqs come from `room_seqs`, which only grows: a
/// seq is never given out twice, even after a crash or a retention purge.
#[derive(Clone)]
pub struct SqliteMessageLog {
    store: SqliteStore,
    appends: mpsc::Sender<Append>,
    /// Messages committed since start; each one is archived by being committed.
    committed: Arc<AtomicU64>,
}

struct Append {
    message: NewMessage,
    dedupe: Option<DedupeKey>,
    done: oneshot::Sender<anyhow::Result<Appended>>,
}

impl SqliteMessageLog {
    pub const DEFAULT_DEDUPE_TTL: Duration = Duration::from_secs(24 * 60 * 60);

    /// Starts the writer thread on `store`; it stops when the last clone of the log is dropped.
    ///
    /// # Errors
    /// When the thread cannot be started.
    pub fn start(store: SqliteStore, dedupe_ttl: Duration) -> anyhow::Result<Self> {
        let (appends, queue) = mpsc::channel(QUEUE);
        let committed = Arc::new(AtomicU64::new(0));
        let writer = Writer {
            conn: store.another_connection()?,
            dedupe_ttl,
            pruned_at: Instant::now(),
            committed: committed.clone(),
        };
        std::thread::Builder::new()
            .name("sqlite-log-writer".into())
            .spawn(move || writer.run(queue))
            .context("starting the sqlite message log writer")?;
        Ok(Self { store, appends, committed })
    }

    /// How many new messages this log has committed (and so archived) since it started.
    pub fn committed(&self) -> u64 {
        self.committed.load(Ordering::Relaxed)
    }
}

struct Writer {
    /// The writer's own connection: its commits never hold the store's reads back.
    conn: Connection,
    dedupe_ttl: Duration,
    pruned_at: Instant,
    committed: Arc<AtomicU64>,
}

impl Writer {
    fn run(mut self, mut queue: mpsc::Receiver<Append>) {
        while let Some(first) = queue.blocking_recv() {
            // No waiting for more: a sender's next frame waits for this ack, so lingering only
            // adds latency; whatever queued during the last commit makes the group.
            let mut group = vec![first];
            take_waiting(&mut queue, &mut group);
            self.commit(group);
            if self.pruned_at.elapsed() >= PRUNE_EVERY {
                self.pruned_at = Instant::now();
                if let Err(e) = self.prune_dedupe() {
                    tracing::warn!(error = %format!("{e:#}"), "could not forget expired client message ids");
                }
            }
        }
    }

    fn commit(&mut self, group: Vec<Append>) {
        let requests: Vec<(&NewMessage, Option<&DedupeKey>)> =
            group.iter().map(|a| (&a.message, a.dedupe.as_ref())).collect();
        let outcome = append_group(&mut self.conn, &requests, self.dedupe_ttl);
        match outcome {
            Ok(appended) => {
                let created = appended.iter().filter(|a| matches!(a, Appended::Created(_))).count();
                self.committed.fetch_add(created as u64, Ordering::Relaxed);
                for (append, appended) in group.into_iter().zip(appended) {
                    let _ = append.done.send(Ok(appended));
                }
            }
            // One bad append must not fail the others: commit each alone.
            Err(_) if group.len() > 1 => {
                for append in group {
                    let request = [(&append.message, append.dedupe.as_ref())];
                    let alone = append_group(&mut self.conn, &request, self.dedupe_ttl);
                    if matches!(alone.as_deref(), Ok([Appended::Created(_)])) {
                        self.committed.fetch_add(1, Ordering::Relaxed);
                    }
                    let _ = append.done.send(alone.map(|mut one| one.remove(0)));
                }
            }
            Err(e) => {
                for append in group {
                    let _ = append.done.send(Err(anyhow::anyhow!("{e:#}")));
                }
            }
        }
    }

    fn prune_dedupe(&mut self) -> anyhow::Result<()> {
        let cutoff = millis(chrono::Utc::now()) - ttl_millis(self.dedupe_ttl);
        loop {
            let deleted = self.conn.execute(
                "DELETE FROM message_dedupe WHERE rowid IN (
                     SELECT rowid FROM message_dedupe WHERE created_at < ?1 LIMIT ?2)",
                params![cutoff, PRUNE_BATCH],
            )?;
            if (deleted as i64) < PRUNE_BATCH {
                return Ok(());
            }
        }
    }
}

/// Moves appends already waiting into `group`, up to `MAX_GROUP`.
fn take_waiting(queue: &mut mpsc::Receiver<Append>, group: &mut Vec<Append>) {
    while group.len() < MAX_GROUP {
        match queue.try_recv() {
            Ok(append) => group.push(append),
            Err(_) => return,
        }
    }
}

fn ttl_millis(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)
}

/// Appends every request in one transaction, in order; all or nothing.
fn append_group(
    conn: &mut Connection,
    requests: &[(&NewMessage, Option<&DedupeKey>)],
    dedupe_ttl: Duration,
) -> anyhow::Result<Vec<Appended>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut last: HashMap<RoomId, u64> = HashMap::new();
    let mut appended = Vec::with_capacity(requests.len());
    for (new, dedupe) in requests {
        if let Some(key) = dedupe {
            let remembered_since = millis(new.sent_at).saturating_sub(ttl_millis(dedupe_ttl));
            if let Some(original) = original_of(&tx, key, remembered_since)? {
                appended.push(Appended::Duplicate(original));
                continue;
            }
        }
        let next = match last.get(&new.room_id) {
            Some(seq) => seq + 1,
            None => stored_last_seq(&tx, new.room_id)? + 1,
        };
        last.insert(new.room_id, next);
        let message = Message {
            id: new.id,
            room_id: new.room_id,
            seq: Seq::new(next).context("seqs start at 1")?,
            sender: new.sender.clone(),
            body: new.body.clone(),
            sent_at: new.sent_at,
            state: MessageState::default(),
        };
        // A change is applied to its target in the same transaction.
        anyhow::ensure!(insert_entry(&tx, &message, false)? == 1, "message id {} is already stored", message.id);
        if let Some(key) = dedupe {
            remember(&tx, key, &message)?;
        }
        appended.push(Appended::Created(message));
    }
    for (room, seq) in last {
        raise(&tx, room, seq)?;
    }
    tx.commit()?;
    Ok(appended)
}

/// The room's highest seq ever given out: its counter, or the archive's highest seq should a
/// database written before the counter existed hold more.
fn stored_last_seq(conn: &Connection, room: RoomId) -> anyhow::Result<u64> {
    let last: i64 = conn
        .prepare_cached(
            "SELECT MAX(COALESCE((SELECT last_seq FROM room_seqs WHERE room_id = ?1), 0),
                        COALESCE((SELECT MAX(seq) FROM messages WHERE room_id = ?1), 0))",
        )?
        .query_row(params![id_text(room.as_uuid())], |row| row.get(0))?;
    to_u64(last)
}

fn raise(conn: &Connection, room: RoomId, seq: u64) -> anyhow::Result<()> {
    conn.prepare_cached(
        "INSERT INTO room_seqs (room_id, last_seq) VALUES (?1, ?2)
         ON CONFLICT (room_id) DO UPDATE SET last_seq = MAX(last_seq, excluded.last_seq)",
    )?
    .execute(params![id_text(room.as_uuid()), to_i64(seq)?])?;
    Ok(())
}

/// The message `key` created, if it was remembered at or after `since` (ms) and is still stored.
fn original_of(conn: &Connection, key: &DedupeKey, since: i64) -> anyhow::Result<Option<Message>> {
    let message_id: Option<String> = conn
        .prepare_cached(
            "SELECT message_id FROM message_dedupe
             WHERE user_id = ?1 AND client_msg_id = ?2 AND created_at >= ?3",
        )?
        .query_row(params![id_text(key.user.as_uuid()), key.client_msg_id.as_str(), since], |row| row.get(0))
        .optional()?;
    match message_id {
        Some(id) => message_by_id(conn, &id),
        None => Ok(None),
    }
}

/// Records which message `key` created: its id only, the message itself is in `messages`.
fn remember(conn: &Connection, key: &DedupeKey, message: &Message) -> anyhow::Result<()> {
    conn.prepare_cached(
        "INSERT INTO message_dedupe (user_id, client_msg_id, message_id, created_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (user_id, client_msg_id)
         DO UPDATE SET message_id = excluded.message_id, created_at = excluded.created_at",
    )?
    .execute(params![
        id_text(key.user.as_uuid()),
        key.client_msg_id.as_str(),
        id_text(message.id.as_uuid()),
        millis(message.sent_at)
    ])?;
    Ok(())
}

#[async_trait]
impl MessageLog for SqliteMessageLog {
    async fn append(&self, message: NewMessage, dedupe: Option<DedupeKey>) -> Result<Appended, AppendError> {
        let (done, committed) = oneshot::channel();
        self.appends
            .send(Append { message, dedupe, done })
            .await
            .map_err(|_| anyhow::anyhow!("the sqlite message log writer has stopped"))?;
        Ok(committed.await.context("the sqlite message log writer dropped an append")??)
    }

    async fn counters_recovered(&self) -> anyhow::Result<()> {
        // The counters are committed with the messages: they are never lost.
        Ok(())
    }

    async fn fetch(&self, room: RoomId, range: SeqRange, take: Take) -> anyhow::Result<Vec<Message>> {
        MessageArchive::fetch(&self.store, room, range, take).await
    }

    async fn last_seq(&self, room: RoomId) -> anyhow::Result<Option<Seq>> {
        self.store.run(move |conn| Ok(Seq::new(stored_last_seq(conn, room)?))).await
    }

    async fn raise_seq(&self, room: RoomId, seq: Seq) -> anyhow::Result<()> {
        self.store.run(move |conn| raise(conn, room, seq.get())).await
    }

    async fn forget_room(&self, room: RoomId) -> anyhow::Result<()> {
        // Its messages are the archive's, deleted through it; only the counter is the log's.
        self.store
            .run(move |conn| {
                conn.execute("DELETE FROM room_seqs WHERE room_id = ?1", [id_text(room.as_uuid())])?;
                Ok(())
            })
            .await
    }

    async fn claim_batch(&self, _consumer: &str, _max: usize) -> anyhow::Result<Vec<Queued>> {
        // Every append is already in the archive: there is never anything to hand an archiver.
        Ok(Vec::new())
    }

    async fn ack(&self, _receipts: &[String]) -> anyhow::Result<()> {
        Ok(())
    }

    async fn oldest_unarchived(&self) -> anyhow::Result<Option<Timestamp>> {
        Ok(None)
    }

    async fn dead_lettered(&self) -> anyhow::Result<u64> {
        Ok(0)
    }

    /// Every message is here (the log is the archive): the whole page is one statement, each
    /// room's count and newest message read from the `(room_id, seq)` index.
    async fn tails(
        &self,
        rooms: &[TailQuery],
        not_before: Option<Timestamp>,
        cap: u64,
    ) -> anyhow::Result<Vec<RoomTail>> {
        let unread: Vec<(RoomId, SeqRange)> = rooms
            .iter()
            .map(|q| (q.room, SeqRange { after: Seq::new(q.read.get()), before: None, not_before, content_only: true }))
            .collect();
        let json = ranges_json(&unread);
        let ids: Vec<RoomId> = rooms.iter().map(|q| q.room).collect();
        self.store
            .run(move |conn| {
                let mut stmt = conn.prepare_cached(&format!(
                    "WITH ranges AS ({RANGES})
                     SELECT MAX(COALESCE((SELECT last_seq FROM room_seqs WHERE room_id = r.room), 0),
                                COALESCE((SELECT MAX(seq) FROM messages WHERE room_id = r.room), 0)) AS last_seq,
                            (SELECT COUNT(*) FROM (
                                SELECT 1 FROM messages u
                                WHERE u.room_id = r.room AND u.seq > r.after AND u.sent_at >= r.not_before
                                  AND u.kind IN ('text', 'image', 'file')
                                LIMIT ?2)) AS unread,
                            m.*
                     FROM ranges r
                     LEFT JOIN messages m ON m.rowid = (
                         SELECT n.rowid FROM messages n
                         WHERE n.room_id = r.room AND n.sent_at >= r.not_before
                           AND n.kind IN ('text', 'image', 'file')
                         ORDER BY n.seq DESC LIMIT 1)
                     ORDER BY r.i"
                ))?;
                let mut rows = stmt.query(params![json, saturating_i64(cap)])?;
                let mut tails = Vec::with_capacity(ids.len());
                let mut ids = ids.into_iter();
                while let Some(row) = rows.next()? {
                    let room = ids.next().context("more tails than rooms asked for")?;
                    let last_seq = Seq::new(to_u64(row.get("last_seq")?)?);
                    let found: Option<String> = row.get("id")?;
                    let newest = found.map(|_| message_from_row(row)).transpose()?;
                    let unread = to_u64(row.get("unread")?)?;
                    // The log is the archive: it holds every message there is.
                    tails.push(RoomTail { room, last_seq, holds_from: Some(Seq::FIRST), newest, unread });
                }
                Ok(tails)
            })
            .await
    }
}
