//! MongoDB adapters: users, refresh tokens, rooms and memberships, message archive and file catalog.
//!
//! One [`MongoStore`] implements every storage port on the database named in the URL's path
//! (default `chat`), with write concern `majority`. Ids are lowercase hyphenated UUID strings, so
//! their string order is UUIDv7 creation order; instants are BSON dates (whole milliseconds);
//! counts, sizes and seqs are 64-bit integers.
//!
//! | collection | `_id` | indexes |
//! | --- | --- | --- |
//! | `users` | user id | unique `username_key` (lowercased username) |
//! | `refresh_tokens` | token hash | — |
//! | `revoked_sessions` | session id | — |
//! | `rooms` | room id | `(visibility, _id)` |
//! | `memberships` | server-assigned | unique `(room_id, user_id)`, `(user_id, room_id)` |
//! | `messages` | message id | unique `(room_id, seq)`, `sent_at` |
//! | `files` | file id | `owner_id`, `expires_at`, `(purged_at, expires_at)` |
//!
//! Messages are never embedded in rooms. Writes that span documents (a room and its memberships)
//! run in a transaction when the deployment is a replica set or sharded cluster.

mod archive;
mod codec;
mod files;
mod rooms;
mod schema;
mod store;
mod tokens;
mod users;

pub use store::MongoStore;
