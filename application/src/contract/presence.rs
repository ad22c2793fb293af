//! The `PresenceRegistry` contract, over registries that stand for nodes sharing one backend.

use std::future::Future;

use domain::UserId;

use crate::ports::PresenceRegistry;

/// A user no other test has seen, so tests may share one backend.
fn fresh_user() -> UserId {
    UserId::from_uuid(uuid::Uuid::now_v7())
}

pub async fn a_user_is_online_from_their_first_socket_until_their_last_goes<R, F>(node: impl Fn() -> F)
where
    R: PresenceRegistry,
    F: Future<Output = R>,
{
    let a = node().await;
    let (ada, bob) = (fresh_user(), fresh_user());

    let first = a.came_online(ada).await.expect("came online");
    let while_online = a.online_among(&[ada, bob]).await.expect("online among");
    let last = a.went_offline(ada).await.expect("went offline");
    let after = a.online_among(&[ada, bob]).await.expect("online among");

    assert!(first, "online on no node before");
    assert_eq!(while_online, vec![ada]);
    assert!(last, "online on no node after");
    assert!(after.is_empty(), "{after:?}");
}

pub async fn a_user_online_on_two_nodes_stays_online_until_both_let_go<R, F>(node: impl Fn() -> F)
where
    R: PresenceRegistry,
    F: Future<Output = R>,
{
    let (a, b) = (node().await, node().await);
    let ada = fresh_user();

    let on_a = a.came_online(ada).await.expect("came online");
    let on_b = b.came_online(ada).await.expect("came online");
    let off_a = a.went_offline(ada).await.expect("went offline");
    let seen_from_a = a.online_among(&[ada]).await.expect("online among");
    let off_b = b.went_offline(ada).await.expect("went offline");
    let seen_from_b = b.online_among(&[ada]).await.expect("online among");

    assert_eq!((on_a, on_b), (true, false), "only the first node announces");
    assert_eq!((off_a, off_b), (false, true), "only the last node announces");
    assert_eq!(seen_from_a, vec![ada], "still online through b");
    assert!(seen_from_b.is_empty(), "{seen_from_b:?}");
}

pub async fn online_users_are_listed_in_the_order_asked<R, F>(node: impl Fn() -> F)
where
    R: PresenceRegistry,
    F: Future<Output = R>,
{
    let a = node().await;
    let users: Vec<UserId> = (0..5).map(|_| fresh_user()).collect();
    for online in [users[3], users[0], users[2]] {
        a.came_online(online).await.expect("came online");
    }
    a.still_online(&[users[0], users[2], users[3]]).await.expect("still online");

    let listed = a.online_among(&users).await.expect("online among");

    assert_eq!(listed, vec![users[0], users[2], users[3]]);
}

/// Hands `$generate!` this module and every `PresenceRegistry` behaviour in it, after the
/// caller's arguments: a factory of nodes on one fresh backend.
#[macro_export]
macro_rules! presence_contract {
    ($generate:ident ! ($($args:tt)*)) => {
        $generate!($($args)*; $crate::contract::presence;
        a_user_is_online_from_their_first_socket_until_their_last_goes,
        a_user_online_on_two_nodes_stays_online_until_both_let_go,
        online_users_are_listed_in_the_order_asked,
        );
    };
}
