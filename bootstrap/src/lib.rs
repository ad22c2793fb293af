//! Composition root: configuration, wiring of adapters, and the chat binaries.
