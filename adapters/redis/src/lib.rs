//! Redis adapters: message log on streams with a hot cache, event bus on pub/sub.
//!
//! Key layout, all under the configured prefix `{P}` (default `chat:`). Braces are Redis Cluster
//! hash tags: a room's keys carry the room, and each per-slot key a short tag `{t}` that hashes to
//! that slot (`keys::slot_tag`), so a room's keys and its slot's queue share one slot.
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `{P}room:{room}:seq` | string | the room's last seq (INCR) |
//! | `{P}room:{room}:cache` | sorted set | hot cache: score = seq, member = message JSON with its seq |
//! | `{P}room:{room}:pending` | sorted set | seqs appended but not yet archived; the cache never trims these |
//! | `{P}dedupe:{room}:{user}:{client_msg_id}` | string, TTL | the message that client message id created |
//! | `{P}archive:{t}` | stream | archive queue of the slot's rooms (`room`, `seq`, `msg`), group `archivers` |
//! | `{P}archive:{t}:dead` | stream | the slot's entries delivered too often or undecodable, plus `origin`, `deliveries`, `reason` |
//! | `{P}log:counters:{t}` | string | exists while the slot's counters are known |
//! | `{P}archive:ready` | set | slots whose queue may hold entries |
//! | `{P}archive:dead-slots` | set | slots whose dead-letter stream holds entries |
//! | `{P}online:{user}` | hash, TTL | socket nodes holding the user's sockets → when that word lapses (ms) |
//!
//! Events go over per-room channels `{channel_prefix}room:{room}:events` (sharded on a cluster)
//! and the control channel `{channel_prefix}control:events`; see `event_bus.rs`. Only the
//! archivers' sweep (every slot's
//! queue length, every few minutes) visits keys it was not told of, and it names them: no command
//! here enumerates keys.

mod config;
mod connection;
mod dto;
mod event_bus;
mod health;
mod keys;
mod message_log;
mod presence;
mod retry;
mod scripts;

pub use config::{RedisConfig, RedisMode};
pub use event_bus::RedisEventBus;
pub use health::RedisHealth;
pub use message_log::{RedisMessageLog, ARCHIVE_GROUP, MAX_CLAIM};
pub use presence::{RedisPresence, PRESENCE_TTL};
