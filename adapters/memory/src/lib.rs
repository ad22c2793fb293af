//! In-memory adapters: the embedded message log, event bus and presence registry.

pub mod event_bus;
pub mod message_log;
pub mod presence;

#[cfg(test)]
mod tests;

pub use event_bus::InMemoryEventBus;
pub use message_log::InMemoryMessageLog;
pub use presence::InMemoryPresence;
