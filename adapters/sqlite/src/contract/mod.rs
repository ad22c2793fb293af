//! Port contracts as reusable assertions, so every adapter of a port is held to the same behaviour.
//!
//! Each public `async fn` is one behaviour, named as a sentence. It takes a fresh, empty adapter,
//! arranges its own data, and panics when the adapter breaks the port's contract. An adapter's test
//! suite calls each one with a new store, e.g. through [`contract_tests!`](crate::contract_tests).

pub mod archive;
pub mod files;
pub mod rooms;
pub mod tokens;
pub mod users;

use domain::Timestamp;

/// Declares one `#[tokio::test]` per named contract function of module `$contract`, each run
/// against a new store made by `$fresh`. The value `$fresh` makes must deref to the adapter and
/// may own whatever keeps it alive (a temporary directory, a test database).
#[macro_export]
macro_rules! contract_tests {
    ($contract:path, $fresh:expr; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                use $contract as contract;
                let fresh = $fresh;
                contract::$name(&*fresh).await;
            }
        )+
    };
}

/// An instant `ms` milliseconds after a fixed epoch; whole milliseconds, as the clock produces.
pub fn at(ms: i64) -> Timestamp {
    const BASE_MS: i64 = 1_700_000_000_000;
    chrono::DateTime::from_timestamp_millis(BASE_MS + ms).expect("fixture instants are in range")
}

/// A deterministic id; ids made from larger numbers sort later, like UUIDv7s made later.
pub fn uuid(n: u128) -> uuid::Uuid {
    uuid::Uuid::from_u128(n)
}
