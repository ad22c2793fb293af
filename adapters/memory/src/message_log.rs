//! The embedded message log: per-room sequence numbers, a hot cache and an archive queue, all in one process.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::ops::Bound;
use std::time::{Duration, Instant};

use application::ports::{Appended, DedupeKey, MessageLog, NewMessage, Queued, SeqRange, Take};
use async_trait::async_trait;
use domain::{Message, MessageId, RoomId, Seq};
use parking_lot::Mutex;

/// A message log for a single node. Everything sits behind one lock, so each operation is atomic.
pub struct InMemoryMessageLog {
    /// How many of each room's newest messages stay readable once archived.
    cache_per_room: usize,
    /// How long another consumer's claim may sit unacknowledged before it counts as abandoned.
    reclaim_after: Duration,
    /// How long a resend with the same client message id is recognised.
    dedupe_ttl: Duration,
    state: Mutex<State>,
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
            state: Mutex::new(State::default()),
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
    async fn append(&self, message: NewMessage, dedupe: Option<DedupeKey>) -> anyhow::Result<Appended> {
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
        };
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
        let within = log.cache.range((lower, upper)).map(|(_, cached)| &cached.message);
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
    use super::*;
    use domain::{ClientMsgId, MessageBody, MessageText, Sender, UserId, Username};
    use std::sync::Arc;

    fn room(n: u128) -> RoomId {
        RoomId::from_uuid(uuid::Uuid::from_u128(n))
    }

    fn alice() -> Sender {
        Sender { id: UserId::from_uuid(uuid::Uuid::from_u128(1)), username: Username::new("alice").unwrap() }
    }

    fn new_message(room_id: RoomId, text: &str) -> NewMessage {
        NewMessage {
            id: MessageId::from_uuid(uuid::Uuid::now_v7()),
            room_id,
            sender: alice(),
            body: MessageBody::Text(MessageText::new(text).unwrap()),
            sent_at: chrono::Utc::now(),
        }
    }

    fn key(client_msg_id: &str) -> DedupeKey {
        DedupeKey { user: alice().id, client_msg_id: ClientMsgId::new(client_msg_id).unwrap() }
    }

    fn created(appended: Appended) -> Message {
        match appended {
            Appended::Created(message) => message,
            Appended::Duplicate(message) => panic!("expected a new message, got a duplicate of {}", message.seq),
        }
    }

    async fn append_texts(log: &InMemoryMessageLog, room_id: RoomId, count: u64) -> Vec<Message> {
        let mut messages = Vec::new();
        for n in 1..=count {
            messages.push(created(log.append(new_message(room_id, &format!("m{n}")), None).await.unwrap()));
        }
        messages
    }

    fn seqs(messages: &[Message]) -> Vec<u64> {
        messages.iter().map(|m| m.seq.get()).collect()
    }

    fn receipts(batch: &[Queued]) -> Vec<String> {
        batch.iter().map(|q| q.receipt.clone()).collect()
    }

    fn seq(n: u64) -> Seq {
        Seq::new(n).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn seqs_are_strictly_increasing_per_room_under_concurrent_appends() {
        // Arrange
        let log = Arc::new(InMemoryMessageLog::default());
        let (tasks, per_task) = (32, 25);

        // Act
        let handles: Vec<_> = (0..tasks)
            .map(|_| {
                let log = Arc::clone(&log);
                tokio::spawn(async move {
                    let mut mine = Vec::new();
                    for n in 0..per_task {
                        mine.push(created(log.append(new_message(room(1), &format!("m{n}")), None).await.unwrap()).seq);
                    }
                    mine
                })
            })
            .collect();
        let mut all = Vec::new();
        for handle in handles {
            let mine = handle.await.unwrap();
            assert!(mine.windows(2).all(|pair| pair[0] < pair[1]), "one task's seqs went backwards");
            all.extend(mine.into_iter().map(Seq::get));
        }

        // Assert
        all.sort_unstable();
        assert_eq!(all, (1..=tasks * per_task).collect::<Vec<u64>>());
        assert_eq!(log.last_seq(room(1)).await.unwrap(), Some(seq(tasks * per_task)));
    }

    #[tokio::test]
    async fn each_room_counts_its_own_seqs_from_one() {
        let log = InMemoryMessageLog::default();

        let first = append_texts(&log, room(1), 3).await;
        let second = append_texts(&log, room(2), 2).await;

        assert_eq!(seqs(&first), [1, 2, 3]);
        assert_eq!(seqs(&second), [1, 2]);
    }

    #[tokio::test]
    async fn a_duplicate_key_returns_the_original_and_stores_nothing() {
        // Arrange
        let log = InMemoryMessageLog::default();
        let original = created(log.append(new_message(room(1), "hello"), Some(key("c-1"))).await.unwrap());

        // Act
        let resent = log.append(new_message(room(1), "hello again"), Some(key("c-1"))).await.unwrap();

        // Assert
        assert_eq!(resent, Appended::Duplicate(original.clone()));
        assert_eq!(log.last_seq(room(1)).await.unwrap(), Some(seq(1)));
        assert_eq!(log.fetch(room(1), SeqRange::default(), Take::Newest(10)).await.unwrap(), [original]);
        assert_eq!(log.claim_batch("archiver", 10).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_different_key_creates_a_new_message() {
        let log = InMemoryMessageLog::default();
        log.append(new_message(room(1), "one"), Some(key("c-1"))).await.unwrap();

        let second = log.append(new_message(room(1), "two"), Some(key("c-2"))).await.unwrap();

        assert_eq!(created(second).seq, seq(2));
    }

    #[tokio::test]
    async fn a_dedupe_key_is_forgotten_after_its_ttl() {
        // Arrange
        let log = InMemoryMessageLog::default().with_dedupe_ttl(Duration::from_millis(20));
        log.append(new_message(room(1), "hello"), Some(key("c-1"))).await.unwrap();
        tokio::time::sleep(Duration::from_millis(40)).await;

        // Act
        let resent = log.append(new_message(room(1), "hello"), Some(key("c-1"))).await.unwrap();

        // Assert
        assert_eq!(created(resent).seq, seq(2));
    }

    #[tokio::test]
    async fn fetch_newest_returns_the_highest_seqs_in_ascending_order() {
        let log = InMemoryMessageLog::default();
        append_texts(&log, room(1), 10).await;

        let newest = log.fetch(room(1), SeqRange::default(), Take::Newest(3)).await.unwrap();

        assert_eq!(seqs(&newest), [8, 9, 10]);
    }

    #[tokio::test]
    async fn fetch_oldest_returns_the_lowest_seqs_after_the_exclusive_lower_bound() {
        let log = InMemoryMessageLog::default();
        append_texts(&log, room(1), 10).await;

        let range = SeqRange { after: Some(seq(4)), before: None };
        let oldest = log.fetch(room(1), range, Take::Oldest(3)).await.unwrap();

        assert_eq!(seqs(&oldest), [5, 6, 7]);
    }

    #[tokio::test]
    async fn fetch_excludes_both_bounds() {
        let log = InMemoryMessageLog::default();
        append_texts(&log, room(1), 10).await;

        let range = SeqRange { after: Some(seq(3)), before: Some(seq(7)) };
        let newest = log.fetch(room(1), range, Take::Newest(100)).await.unwrap();
        let oldest = log.fetch(room(1), range, Take::Oldest(100)).await.unwrap();

        assert_eq!(seqs(&newest), [4, 5, 6]);
        assert_eq!(seqs(&oldest), [4, 5, 6]);
    }

    #[tokio::test]
    async fn an_empty_or_inverted_range_and_an_unknown_room_return_nothing() {
        let log = InMemoryMessageLog::default();
        append_texts(&log, room(1), 5).await;

        let equal = SeqRange { after: Some(seq(3)), before: Some(seq(3)) };
        let inverted = SeqRange { after: Some(seq(4)), before: Some(seq(2)) };

        assert!(log.fetch(room(1), equal, Take::Oldest(10)).await.unwrap().is_empty());
        assert!(log.fetch(room(1), inverted, Take::Newest(10)).await.unwrap().is_empty());
        assert!(log.fetch(room(2), SeqRange::default(), Take::Newest(10)).await.unwrap().is_empty());
        assert_eq!(log.last_seq(room(2)).await.unwrap(), None);
    }

    #[tokio::test]
    async fn the_oldest_unarchived_message_is_the_first_appended_until_it_is_acked() {
        let log = InMemoryMessageLog::default();
        assert_eq!(log.oldest_unarchived().await.unwrap(), None);
        let appended = append_texts(&log, room(1), 3).await;
        let batch = log.claim_batch("w", 1).await.unwrap();

        assert_eq!(log.oldest_unarchived().await.unwrap(), Some(appended[0].sent_at));
        log.ack(&receipts(&batch)).await.unwrap();
        assert_eq!(log.oldest_unarchived().await.unwrap(), Some(appended[1].sent_at));
    }

    #[tokio::test]
    async fn claims_come_in_append_order_and_at_most_max_at_a_time() {
        let log = InMemoryMessageLog::default();
        let messages = append_texts(&log, room(1), 5).await;

        let first = log.claim_batch("archiver", 3).await.unwrap();

        assert_eq!(first.iter().map(|q| q.message.clone()).collect::<Vec<_>>(), messages[..3]);
    }

    #[tokio::test]
    async fn claimed_but_unacked_messages_are_redelivered_to_the_same_consumer() {
        // Arrange
        let log = InMemoryMessageLog::default();
        append_texts(&log, room(1), 4).await;
        let first = log.claim_batch("archiver-1", 2).await.unwrap();

        // Act: the consumer restarts without having acked
        let again = log.claim_batch("archiver-1", 3).await.unwrap();

        // Assert: its own claims first, then the next new one
        assert_eq!(receipts(&again[..2]), receipts(&first));
        assert_eq!(seqs(&again.iter().map(|q| q.message.clone()).collect::<Vec<_>>()), [1, 2, 3]);
    }

    #[tokio::test]
    async fn a_live_consumers_claims_are_not_handed_to_another() {
        let log = InMemoryMessageLog::default();
        append_texts(&log, room(1), 2).await;
        let first = log.claim_batch("archiver-1", 1).await.unwrap();

        let other = log.claim_batch("archiver-2", 10).await.unwrap();

        assert_eq!(other.len(), 1);
        assert_ne!(other[0].receipt, first[0].receipt);
    }

    #[tokio::test]
    async fn a_dead_consumers_claims_are_reclaimed_after_the_idle_timeout() {
        // Arrange
        let log = InMemoryMessageLog::default().with_reclaim_after(Duration::from_millis(20));
        append_texts(&log, room(1), 3).await;
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
    async fn acked_messages_are_never_claimed_again_and_unknown_receipts_are_ignored() {
        // Arrange
        let log = InMemoryMessageLog::default().with_reclaim_after(Duration::ZERO);
        append_texts(&log, room(1), 2).await;
        let batch = log.claim_batch("archiver", 10).await.unwrap();

        // Act
        let mut acks = receipts(&batch);
        acks.extend(["not-a-receipt".to_owned(), uuid::Uuid::nil().to_string()]);
        log.ack(&acks).await.unwrap();

        // Assert
        assert!(log.claim_batch("archiver", 10).await.unwrap().is_empty());
        assert!(log.claim_batch("another", 10).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn the_cache_never_trims_a_message_that_is_not_archived() {
        // Arrange
        let log = InMemoryMessageLog::new(2);

        // Act
        append_texts(&log, room(1), 5).await;

        // Assert: nothing was archived, so all five are still readable and queued
        let cached = log.fetch(room(1), SeqRange::default(), Take::Oldest(100)).await.unwrap();
        assert_eq!(seqs(&cached), [1, 2, 3, 4, 5]);
        assert_eq!(log.claim_batch("archiver", 100).await.unwrap().len(), 5);
    }

    #[tokio::test]
    async fn archived_messages_beyond_the_cache_size_are_trimmed_oldest_first() {
        // Arrange
        let log = InMemoryMessageLog::new(2);
        append_texts(&log, room(1), 5).await;
        let batch = log.claim_batch("archiver", 100).await.unwrap();

        // Act: archive all but the oldest
        log.ack(&receipts(&batch[1..])).await.unwrap();

        // Assert: the unarchived oldest stays, plus the two newest
        let cached = log.fetch(room(1), SeqRange::default(), Take::Oldest(100)).await.unwrap();
        assert_eq!(seqs(&cached), [1, 4, 5]);
    }

    #[tokio::test]
    async fn raise_seq_makes_the_next_append_follow_the_raised_seq() {
        let log = InMemoryMessageLog::default();
        append_texts(&log, room(1), 2).await;

        log.raise_seq(room(1), seq(41)).await.unwrap();
        let next = created(log.append(new_message(room(1), "after restart"), None).await.unwrap());

        assert_eq!(next.seq, seq(42));
    }

    #[tokio::test]
    async fn raise_seq_never_lowers_the_counter() {
        let log = InMemoryMessageLog::default();
        append_texts(&log, room(1), 5).await;

        log.raise_seq(room(1), seq(2)).await.unwrap();

        assert_eq!(log.last_seq(room(1)).await.unwrap(), Some(seq(5)));
    }
}
