//! This node's cache of who belongs to which room, so a send does not ask the store every time.
//!
//! Only memberships the store confirmed are kept, never the absence of one: a stale entry can
//! only let a removed member through, so every way a membership ends clears its entry.
//!
//! - Removed on this node: `Rooms` clears the entry after the store commits and before it
//!   answers, so once a removal is acknowledged, no send on this node gets through.
//! - Removed on another node: the `MemberLeft` or `RoomDeleted` event clears it when the bus
//!   delivers it; a bus gap (lag, reconnect) clears everything.
//! - An event lost without a gap (its publish failed): the entry is trusted for `max_age` only.
//!
//! So a removed member may still send on another node for at most the bus delay, and never
//! longer than `max_age` after this node last read the membership. Until the bus is followed
//! (`following`), nothing is cached, since events would go unheard.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use domain::{RoomId, Timestamp, UserId};
use parking_lot::Mutex;

use crate::ports::{Clock, Delivery, RoomEvent, RoomRepository};

/// How long an entry is trusted, and how many the cache holds at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    /// The staleness bound when a removal's event is lost without a gap.
    pub max_age: chrono::Duration,
    /// Entries are (room, user) pairs; past this many, the cache starts over empty.
    pub capacity: usize,
}

impl Default for CacheLimits {
    fn default() -> Self {
        Self { max_age: chrono::Duration::seconds(5), capacity: 100_000 }
    }
}

/// Counters for the metrics: how well the cache saves store reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub entries: usize,
    pub hits: u64,
    pub misses: u64,
    /// Times the cache was full and started over.
    pub resets: u64,
}

#[derive(Default)]
struct Entries {
    /// When the store last confirmed each member, by room.
    rooms: HashMap<RoomId, HashMap<UserId, Timestamp>>,
    len: usize,
    /// Bumped by every invalidation: a lookup whose store read began before it must not cache
    /// what it read, which may predate the removal.
    generation: u64,
}

impl Entries {
    fn invalidate(&mut self) {
        self.generation += 1;
    }

    fn forget_member(&mut self, room: RoomId, user: UserId) {
        if let Some(members) = self.rooms.get_mut(&room) {
            if members.remove(&user).is_some() {
                self.len -= 1;
            }
            if members.is_empty() {
                self.rooms.remove(&room);
            }
        }
        self.invalidate();
    }

    fn forget_room(&mut self, room: RoomId) {
        if let Some(members) = self.rooms.remove(&room) {
            self.len -= members.len();
        }
        self.invalidate();
    }

    fn clear(&mut self) {
        self.rooms.clear();
        self.len = 0;
        self.invalidate();
    }
}

/// Memberships of this node's senders, kept fresh by the bus. Cloning shares the cache.
#[derive(Clone)]
pub struct MembershipCache {
    inner: Arc<Inner>,
}

struct Inner {
    rooms: Arc<dyn RoomRepository>,
    clock: Arc<dyn Clock>,
    limits: CacheLimits,
    entries: Mutex<Entries>,
    /// Whether this node hears the bus now; without it, every lookup goes to the store.
    following: AtomicBool,
    hits: AtomicU64,
    misses: AtomicU64,
    resets: AtomicU64,
}

impl MembershipCache {
    pub fn new(rooms: Arc<dyn RoomRepository>, clock: Arc<dyn Clock>, limits: CacheLimits) -> Self {
        Self {
            inner: Arc::new(Inner {
                rooms,
                clock,
                limits,
                entries: Mutex::default(),
                following: AtomicBool::new(false),
                hits: AtomicU64::new(0),
                misses: AtomicU64::new(0),
                resets: AtomicU64::new(0),
            }),
        }
    }

    /// Whether `user` belongs to `room`: from the cache when it knows, else from the store.
    ///
    /// # Errors
    /// Only storage failures.
    pub async fn is_member(&self, room: RoomId, user: UserId) -> anyhow::Result<bool> {
        let inner = &self.inner;
        let following = inner.following.load(Ordering::Acquire);
        let now = inner.clock.now();
        let generation = {
            let entries = inner.entries.lock();
            let checked = entries.rooms.get(&room).and_then(|members| members.get(&user));
            if following && checked.is_some_and(|at| now - *at < inner.limits.max_age) {
                inner.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(true);
            }
            entries.generation
        };
        inner.misses.fetch_add(1, Ordering::Relaxed);
        let member = inner.rooms.is_member(room, user).await?;
        if member && following {
            self.remember(room, user, now, generation);
        }
        Ok(member)
    }

    fn remember(&self, room: RoomId, user: UserId, checked_at: Timestamp, generation: u64) {
        let inner = &self.inner;
        let mut entries = inner.entries.lock();
        // Something was invalidated while the store was read, or the bus was lost meanwhile.
        if entries.generation != generation || !inner.following.load(Ordering::Acquire) {
            return;
        }
        if entries.len >= inner.limits.capacity {
            entries.rooms.clear();
            entries.len = 0;
            inner.resets.fetch_add(1, Ordering::Relaxed);
        }
        if entries.rooms.entry(room).or_default().insert(user, checked_at).is_none() {
            entries.len += 1;
        }
    }

    /// `user` no longer belongs to `room`; called once the store says so.
    pub fn member_left(&self, room: RoomId, user: UserId) {
        self.inner.entries.lock().forget_member(room, user);
    }

    /// `room` is gone; called once the store says so.
    pub fn room_deleted(&self, room: RoomId) {
        self.inner.entries.lock().forget_room(room);
    }

    /// Applies what the bus says. Joins are not needed (only confirmed memberships are kept),
    /// and a late one must not bring back a member removed since.
    pub fn apply(&self, delivery: &Delivery) {
        match delivery {
            Delivery::Event(RoomEvent::MemberLeft { room_id, user }) => self.member_left(*room_id, user.id),
            Delivery::Event(RoomEvent::RoomDeleted { room_id }) => self.room_deleted(*room_id),
            Delivery::Event(_) => {}
            // Removals may have been lost: read every membership again.
            Delivery::Gap => self.inner.entries.lock().clear(),
        }
    }

    /// The bus is followed from now on (true) or no longer (false). Either way, what was cached
    /// may have missed events, so it goes.
    pub fn set_following(&self, following: bool) {
        let mut entries = self.inner.entries.lock();
        self.inner.following.store(following, Ordering::Release);
        entries.clear();
    }

    pub fn stats(&self) -> CacheStats {
        let inner = &self.inner;
        CacheStats {
            entries: inner.entries.lock().len,
            hits: inner.hits.load(Ordering::Relaxed),
            misses: inner.misses.load(Ordering::Relaxed),
            resets: inner.resets.load(Ordering::Relaxed),
        }
    }
}
