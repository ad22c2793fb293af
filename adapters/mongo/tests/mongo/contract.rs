//! Every port contract of the SQLite adapter's suite, run against MongoDB.

/// Declares one test per named contract function of `$contract`, each on a new database that is
/// dropped afterwards. `adapter_sqlite::contract_tests!` cannot mark its tests ignored, and these
/// need a server.
macro_rules! mongo_contract_tests {
    ($contract:path; $($name:ident),+ $(,)?) => {
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
    mongo_contract_tests!(adapter_sqlite::contract::users;
        a_created_user_can_be_found_by_name_and_by_id,
        lookup_by_name_ignores_case,
        a_second_user_with_the_same_name_in_other_case_is_a_duplicate,
        unknown_users_are_absent_not_errors,
        by_ids_returns_only_the_users_that_exist,
    );
}

mod refresh_token_store {
    mongo_contract_tests!(adapter_sqlite::contract::tokens;
        a_fresh_token_is_consumed_once_then_reported_as_reused,
        an_unknown_token_is_invalid,
        tokens_of_a_revoked_session_are_invalid,
        revoking_an_unknown_session_succeeds,
        concurrent_consumes_of_one_refresh_token_yield_exactly_one_fresh,
    );
}

mod room_repository {
    mongo_contract_tests!(adapter_sqlite::contract::rooms;
        an_inserted_room_reads_back_with_its_members,
        an_unknown_room_is_absent,
        an_update_replaces_members_and_owner_and_bumps_the_version,
        a_stale_room_update_is_a_conflict_and_writes_nothing,
        updating_a_deleted_room_is_not_found,
        deleting_a_room_removes_its_memberships,
        member_listing_pages_by_id_after_the_cursor,
        public_listing_skips_private_rooms_and_pages_by_id,
        room_ids_for_member_lists_every_room_the_user_belongs_to,
        is_member_is_false_for_non_members,
    );
}

mod message_archive {
    mongo_contract_tests!(adapter_sqlite::contract::archive;
        archived_messages_read_back_exactly,
        a_retried_archive_batch_stores_nothing_twice,
        oldest_take_returns_the_lowest_seqs_in_the_range,
        newest_take_returns_the_highest_seqs_in_ascending_order,
        fetch_bounds_are_exclusive_and_rooms_do_not_mix,
        last_seqs_reports_the_highest_seq_per_room,
        purge_deletes_at_most_the_limit_and_only_older_messages,
    );
}

mod file_catalog {
    mongo_contract_tests!(adapter_sqlite::contract::files;
        a_catalogued_file_reads_back_exactly,
        an_unknown_file_is_absent,
        usage_sums_the_sizes_of_the_owners_files_only,
        expired_lists_files_due_at_or_before_now_up_to_the_limit,
        deleting_a_file_removes_it_and_deleting_a_missing_file_succeeds,
        a_purged_file_still_reads_back_but_is_neither_expired_nor_counted,
        deleting_purged_files_removes_at_most_the_limit_of_tombstones_purged_before_the_cutoff,
        deleting_a_purged_file_removes_its_tombstone,
    );
}
