//! The `UserRepository` contract.

use crate::ports::{CreateUserError, StoredUser, UserRepository, UserSettings};
use domain::{User, UserId, Username};

use super::{at, uuid};

pub fn stored_user(n: u128, name: &str) -> StoredUser {
    StoredUser {
        user: User {
            id: UserId::from_uuid(uuid(n)),
            username: Username::new(name).expect("fixture usernames are valid"),
            created_at: at(i64::try_from(n).expect("small fixture numbers")),
        },
        password_hash: format!("$argon2id$fixture${n}"),
    }
}

pub async fn a_created_user_can_be_found_by_name_and_by_id(repo: &impl UserRepository) {
    let alice = stored_user(1, "Alice");

    repo.create(&alice).await.expect("create");

    assert_eq!(repo.by_username(&alice.user.username).await.expect("by_username"), Some(alice.clone()));
    assert_eq!(repo.by_id(alice.user.id).await.expect("by_id"), Some(alice.user));
}

pub async fn lookup_by_name_ignores_case(repo: &impl UserRepository) {
    let alice = stored_user(1, "Alice");
    repo.create(&alice).await.expect("create");

    let found = repo.by_username(&Username::new("aLICE").expect("valid")).await.expect("by_username");

    assert_eq!(found, Some(alice), "the stored spelling is returned, whatever case was asked for");
}

pub async fn a_second_user_with_the_same_name_in_other_case_is_a_duplicate(repo: &impl UserRepository) {
    let first = stored_user(1, "Ærøskøbing");
    repo.create(&first).await.expect("create first");

    let second = repo.create(&stored_user(2, "ærØSKØBING")).await;

    assert!(matches!(second, Err(CreateUserError::Duplicate)), "got {second:?}");
    assert_eq!(repo.by_id(UserId::from_uuid(uuid(2))).await.expect("by_id"), None, "nothing was stored");
    assert_eq!(repo.by_username(&first.user.username).await.expect("by_username"), Some(first));
}

pub async fn unknown_users_are_absent_not_errors(repo: &impl UserRepository) {
    let name = Username::new("nobody").expect("valid");

    let by_name = repo.by_username(&name).await.expect("by_username");
    let by_id = repo.by_id(UserId::from_uuid(uuid(404))).await.expect("by_id");

    assert_eq!(by_name, None);
    assert_eq!(by_id, None);
}

pub async fn by_ids_returns_only_the_users_that_exist(repo: &impl UserRepository) {
    let alice = stored_user(1, "alice");
    let bob = stored_user(2, "bob");
    let carol = stored_user(3, "carol");
    for user in [&alice, &bob, &carol] {
        repo.create(user).await.expect("create");
    }

    let mut found = repo.by_ids(&[carol.user.id, UserId::from_uuid(uuid(404)), alice.user.id]).await.expect("by_ids");
    let none = repo.by_ids(&[]).await.expect("by_ids of nothing");

    found.sort_by_key(|u| u.id);
    assert_eq!(found, vec![alice.user, carol.user]);
    assert!(none.is_empty());
}

pub async fn by_ids_finds_every_user_of_a_long_list(repo: &impl UserRepository) {
    // A room's members are looked up at once: hundreds of ids, some of users since deleted.
    for n in 1..=150 {
        repo.create(&stored_user(n, &format!("member{n}"))).await.expect("create");
    }
    let asked: Vec<UserId> = (1..=300).map(|n| UserId::from_uuid(uuid(n))).collect();

    let mut found: Vec<UserId> = repo.by_ids(&asked).await.expect("by_ids").iter().map(|u| u.id).collect();

    found.sort();
    assert_eq!(found, asked[..150]);
}

pub async fn settings_start_at_the_defaults_and_keep_what_was_stored(repo: &impl UserRepository) {
    let alice = stored_user(1, "Alice");
    let bob = stored_user(2, "Bob");
    repo.create(&alice).await.expect("create");
    repo.create(&bob).await.expect("create");
    let before = repo.settings(alice.user.id).await.expect("settings");

    let stored = repo.update_settings(alice.user.id, &UserSettings { send_read_receipts: false }).await;
    let unknown = repo.update_settings(UserId::from_uuid(uuid(404)), &UserSettings::default()).await;

    assert_eq!(before, UserSettings { send_read_receipts: true });
    assert!(stored.expect("update"), "alice exists");
    assert!(!unknown.expect("update"), "nobody is 404");
    assert_eq!(repo.settings(alice.user.id).await.expect("settings"), UserSettings { send_read_receipts: false });
    assert_eq!(repo.settings(bob.user.id).await.expect("settings"), UserSettings::default(), "only alice changed");
    assert_eq!(repo.by_id(alice.user.id).await.expect("by_id"), Some(alice.user), "the user is unchanged");
}

/// Hands `$generate!` this module and every `UserRepository` behaviour in it, after the caller's
/// arguments: `application::users_contract!(contract_tests!(&*fresh_adapter()))`.
#[macro_export]
macro_rules! users_contract {
    ($generate:ident ! ($($args:tt)*)) => {
        $generate!($($args)*; $crate::contract::users;
        a_created_user_can_be_found_by_name_and_by_id,
        lookup_by_name_ignores_case,
        a_second_user_with_the_same_name_in_other_case_is_a_duplicate,
        unknown_users_are_absent_not_errors,
        by_ids_returns_only_the_users_that_exist,
        by_ids_finds_every_user_of_a_long_list,
        settings_start_at_the_defaults_and_keep_what_was_stored,
        );
    };
}
