//! SQLite adapters: users, refresh tokens, rooms, message archive and file catalog.
