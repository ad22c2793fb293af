//! The embedded message log: per-room sequence numbers, a hot cache and an archive queue, all in one process.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::ops::Bound;
use std::sync::Arc;
use std::time::{Duration, Instant};

use application::ports::{
    AppendError, Appended, DedupeKey, MessageLog, NewMessage, Queued, RoomTail, SeqRange, TailQuery, Take,
};
use async_trait::async_trait;
use domain::{Message, MessageId, MessageState, RoomId, Seq};
use parking_lot::Mutex;

/// A message log for a single node. Everything sits behind one lock, so each operation is atomic.
/// Clones share the one log.
#[derive(Clone)]
pub struct InMemoryMessageLog {
    /// How many of each room's newest messages stay readable once archived.
    cache_per_room: usize,
    /// How long another consumer's claim may sit unacknowledged before it counts as abandoned.
    reclaim_after: Duration,
    /// How long a resend with the same client message id is recognised.
    dedupe_ttl: Duration,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    rooms: HashMap<RoomId, RoomLog>,
    /// Not yet archived and not handed to any consumer, keyed by ticket so the queue stays FIFO.
    unclaimed: BTreeMap<u64, Message>,
    /// Handed to a consumer and not yet acknowledged, in the same FIFO order.
    claimed: BTreeMap<u64, Claim>,
    /// Where each queued message sits; the receipt a consumer acks with is the message id.
    tickets: HashMap<MessageId, u64>,
    next_ticket: u64,
    dedupe: HashMap<DedupeKey, Message>,
    /// Dedupe keys oldest first, so expired ones are pruned from the front without scanning the map.
    dedupe_order: VecDeque<(Instant, DedupeKey)>,
}

#[derive(Default)]
struct RoomLog {
    last: Option<Seq>,
    cache: BTreeMap<Seq, Cached>,
}

struct Cached {
    message: Message,
    /// Only archived messages may be trimmed: until then the cache is their only copy.
    archived: bool,
}

struct Claim {
    consumer: String,
    /// When the claim was made or renewed, to tell a dead consumer from a busy one.
    at: Instant,
    message: Message,
}

impl InMemoryMessageLog {
    pub const DEFAULT_CACHE_PER_ROOM: usize = 1000;
    pub const DEFAULT_RECLAIM_AFTER: Duration = Duration::from_secs(30);
    pub const DEFAULT_DEDUPE_TTL: Duration = Duration::from_secs(24 * 60 * 60);

    pub fn new(cache_per_room: usize) -> Self {
        Self {
            cache_per_room,
            reclaim_after: Self::DEFAULT_RECLAIM_AFTER,
            dedupe_ttl: Self::DEFAULT_DEDUPE_TTL,
            state: Arc::new(Mutex::new(State::default())),
        }
    }

    /// Sets how long claims of another consumer must be idle before they are handed out again.
    #[must_use]
    pub fn with_reclaim_after(mut self, idle: Duration) -> Self {
        self.reclaim_after = idle;
        self
    }

    /// Sets how long a dedupe key is remembered.
    #[must_use]
    pub fn with_dedupe_ttl(mut self, ttl: Duration) -> Self {
        self.dedupe_ttl = ttl;
        self
    }
}

impl Default for InMemoryMessageLog {
    fn default() -> Self {
        Self::new(Self::DEFAULT_CACHE_PER_ROOM)
    }
}

impl State {
    fn prune_dedupe(&mut self, now: Instant, ttl: Duration) {
        while let Some((inserted, _)) = self.dedupe_order.front() {
            if now.duration_since(*inserted) < ttl {
                break;
            }
            if let Some((_, key)) = self.dedupe_order.pop_front() {
                self.dedupe.remove(&key);
            }
        }
    }
}

impl RoomLog {
    /// Drops archived messages that are not among the `keep` newest; unarchived ones always stay.
    fn trim(&mut self, keep: usize) {
        let excess = self.cache.len().saturating_sub(keep);
        if excess == 0 {
            return;
        }
        let doomed: Vec<Seq> =
            self.cache.iter().take(excess).filter(|(_, cached)| cached.archived).map(|(seq, _)| *seq).collect();
        for seq in doomed {
            self.cache.remove(&seq);
        }
    }
}

fn queued(message: &Message) -> Queued {
    Queued { receipt: message.id.to_string(), message: message.clone() }
}

#[async_trait]
impl MessageLog for InMemoryMessageLog {
    async fn append(&self, message: NewMessage, dedupe: Option<DedupeKey>) -> Result<Appended, AppendError> {
        let now = Instant::now();
        let mut guard = self.state.lock();
        let state = &mut *guard;
        state.prune_dedupe(now, self.dedupe_ttl);
        if let Some(original) = dedupe.as_ref().and_then(|key| state.dedupe.get(key)) {
            return Ok(Appended::Duplicate(original.clone()));
        }

        let room = state.rooms.entry(message.room_id).or_default();
        let seq = room.last.map_or(Seq::FIRST, Seq::next);
        room.last = Some(seq);
        let stored = Message {
            id: message.id,
            room_id: message.room_id,
            seq,
            sender: message.sender,
            body: message.body,
            sent_at: message.sent_at,
            state: MessageState::default(),
        };
        // A change reaches its cached target in the same step, as the port asks.
        if let Some(change) = stored.body.change() {
            if let Some(target) = room.cache.get_mut(&change.target()) {
                target.message.apply(&stored);
            }
        }
        room.cache.insert(seq, Cached { message: stored.clone(), archived: false });
        room.trim(self.cache_per_room);

        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.unclaimed.insert(ticket, stored.clone());
        state.tickets.insert(stored.id, ticket);
        if let Some(key) = dedupe {
            state.dedupe.insert(key.clone(), stored.clone());
            state.dedupe_order.push_back((now, key));
        }
        Ok(Appended::Created(stored))
    }

    async fn counters_recovered(&self) -> anyhow::Result<()> {
        // Counters live as long as the process; they are only ever raised at start-up.
        Ok(())
    }

    async fn fetch(&self, room: RoomId, range: SeqRange, take: Take) -> anyhow::Result<Vec<Message>> {
        // BTreeMap::range panics on an empty exclusive range, and such a range holds nothing anyway.
        if let (Some(after), Some(before)) = (range.after, range.before) {
            if after >= before {
                return Ok(Vec::new());
            }
        }
        let state = self.state.lock();
        let Some(log) = state.rooms.get(&room) else {
            return Ok(Vec::new());
        };
        let lower = range.after.map_or(Bound::Unbounded, Bound::Excluded);
        let upper = range.before.map_or(Bound::Unbounded, Bound::Excluded);
        // Retention and the content-only bound filter while scanning, before `take` counts.
        let within =
            log.cache.range((lower, upper)).map(|(_, cached)| &cached.message).filter(|message| range.admits(message));
        let messages = match take {
            Take::Oldest(n) => within.take(n).cloned().collect(),
            Take::Newest(n) => {
                let mut newest: Vec<Message> = within.rev().take(n).cloned().collect();
                newest.reverse();
                newest
            }
        };
        Ok(messages)
    }

    async fn last_seq(&self, room: RoomId) -> anyhow::Result<Option<Seq>> {
        Ok(self.state.lock().rooms.get(&room).and_then(|log| log.last))
    }

    async fn forget_room(&self, room: RoomId) -> anyhow::Result<()> {
        // Queued entries stay queued, as the port says: the archive decides what they become.
        self.state.lock().rooms.remove(&room);
        Ok(())
    }

    async fn raise_seq(&self, room: RoomId, seq: Seq) -> anyhow::Result<()> {
        let mut state = self.state.lock();
        let log = state.rooms.entry(room).or_default();
        log.last = log.last.max(Some(seq));
        Ok(())
    }

    async fn claim_batch(&self, consumer: &str, max: usize) -> anyhow::Result<Vec<Queued>> {
        let now = Instant::now();
        let mut guard = self.state.lock();
        let state = &mut *guard;
        let mut batch = Vec::new();

        // A consumer that restarted under the same name gets back what it had not acknowledged.
        for claim in state.claimed.values_mut().filter(|claim| claim.consumer == consumer) {
            if batch.len() >= max {
                return Ok(batch);
            }
            claim.at = now;
            batch.push(queued(&claim.message));
        }

        let abandoned = |claim: &&mut Claim| now.duration_since(claim.at) > self.reclaim_after;
        for claim in state.claimed.values_mut().filter(|claim| claim.consumer != consumer).filter(abandoned) {
            if batch.len() >= max {
                return Ok(batch);
            }
            consumer.clone_into(&mut claim.consumer);
            claim.at = now;
            batch.push(queued(&claim.message));
        }

        while batch.len() < max {
            let Some((ticket, message)) = state.unclaimed.pop_first() else {
                break;
            };
            batch.push(queued(&message));
            state.claimed.insert(ticket, Claim { consumer: consumer.to_owned(), at: now, message });
        }
        Ok(batch)
    }

    async fn dead_lettered(&self) -> anyhow::Result<u64> {
        // Nothing is ever set aside here: an entry stays queued until acknowledged.
        Ok(0)
    }

    async fn tails(
        &self,
        rooms: &[TailQuery],
        not_before: Option<domain::Timestamp>,
        cap: u64,
    ) -> anyhow::Result<Vec<RoomTail>> {
        let state = self.state.lock();
        // Change entries take seqs but are no messages to count or show.
        let admitted = |message: &&Message| {
            message.body.change().is_none() && not_before.is_none_or(|cutoff| message.sent_at >= cutoff)
        };
        let tails = rooms
            .iter()
            .map(|query| {
                let Some(log) = state.rooms.get(&query.room) else {
                    return RoomTail { room: query.room, last_seq: None, holds_from: None, newest: None, unread: 0 };
                };
                let lower = Seq::new(query.read.get()).map_or(Bound::Unbounded, Bound::Excluded);
                let unread = log
                    .cache
                    .range((lower, Bound::Unbounded))
                    .map(|(_, cached)| &cached.message)
                    .filter(admitted)
                    .take(usize::try_from(cap).unwrap_or(usize::MAX))
                    .count();
                RoomTail {
                    room: query.room,
                    last_seq: log.last,
                    // The cache keeps every seq from its first on: it only ever trims its oldest.
                    holds_from: log.cache.keys().next().copied(),
                    newest: log.cache.values().rev().map(|cached| &cached.message).find(admitted).cloned(),
                    unread: unread as u64,
                }
            })
            .collect();
        Ok(tails)
    }

    async fn oldest_unarchived(&self) -> anyhow::Result<Option<domain::Timestamp>> {
        let state = self.state.lock();
        // Tickets are handed out in append order, so the lower first ticket of the two queues is the oldest.
        let unclaimed = state.unclaimed.iter().next().map(|(t, m)| (*t, m.sent_at));
        let claimed = state.claimed.iter().next().map(|(t, c)| (*t, c.message.sent_at));
        Ok([unclaimed, claimed].into_iter().flatten().min_by_key(|(ticket, _)| *ticket).map(|(_, at)| at))
    }

    async fn ack(&self, receipts: &[String]) -> anyhow::Result<()> {
        let mut guard = self.state.lock();
        let state = &mut *guard;
        let mut touched = HashSet::new();
        for receipt in receipts {
            let Ok(id) = receipt.parse::<MessageId>() else {
                continue;
            };
            let Some(ticket) = state.tickets.remove(&id) else {
                continue;
            };
            let message = match state.claimed.remove(&ticket) {
                Some(claim) => Some(claim.message),
                None => state.unclaimed.remove(&ticket),
            };
            let Some(message) = message else {
                continue;
            };
            if let Some(cached) = state.rooms.get_mut(&message.room_id).and_then(|log| log.cache.get_mut(&message.seq))
            {
                cached.archived = true;
                touched.insert(message.room_id);
            }
        }
        for room in touched {
            if let Some(log) = state.rooms.get_mut(&room) {
                log.trim(self.cache_per_room);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! What the `MessageLog` contract leaves to the adapter: timeouts and trimming. The contract
    //! itself runs in `crate::tests`.

    use super::*;
    use application::contract::message_log::{dedupe, new_message, seq};
    use application::contract::{room, sender};

    async fn append_texts(log: &InMemoryMessageLog, count: u64) -> Vec<Message> {
        let mut appended = Vec::new();
        for n in 1..=count {
            match log.append(new_message(room(1), &sender(1), &format!("m{n}")), None).await.unwrap() {
                Appended::Created(message) => appended.push(message),
                Appended::Duplicate(_) => panic!("no dedupe key was given"),
            }
        }
        appended
    }

    fn seqs(messages: &[Message]) -> Vec<u64> {
        messages.iter().map(|m| m.seq.get()).collect()
    }

    fn receipts(batch: &[Queued]) -> Vec<String> {
        batch.iter().map(|q| q.receipt.clone()).collect()
    }

    #[tokio::test]
    async fn a_dedupe_key_is_forgotten_after_its_ttl() {
        // Arrange
        let log = InMemoryMessageLog::default().with_dedupe_ttl(Duration::from_millis(20));
        let alice = sender(1);
        log.append(new_message(room(1), &alice, "hello"), Some(dedupe(&alice, "c-1"))).await.unwrap();
        tokio::time::sleep(Duration::from_millis(40)).await;

        // Act
        let resent = log.append(new_message(room(1), &alice, "hello"), Some(dedupe(&alice, "c-1"))).await.unwrap();

        // Assert
        assert!(matches!(resent, Appended::Created(ref m) if m.seq == seq(2)), "{resent:?}");
    }

    #[tokio::test]
    async fn a_dead_consumers_claims_are_reclaimed_after_the_idle_timeout() {
        // Arrange
        let log = InMemoryMessageLog::default().with_reclaim_after(Duration::from_millis(20));
        append_texts(&log, 3).await;
        let abandoned = log.claim_batch("dead", 2).await.unwrap();
        tokio::time::sleep(Duration::from_millis(40)).await;

        // Act
        let taken_over = log.claim_batch("alive", 10).await.unwrap();

        // Assert: the abandoned claims come before the new entry, and now belong to the new consumer
        assert_eq!(receipts(&taken_over[..2]), receipts(&abandoned));
        assert_eq!(taken_over.len(), 3);
        assert!(log.claim_batch("dead", 10).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn archived_messages_beyond_the_cache_size_are_trimmed_oldest_first() {
        // Arrange
        let log = InMemoryMessageLog::new(2);
        append_texts(&log, 5).await;
        let batch = log.claim_batch("archiver", 100).await.unwrap();

        // Act: archive all but the oldest
        log.ack(&receipts(&batch[1..])).await.unwrap();

        // Assert: the unarchived oldest stays, plus the two newest
        let cached = log.fetch(room(1), SeqRange::default(), Take::Oldest(100)).await.unwrap();
        assert_eq!(seqs(&cached), [1, 4, 5]);
    }
}
