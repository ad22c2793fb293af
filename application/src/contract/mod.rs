//! Port contracts as reusable assertions, so every adapter of a port is held to the same behaviour.
//!
//! Each public `async fn` is one behaviour, named as a sentence. It takes a fresh, empty adapter
//! (or, for the bus, a way to open nodes on one fresh backend), arranges its own data, and panics
//! when the adapter breaks the port's contract. It looks only through the port, never at an
//! adapter's storage.
//!
//! Each suite has one macro that names all of its behaviours, e.g. [`message_log_contract!`]. An
//! adapter passes it the macro that declares one test (its own, or [`contract_tests!`]), so a
//! behaviour added to a suite runs against every adapter without any adapter listing it.

pub mod archive;
pub mod event_bus;
pub mod files;
pub mod message_log;
pub mod presence;
pub mod rooms;
pub mod search;
pub mod tokens;
pub mod users;

use domain::{RoomId, Sender, Timestamp, UserId, Username};

/// Declares one `#[tokio::test]` per named behaviour of suite `$contract`, each called with
/// `$argument`, evaluated anew for every test: a reference to a fresh adapter (`&*TestDb::new()`),
/// or a node factory on a fresh backend. Temporaries in it live until the test ends. Used as the
/// `$generate` of the suite macros: `application::users_contract!(contract_tests!(&*TestDb::new()))`.
#[macro_export]
macro_rules! contract_tests {
    ($argument:expr; $contract:path; $($name:ident),+ $(,)?) => {
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

/// An instant `ms` milliseconds after a fixed epoch; whole milliseconds, as the clock produces.
pub fn at(ms: i64) -> Timestamp {
    const BASE_MS: i64 = 1_700_000_000_000;
    chrono::DateTime::from_timestamp_millis(BASE_MS + ms).expect("fixture instants are in range")
}

/// A deterministic id; ids made from larger numbers sort later, like UUIDv7s made later.
pub fn uuid(n: u128) -> uuid::Uuid {
    uuid::Uuid::from_u128(n)
}
