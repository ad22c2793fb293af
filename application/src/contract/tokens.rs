//! The `RefreshTokenStore` contract.

use crate::ports::{Consumed, RefreshRecord, RefreshTokenStore, SessionId, TokenHash};
use domain::UserId;

use super::{at, uuid};

pub fn record(hash: &str, session: u128) -> RefreshRecord {
    RefreshRecord {
        hash: TokenHash(hash.to_owned()),
        user_id: UserId::from_uuid(uuid(1)),
        session: SessionId(uuid(session)),
        created_at: at(0),
        expires_at: at(86_400_000),
    }
}

pub async fn a_fresh_token_is_consumed_once_then_reported_as_reused(store: &impl RefreshTokenStore) {
    let token = record("hash-a", 10);
    store.insert(&token).await.expect("insert");

    let first = store.consume(&token.hash).await.expect("first consume");
    let second = store.consume(&token.hash).await.expect("second consume");

    assert_eq!(first, Consumed::Fresh(token.clone()));
    assert_eq!(second, Consumed::Reused(token));
}

pub async fn an_unknown_token_is_invalid(store: &impl RefreshTokenStore) {
    let consumed = store.consume(&TokenHash("never-issued".to_owned())).await.expect("consume");

    assert_eq!(consumed, Consumed::Invalid);
}

pub async fn tokens_of_a_revoked_session_are_invalid(store: &impl RefreshTokenStore) {
    let revoked = record("hash-revoked", 10);
    let other_session = record("hash-other", 11);
    store.insert(&revoked).await.expect("insert");
    store.insert(&other_session).await.expect("insert");

    store.revoke_session(revoked.session).await.expect("revoke");

    assert_eq!(store.consume(&revoked.hash).await.expect("consume"), Consumed::Invalid);
    assert_eq!(store.consume(&revoked.hash).await.expect("consume again"), Consumed::Invalid);
    assert_eq!(store.consume(&other_session.hash).await.expect("consume other"), Consumed::Fresh(other_session));
}

pub async fn revoking_an_unknown_session_succeeds(store: &impl RefreshTokenStore) {
    let revoked = store.revoke_session(SessionId(uuid(404))).await;
    let again = store.revoke_session(SessionId(uuid(404))).await;

    assert!(revoked.is_ok(), "{revoked:?}");
    assert!(again.is_ok(), "{again:?}");
}

pub async fn concurrent_consumes_of_one_refresh_token_yield_exactly_one_fresh<S>(store: &S)
where
    S: RefreshTokenStore + Clone,
{
    const CALLERS: usize = 16;
    let token = record("hash-raced", 10);
    store.insert(&token).await.expect("insert");

    let start = std::sync::Arc::new(tokio::sync::Barrier::new(CALLERS));
    let racers: Vec<_> = (0..CALLERS)
        .map(|_| {
            let (store, start, hash) = (store.clone(), start.clone(), token.hash.clone());
            tokio::spawn(async move {
                start.wait().await;
                store.consume(&hash).await
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for racer in racers {
        outcomes.push(racer.await.expect("task").expect("consume"));
    }

    let fresh = outcomes.iter().filter(|c| matches!(c, Consumed::Fresh(_))).count();
    let reused = outcomes.iter().filter(|c| **c == Consumed::Reused(token.clone())).count();
    assert_eq!((fresh, reused), (1, CALLERS - 1), "{outcomes:?}");
}

/// Hands `$generate!` this module and every `RefreshTokenStore` behaviour in it, after the caller's
/// arguments: `application::tokens_contract!(contract_tests!(&*fresh_adapter()))`.
#[macro_export]
macro_rules! tokens_contract {
    ($generate:ident ! ($($args:tt)*)) => {
        $generate!($($args)*; $crate::contract::tokens;
        a_fresh_token_is_consumed_once_then_reported_as_reused,
        an_unknown_token_is_invalid,
        tokens_of_a_revoked_session_are_invalid,
        revoking_an_unknown_session_succeeds,
        concurrent_consumes_of_one_refresh_token_yield_exactly_one_fresh,
        );
    };
}
