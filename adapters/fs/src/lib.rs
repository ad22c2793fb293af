//! Local-filesystem FileStore: bytes under generated ids inside one storage root.

mod local;

pub use local::LocalFileStore;
