//! The `MessageLog` and `EventBus` contracts as reusable assertions, so the in-memory and the
//! Redis adapters are held to the same behaviour.
//!
//! Each public `async fn` is one behaviour, named as a sentence. It takes a fresh, empty adapter (or,
//! for the bus, a way to open nodes on one fresh backend), arranges its own data, and panics when the
//! adapter breaks the port's contract. It looks only through the port, never at an adapter's storage.
//! An adapter's test suite calls each one anew, e.g. through [`contract_tests!`](crate::contract_tests).

pub mod event_bus;
pub mod message_log;

use domain::{RoomId, Sender, Timestamp, UserId, Username};

/// Declares one `#[tokio::test]` per named contract function of module `$contract`, each called
/// with `$argument`, which is evaluated anew for every test: a reference to a fresh adapter, or a
/// node factory on a fresh backend. Temporaries in it live until the test ends.
#[macro_export]
macro_rules! contract_tests {
    ($contract:path, $argument:expr; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                use $contract as contract;
                contract::$name($argument).await;
            }
        )+
    };
}

/// A deterministic room id; fixture rooms never collide with each other.
pub fn room(n: u128) -> RoomId {
    RoomId::from_uuid(uuid::Uuid::from_u128(1_000 + n))
}

/// A deterministic user who sends messages, named `user{n}`.
pub fn sender(n: u128) -> Sender {
    Sender {
        id: UserId::from_uuid(uuid::Uuid::from_u128(n)),
        username: Username::new(&format!("user{n}")).expect("fixture usernames are valid"),
    }
}

/// The current instant in whole milliseconds, as the application's clock gives it.
pub fn now() -> Timestamp {
    use chrono::SubsecRound;
    chrono::Utc::now().trunc_subsecs(3)
}
