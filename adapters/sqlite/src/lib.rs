//! SQLite adapters: users, refresh tokens, rooms, message archive and file catalog.

mod archive;
mod codec;
mod files;
mod rooms;
mod schema;
mod store;
mod tokens;
mod users;

#[cfg(any(test, feature = "contract"))]
pub mod contract;

#[cfg(test)]
mod tests;

pub use store::SqliteStore;
