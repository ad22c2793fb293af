//! In-memory adapters: the embedded message log and event bus.
