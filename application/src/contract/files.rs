//! The `FileCatalog` contract.

use crate::ports::{FileCatalog, QuotaHold, StoredFile};
use domain::{FileId, FileKind, FileMeta, FileName, RoomId, UserId};

use super::{at, uuid};

pub fn owner(n: u128) -> UserId {
    UserId::from_uuid(uuid(n))
}

/// File `n` of `owner`, `size` bytes, expiring `expires_ms` after the fixture epoch.
pub fn file(n: u128, owner: UserId, size: u64, expires_ms: i64) -> StoredFile {
    StoredFile {
        meta: FileMeta {
            id: FileId::from_uuid(uuid(5_000 + n)),
            name: FileName::sanitize(&format!("photo {n}.png")),
            size,
            content_type: "image/png".to_owned(),
            kind: FileKind::Image,
            expires_at: at(expires_ms),
        },
        room_id: RoomId::from_uuid(uuid(1_000)),
        owner,
        created_at: at(0),
        purged_at: None,
    }
}

pub async fn a_catalogued_file_reads_back_exactly(catalog: &impl FileCatalog) {
    let mut plain = file(1, owner(1), 42, 60_000);
    plain.meta.kind = FileKind::File;
    plain.meta.content_type = "application/octet-stream".to_owned();
    let image = file(2, owner(1), 7, 30_000);

    catalog.insert(&plain).await.expect("insert");
    catalog.insert(&image).await.expect("insert");

    assert_eq!(catalog.get(plain.meta.id).await.expect("get"), Some(plain));
    assert_eq!(catalog.get(image.meta.id).await.expect("get"), Some(image));
}

pub async fn an_unknown_file_is_absent(catalog: &impl FileCatalog) {
    let found = catalog.get(FileId::from_uuid(uuid(404))).await.expect("get");

    assert_eq!(found, None);
}

pub async fn usage_sums_the_sizes_of_the_owners_files_only(catalog: &impl FileCatalog) {
    for stored in [file(1, owner(1), 100, 0), file(2, owner(1), 250, 0), file(3, owner(2), 999, 0)] {
        catalog.insert(&stored).await.expect("insert");
    }

    let first = catalog.usage_of(owner(1)).await.expect("usage");
    let second = catalog.usage_of(owner(2)).await.expect("usage");
    let nobody = catalog.usage_of(owner(3)).await.expect("usage");

    assert_eq!((first, second, nobody), (350, 999, 0));
}

pub async fn attaching_a_live_file_sets_its_expiry_and_an_expired_or_purged_one_stays_as_it_is(
    catalog: &impl FileCatalog,
) {
    // Arrange: a live file, one that expired at 1 s, one purged.
    let live = file(1, owner(1), 1, 9_000);
    let expired = file(2, owner(1), 1, 1_000);
    let purged = file(3, owner(1), 1, 9_000);
    for stored in [&live, &expired, &purged] {
        catalog.insert(stored).await.expect("insert");
    }
    catalog.mark_purged(purged.meta.id, at(2_000)).await.expect("purge");

    // Act
    let attached = catalog.attach(live.meta.id, at(50_000), at(5_000)).await.expect("attach");
    let too_late = catalog.attach(expired.meta.id, at(50_000), at(5_000)).await.expect("attach");
    let gone = catalog.attach(purged.meta.id, at(50_000), at(5_000)).await.expect("attach");

    // Assert
    let expiry = |stored: Option<StoredFile>| stored.map(|f| f.meta.expires_at);
    assert_eq!((attached, too_late, gone), (true, false, false));
    assert_eq!(expiry(catalog.get(live.meta.id).await.expect("get")), Some(at(50_000)));
    assert_eq!(expiry(catalog.get(expired.meta.id).await.expect("get")), Some(at(1_000)));
}

pub async fn expiring_a_room_makes_its_live_files_due_now_and_no_others(catalog: &impl FileCatalog) {
    // Arrange: two files of the fixture room, one already due earlier, and one of another room.
    let due_later = file(1, owner(1), 1, 9_000);
    let due_earlier = file(2, owner(1), 1, 1_000);
    let elsewhere = StoredFile { room_id: RoomId::from_uuid(uuid(2_000)), ..file(3, owner(1), 1, 9_000) };
    for stored in [&due_later, &due_earlier, &elsewhere] {
        catalog.insert(stored).await.expect("insert");
    }

    // Act
    let expired = catalog.expire_room(due_later.room_id, at(5_000)).await.expect("expire room");

    // Assert
    let mut due = catalog.expired(at(5_000), 10).await.expect("expired");
    due.sort();
    let mut expected = vec![due_later.meta.id, due_earlier.meta.id];
    expected.sort();
    assert_eq!(expired, 1, "only the file not yet due changes");
    assert_eq!(due, expected);
    assert_eq!(catalog.get(elsewhere.meta.id).await.expect("get").map(|f| f.meta.expires_at), Some(at(9_000)));
}

pub async fn expiring_a_file_makes_it_due_now_and_leaves_due_or_purged_ones_and_others_alone(
    catalog: &impl FileCatalog,
) {
    // Arrange: a live file, one already due earlier, a purged one, and another live one.
    let live = file(1, owner(1), 1, 9_000);
    let due_earlier = file(2, owner(1), 1, 1_000);
    let purged = file(3, owner(1), 1, 9_000);
    let other = file(4, owner(1), 1, 9_000);
    for stored in [&live, &due_earlier, &purged, &other] {
        catalog.insert(stored).await.expect("insert");
    }
    catalog.mark_purged(purged.meta.id, at(2_000)).await.expect("purge");

    // Act
    let expired = catalog.expire(live.meta.id, at(5_000)).await.expect("expire");
    let already_due = catalog.expire(due_earlier.meta.id, at(5_000)).await.expect("expire");
    let gone = catalog.expire(purged.meta.id, at(5_000)).await.expect("expire");
    let unknown = catalog.expire(FileId::from_uuid(uuid(9_999)), at(5_000)).await.expect("expire");

    // Assert
    let expiry = |stored: Option<StoredFile>| stored.map(|f| f.meta.expires_at);
    assert_eq!((expired, already_due, gone, unknown), (true, false, false, false));
    assert_eq!(expiry(catalog.get(live.meta.id).await.expect("get")), Some(at(5_000)));
    assert_eq!(expiry(catalog.get(due_earlier.meta.id).await.expect("get")), Some(at(1_000)));
    assert_eq!(expiry(catalog.get(other.meta.id).await.expect("get")), Some(at(9_000)));
    let mut due = catalog.expired(at(5_000), 10).await.expect("expired");
    due.sort();
    let mut expected = vec![live.meta.id, due_earlier.meta.id];
    expected.sort();
    assert_eq!(due, expected, "the purge finds it");
}

pub async fn expired_lists_files_due_at_or_before_now_up_to_the_limit(catalog: &impl FileCatalog) {
    let files: Vec<StoredFile> =
        (1..=4).map(|n| file(n, owner(1), 1, i64::try_from(n).expect("small") * 1_000)).collect();
    for stored in &files {
        catalog.insert(stored).await.expect("insert");
    }
    let due: Vec<FileId> = files[..3].iter().map(|f| f.meta.id).collect();

    let mut all_due = catalog.expired(at(3_000), 10).await.expect("expired");
    let limited = catalog.expired(at(3_000), 2).await.expect("expired");
    let none_yet = catalog.expired(at(999), 10).await.expect("expired");

    all_due.sort();
    assert_eq!(all_due, due, "expiry exactly at `now` counts as expired");
    assert_eq!(limited.len(), 2);
    assert!(limited.iter().all(|id| due.contains(id)));
    assert!(none_yet.is_empty());
}

pub async fn deleting_a_file_removes_it_and_deleting_a_missing_file_succeeds(catalog: &impl FileCatalog) {
    let stored = file(1, owner(1), 100, 0);
    catalog.insert(&stored).await.expect("insert");

    catalog.delete(stored.meta.id).await.expect("delete");
    let again = catalog.delete(stored.meta.id).await;

    assert!(again.is_ok(), "{again:?}");
    assert_eq!(catalog.get(stored.meta.id).await.expect("get"), None);
    assert_eq!(catalog.usage_of(owner(1)).await.expect("usage"), 0);
    assert!(catalog.expired(at(0), 10).await.expect("expired").is_empty());
}

pub async fn a_purged_file_still_reads_back_but_is_neither_expired_nor_counted(catalog: &impl FileCatalog) {
    let purged = file(1, owner(1), 100, 1_000);
    let live = file(2, owner(1), 250, 2_000);
    catalog.insert(&purged).await.expect("insert");
    catalog.insert(&live).await.expect("insert");

    catalog.mark_purged(purged.meta.id, at(5_000)).await.expect("mark purged");
    catalog.mark_purged(purged.meta.id, at(9_000)).await.expect("a retried mark succeeds");
    catalog.mark_purged(FileId::from_uuid(uuid(404)), at(5_000)).await.expect("marking an unknown file succeeds");

    let tombstone = StoredFile { purged_at: Some(at(5_000)), ..purged.clone() };
    assert_eq!(catalog.get(purged.meta.id).await.expect("get"), Some(tombstone), "the first mark counts");
    assert_eq!(catalog.get(live.meta.id).await.expect("get"), Some(live.clone()));
    assert_eq!(catalog.get(FileId::from_uuid(uuid(404))).await.expect("get"), None);
    assert_eq!(catalog.expired(at(10_000), 10).await.expect("expired"), [live.meta.id]);
    assert_eq!(catalog.usage_of(owner(1)).await.expect("usage"), 250, "purged bytes use no quota");
}

pub async fn deleting_purged_files_removes_at_most_the_limit_of_tombstones_purged_before_the_cutoff(
    catalog: &impl FileCatalog,
) {
    // Three files that expired at 0 s and were purged at 1 s, 2 s and 3 s; one expired at 0 s, not purged.
    let tombstones: Vec<StoredFile> = (1..=3).map(|n| file(n, owner(1), 1, 0)).collect();
    let live = file(4, owner(1), 1, 0);
    for stored in tombstones.iter().chain([&live]) {
        catalog.insert(stored).await.expect("insert");
    }
    for (stored, purged_ms) in tombstones.iter().zip([1_000, 2_000, 3_000]) {
        catalog.mark_purged(stored.meta.id, at(purged_ms)).await.expect("mark purged");
    }

    let first = catalog.delete_purged_before(at(3_000), 1).await.expect("delete purged");
    let rest = catalog.delete_purged_before(at(3_000), 10).await.expect("delete purged");
    let none_left = catalog.delete_purged_before(at(3_000), 10).await.expect("delete purged");

    assert_eq!((first, rest, none_left), (1, 1, 0), "at most `limit` at a time, purged strictly before the cutoff");
    for gone in &tombstones[..2] {
        assert_eq!(catalog.get(gone.meta.id).await.expect("get"), None);
    }
    let at_cutoff = catalog.get(tombstones[2].meta.id).await.expect("get");
    assert_eq!(at_cutoff.and_then(|f| f.purged_at), Some(at(3_000)), "a tombstone purged at the cutoff stays");
    assert_eq!(catalog.get(live.meta.id).await.expect("get"), Some(live), "an entry not purged stays");
}

pub async fn deleting_a_purged_file_removes_its_tombstone(catalog: &impl FileCatalog) {
    let stored = file(1, owner(1), 100, 0);
    catalog.insert(&stored).await.expect("insert");
    catalog.mark_purged(stored.meta.id, at(1_000)).await.expect("mark purged");

    catalog.delete(stored.meta.id).await.expect("delete");

    assert_eq!(catalog.get(stored.meta.id).await.expect("get"), None);
    assert_eq!(catalog.delete_purged_before(at(10_000), 10).await.expect("delete purged"), 0);
}

/// Hold `n` of `owner`, lapsing `expires_ms` after the fixture epoch.
pub fn hold(n: u128, owner: UserId, expires_ms: i64) -> QuotaHold {
    QuotaHold { id: FileId::from_uuid(uuid(7_000 + n)), owner, expires_at: at(expires_ms) }
}

pub async fn a_hold_grants_what_is_wanted_while_the_quota_lasts_and_then_what_is_left(catalog: &impl FileCatalog) {
    catalog.insert(&file(1, owner(1), 300, 60_000)).await.expect("insert");

    let first = catalog.reserve(hold(1, owner(1), 60_000), 500, 1_000, at(0)).await.expect("reserve");
    let second = catalog.reserve(hold(2, owner(1), 60_000), 500, 1_000, at(0)).await.expect("reserve");
    let third = catalog.reserve(hold(3, owner(1), 60_000), 10, 1_000, at(0)).await.expect("reserve");

    assert_eq!((first, second, third), (500, 200, 0), "300 in files, then 500 and the 200 left of 1000");
}

pub async fn a_released_hold_frees_its_bytes_and_releasing_again_succeeds(catalog: &impl FileCatalog) {
    let held = hold(1, owner(1), 60_000);
    assert_eq!(catalog.reserve(held, 1_000, 1_000, at(0)).await.expect("reserve"), 1_000);

    catalog.release(held).await.expect("release");
    catalog.release(held).await.expect("a second release succeeds");
    catalog.release(hold(404, owner(1), 60_000)).await.expect("releasing an unknown hold succeeds");
    let after = catalog.reserve(hold(2, owner(1), 60_000), 1_000, 1_000, at(0)).await.expect("reserve");

    assert_eq!(after, 1_000);
}

pub async fn a_hold_counts_until_it_lapses_and_then_for_nothing(catalog: &impl FileCatalog) {
    catalog.reserve(hold(1, owner(1), 1_000), 1_000, 1_000, at(0)).await.expect("reserve");

    let before = catalog.reserve(hold(2, owner(1), 60_000), 1_000, 1_000, at(999)).await.expect("reserve");
    let at_expiry = catalog.reserve(hold(3, owner(1), 60_000), 1_000, 1_000, at(1_000)).await.expect("reserve");

    assert_eq!((before, at_expiry), (0, 1_000), "a hold lapses at its expires_at");
}

pub async fn a_lapsed_hold_may_be_taken_again_under_the_same_id(catalog: &impl FileCatalog) {
    let lapsed = hold(1, owner(1), 1_000);
    catalog.reserve(lapsed, 600, 1_000, at(0)).await.expect("reserve");

    let renewed = QuotaHold { expires_at: at(60_000), ..lapsed };
    let again = catalog.reserve(renewed, 600, 1_000, at(2_000)).await.expect("reserve");
    let rest = catalog.reserve(hold(2, owner(1), 60_000), 1_000, 1_000, at(2_000)).await.expect("reserve");
    catalog.release(renewed).await.expect("release");
    let all = catalog.reserve(hold(3, owner(1), 60_000), 1_000, 1_000, at(2_000)).await.expect("reserve");

    assert_eq!((again, rest, all), (600, 400, 600), "the renewed hold counts once, and its release frees it");
}

pub async fn holds_and_files_of_one_owner_leave_another_owners_quota_alone(catalog: &impl FileCatalog) {
    catalog.insert(&file(1, owner(1), 700, 60_000)).await.expect("insert");
    catalog.reserve(hold(1, owner(1), 60_000), 300, 1_000, at(0)).await.expect("reserve");

    let other = catalog.reserve(hold(2, owner(2), 60_000), 1_000, 1_000, at(0)).await.expect("reserve");

    assert_eq!(other, 1_000);
}

pub async fn a_purged_file_frees_its_bytes_for_holds(catalog: &impl FileCatalog) {
    let purged = file(1, owner(1), 800, 0);
    catalog.insert(&purged).await.expect("insert");
    catalog.mark_purged(purged.meta.id, at(1)).await.expect("mark purged");

    let granted = catalog.reserve(hold(1, owner(1), 60_000), 1_000, 1_000, at(0)).await.expect("reserve");

    assert_eq!(granted, 1_000);
}

pub async fn a_zero_grant_holds_nothing(catalog: &impl FileCatalog) {
    catalog.insert(&file(1, owner(1), 1_000, 60_000)).await.expect("insert");
    let refused = catalog.reserve(hold(1, owner(1), 60_000), 10, 1_000, at(0)).await.expect("reserve");

    catalog.delete(file(1, owner(1), 1_000, 60_000).meta.id).await.expect("delete");
    let after = catalog.reserve(hold(2, owner(1), 60_000), 1_000, 1_000, at(0)).await.expect("reserve");

    assert_eq!((refused, after), (0, 1_000));
}

pub async fn parallel_holds_never_grant_more_than_the_quota(catalog: &impl FileCatalog) {
    const QUOTA: u64 = 1_000;
    catalog.insert(&file(1, owner(1), 100, 60_000)).await.expect("insert");

    let grants =
        futures::future::join_all((1..=40).map(|n| catalog.reserve(hold(n, owner(1), 60_000), 70, QUOTA, at(0)))).await;

    let grants: Vec<u64> = grants.into_iter().map(|g| g.expect("reserve")).collect();
    assert_eq!(grants.iter().sum::<u64>(), QUOTA - 100, "exactly what was left, never more: {grants:?}");
    assert!(grants.iter().all(|g| *g <= 70), "{grants:?}");
}

/// Hands `$generate!` this module and every `FileCatalog` behaviour in it, after the caller's
/// arguments: `application::files_contract!(contract_tests!(&*fresh_adapter()))`.
#[macro_export]
macro_rules! files_contract {
    ($generate:ident ! ($($args:tt)*)) => {
        $generate!($($args)*; $crate::contract::files;
        attaching_a_live_file_sets_its_expiry_and_an_expired_or_purged_one_stays_as_it_is,
        expiring_a_room_makes_its_live_files_due_now_and_no_others,
        expiring_a_file_makes_it_due_now_and_leaves_due_or_purged_ones_and_others_alone,
        a_catalogued_file_reads_back_exactly,
        an_unknown_file_is_absent,
        usage_sums_the_sizes_of_the_owners_files_only,
        expired_lists_files_due_at_or_before_now_up_to_the_limit,
        deleting_a_file_removes_it_and_deleting_a_missing_file_succeeds,
        a_purged_file_still_reads_back_but_is_neither_expired_nor_counted,
        deleting_purged_files_removes_at_most_the_limit_of_tombstones_purged_before_the_cutoff,
        deleting_a_purged_file_removes_its_tombstone,
        a_hold_grants_what_is_wanted_while_the_quota_lasts_and_then_what_is_left,
        a_released_hold_frees_its_bytes_and_releasing_again_succeeds,
        a_hold_counts_until_it_lapses_and_then_for_nothing,
        a_lapsed_hold_may_be_taken_again_under_the_same_id,
        holds_and_files_of_one_owner_leave_another_owners_quota_alone,
        a_purged_file_frees_its_bytes_for_holds,
        a_zero_grant_holds_nothing,
        parallel_holds_never_grant_more_than_the_quota,
        );
    };
}
