//! SQLite adapters: users, refresh tokens, rooms, the durable message log and archive, and the file catalog.

mod archive;
mod codec;
mod files;
mod message_log;
mod rooms;
mod schema;
mod store;
mod tokens;
mod users;

#[cfg(test)]
mod tests;

pub use message_log::SqliteMessageLog;
pub use store::{Durability, SqliteStore};
