//! Every storage port contract of `application::contract`, run against MongoDB.

/// Declares one test per behaviour of a suite, each on a new database that is dropped afterwards.
/// `application::contract_tests!` cannot mark its tests ignored, and these need a server.
macro_rules! mongo_contract_tests {
    (; $contract:path; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            #[ignore = "needs MongoDB (CHAT_TEST_MONGODB_URL)"]
            async fn $name() {
                use $contract as contract;
                let db = $crate::support::TestDb::new().await;
                let outcome = $crate::support::outcome_of(contract::$name(&*db)).await;
                db.finish(outcome).await;
            }
        )+
    };
}

/// As `mongo_contract_tests!`, for the search suite. Where the server keeps no text index
/// (SecantusDB refuses to build one), the `$text` query cannot run: each behaviour then checks
/// that search says it is unavailable, rather than scanning or failing with a 500, and says on
/// stderr that the `$text` path itself was not exercised.
macro_rules! mongo_search_tests {
    (; $contract:path; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            #[ignore = "needs MongoDB (CHAT_TEST_MONGODB_URL)"]
            async fn $name() {
                use $contract as contract;
                let db = $crate::support::TestDb::new().await;
                let outcome = if db.supports_text_search() {
                    $crate::support::outcome_of(contract::$name(&*db)).await
                } else {
                    eprintln!("{}: this server has no text indexes; checked that search is unavailable", stringify!($name));
                    $crate::support::outcome_of($crate::contract::search_is_unavailable(&*db)).await
                };
                db.finish(outcome).await;
            }
        )+
    };
}

/// What a server without text indexes answers a search: `Unavailable`, whatever the query.
async fn search_is_unavailable(store: &adapter_mongo::MongoStore) {
    use application::ports::{ArchiveSearchError, MessageArchive, MessageSearch};
    let search = MessageSearch {
        query: domain::SearchQuery::new("anything").expect("valid"),
        rooms: vec![application::contract::archive::room(1)],
        not_before: None,
        before: None,
        limit: 10,
    };
    let outcome = store.search(&search).await;
    assert!(matches!(outcome, Err(ArchiveSearchError::Unavailable)), "got {outcome:?}");
}

mod message_search {
    application::search_contract!(mongo_search_tests!());
}

mod user_repository {
    application::users_contract!(mongo_contract_tests!());
}

mod refresh_token_store {
    application::tokens_contract!(mongo_contract_tests!());
}

mod room_repository {
    application::rooms_contract!(mongo_contract_tests!());
}

mod message_archive {
    application::archive_contract!(mongo_contract_tests!());
}

mod file_catalog {
    application::files_contract!(mongo_contract_tests!());
}
