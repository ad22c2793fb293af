//! In-memory adapters: the embedded message log and event bus.

pub mod event_bus;
pub mod message_log;

#[cfg(test)]
mod tests;

pub use event_bus::InMemoryEventBus;
pub use message_log::InMemoryMessageLog;
