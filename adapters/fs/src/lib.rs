//! Local-filesystem FileStore: bytes under generated ids inside one storage root.
