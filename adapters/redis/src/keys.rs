//! Key names. The Lua scripts derive a room's keys from the prefix the same way; see `scripts.rs`.

use domain::{RoomId, UserId};

/// Builds every key from one prefix, so a deployment or a test owns exactly `prefix*`.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self { prefix: prefix.to_owned() }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The room's last given seq, a plain counter for INCR.
    pub fn seq(&self, room: RoomId) -> String {
        format!("{}room:{room}:seq", self.prefix)
    }

    /// The hot cache: a sorted set scored by seq whose members are complete message JSON.
    pub fn cache(&self, room: RoomId) -> String {
        format!("{}room:{room}:cache", self.prefix)
    }

    /// Seqs appended but not yet archived (score and member are the seq); the cache keeps these.
    pub fn pending(&self, room: RoomId) -> String {
        format!("{}room:{room}:pending", self.prefix)
    }

    /// Exists while every room's counter is known: set once they were raised from the archive,
    /// gone when Redis loses its data, which makes appends wait for a recovery.
    pub fn counters(&self) -> String {
        format!("{}log:counters", self.prefix)
    }

    /// The archive queue of every room, read by the `archivers` consumer group.
    pub fn archive(&self) -> String {
        format!("{}archive", self.prefix)
    }

    /// Entries that failed too often, kept for an operator.
    pub fn dead_letters(&self) -> String {
        format!("{}archive:dead", self.prefix)
    }

    /// The message a user's client message id created, while it is remembered.
    pub fn dedupe(&self, user: UserId, client_msg_id: &str) -> String {
        format!("{}dedupe:{user}:{client_msg_id}", self.prefix)
    }
}
