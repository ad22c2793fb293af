//! In-memory adapters: the embedded message log and event bus.

#[cfg(any(test, feature = "contract"))]
pub mod contract;
pub mod event_bus;
pub mod message_log;

#[cfg(test)]
mod tests;

pub use event_bus::InMemoryEventBus;
pub use message_log::InMemoryMessageLog;
