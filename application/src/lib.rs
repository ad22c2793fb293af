//! Chat use cases behind ports: accounts, rooms, messaging, presence, archiving and retention.

pub mod accounts;
pub mod archive;
#[cfg(feature = "contract")]
pub mod contract;
pub mod files;
pub mod membership;
pub mod messaging;
pub mod metrics;
pub mod ports;
pub mod presence;
pub mod rooms;
pub mod search;

pub use accounts::Accounts;
pub use archive::Archiver;
pub use files::Files;
pub use messaging::Messaging;
pub use presence::Presence;
pub use rooms::Rooms;
pub use search::Search;

#[cfg(test)]
mod tests;
