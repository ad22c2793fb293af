//! e2e: rooms.
