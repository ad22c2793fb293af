//! Redis adapters: message log on streams with a hot cache, event bus on pub/sub.
//!
//! Key layout, all under the configured prefix `{P}` (default `chat:`):
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `{P}room:{room}:seq` | string | the room's last seq (INCR) |
//! | `{P}room:{room}:cache` | sorted set | hot cache: score = seq, member = message JSON with its seq |
//! | `{P}room:{room}:pending` | sorted set | seqs appended but not yet archived; the cache never trims these |
//! | `{P}archive` | stream | archive queue of all rooms (`room`, `seq`, `msg`), group `archivers` |
//! | `{P}archive:dead` | stream | entries delivered too often or undecodable, plus `origin`, `deliveries`, `reason` |
//! | `{P}dedupe:{user}:{client_msg_id}` | string, TTL | the message that client message id created |
//! | `{P}online:{user}` | hash, TTL | socket nodes holding the user's sockets → when that word lapses (ms) |
//!
//! Events go over the channel `{channel_prefix}events`. No command here enumerates keys.

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

pub use config::RedisConfig;
pub use event_bus::RedisEventBus;
pub use health::RedisHealth;
pub use message_log::{RedisMessageLog, ARCHIVE_GROUP, MAX_CLAIM};
pub use presence::{RedisPresence, PRESENCE_TTL};
