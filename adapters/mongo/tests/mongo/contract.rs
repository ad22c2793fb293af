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
