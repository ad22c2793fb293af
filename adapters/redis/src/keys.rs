//! Key names, laid out for Redis Cluster: every key of a room carries the room in a hash tag, and
//! every per-slot key a tag that hashes to that slot, so each script touches one slot.

use std::sync::OnceLock;

use domain::{RoomId, UserId};

/// Redis Cluster's number of hash slots.
pub(crate) const SLOTS: u16 = 16_384;

/// Builds every key from one prefix, so a deployment or a test owns exactly `prefix*`.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self { prefix: prefix.to_owned() }
    }

    /// The room's last given seq, a plain counter for INCR.
    pub fn seq(&self, room: RoomId) -> String {
        format!("{}room:{{{room}}}:seq", self.prefix)
    }

    /// The hot cache: a sorted set scored by seq whose members are complete message JSON.
    pub fn cache(&self, room: RoomId) -> String {
        format!("{}room:{{{room}}}:cache", self.prefix)
    }

    /// Seqs appended but not yet archived (score and member are the seq); the cache keeps these.
    pub fn pending(&self, room: RoomId) -> String {
        format!("{}room:{{{room}}}:pending", self.prefix)
    }

    /// The message a user's client message id created in the room, while it is remembered.
    pub fn dedupe(&self, room: RoomId, user: UserId, client_msg_id: &str) -> String {
        format!("{}dedupe:{{{room}}}:{user}:{client_msg_id}", self.prefix)
    }

    /// Exists while the counters of the slot's rooms are known: set once they were raised from the
    /// archive, gone when the node serving the slot lost its data, which makes appends there wait
    /// for a recovery.
    pub fn counters(&self, slot: u16) -> String {
        format!("{}log:counters:{{{}}}", self.prefix, slot_tag(slot))
    }

    /// The archive queue of the slot's rooms, read by the `archivers` consumer group.
    pub fn archive(&self, slot: u16) -> String {
        format!("{}archive:{{{}}}", self.prefix, slot_tag(slot))
    }

    /// The slot's entries that failed too often, kept for an operator.
    pub fn dead_letters(&self, slot: u16) -> String {
        format!("{}archive:{{{}}}:dead", self.prefix, slot_tag(slot))
    }

    /// The slots whose archive queue may hold entries: what archivers visit.
    pub fn ready_slots(&self) -> String {
        format!("{}archive:ready", self.prefix)
    }

    /// The slots whose dead-letter stream holds entries.
    pub fn dead_slots(&self) -> String {
        format!("{}archive:dead-slots", self.prefix)
    }
}

/// The slot of a room's keys.
pub(crate) fn room_slot(room: RoomId) -> u16 {
    slot(room.to_string().as_bytes())
}

/// Redis Cluster's hash slot of a tag (the part between braces): CRC16/XMODEM mod 16384.
pub(crate) fn slot(tag: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in tag {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
        }
    }
    crc % SLOTS
}

/// A short tag that hashes to `slot`: the smallest decimal number that does, found once for all
/// slots (about 170 000 CRCs, a few milliseconds).
pub(crate) fn slot_tag(slot: u16) -> u32 {
    static TAGS: OnceLock<Vec<u32>> = OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        let mut tags = vec![u32::MAX; usize::from(SLOTS)];
        let mut missing = usize::from(SLOTS);
        let mut n: u32 = 0;
        while missing > 0 {
            let tag = &mut tags[usize::from(self::slot(n.to_string().as_bytes()))];
            if *tag == u32::MAX {
                *tag = n;
                missing -= 1;
            }
            n += 1;
        }
        tags
    });
    tags[usize::from(slot % SLOTS)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis_cluster() {
        // Values from `CLUSTER KEYSLOT` on Redis 7.
        assert_eq!(slot(b"foo"), 12_182);
        assert_eq!(slot(b"bar"), 5_061);
        assert_eq!(slot(b"123456789"), 0x31C3 % SLOTS);
    }

    #[test]
    fn every_slot_has_a_tag_that_hashes_to_it() {
        for s in 0..SLOTS {
            assert_eq!(slot(slot_tag(s).to_string().as_bytes()), s);
        }
    }

    #[test]
    fn a_rooms_keys_share_one_slot_with_its_slot_keys() {
        let keys = Keys::new("p:");
        let room = RoomId::from_uuid(uuid::Uuid::now_v7());
        let user = UserId::from_uuid(uuid::Uuid::now_v7());
        let s = room_slot(room);
        let tagged = |key: String| {
            let (_, rest) = key.split_once('{').expect("a hash tag");
            slot(rest.split_once('}').expect("a closed hash tag").0.as_bytes())
        };
        for key in [keys.seq(room), keys.cache(room), keys.pending(room), keys.dedupe(room, user, "c")] {
            assert_eq!(tagged(key), s);
        }
        for key in [keys.counters(s), keys.archive(s), keys.dead_letters(s)] {
            assert_eq!(tagged(key), s);
        }
    }
}
