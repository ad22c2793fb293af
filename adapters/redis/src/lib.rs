//! Redis adapters: message log on streams with a hot cache, event bus on pub/sub.
