//! MongoDB adapters: users, refresh tokens, rooms and memberships, message archive and file catalog.
