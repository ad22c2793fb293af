//! The `RefreshTokenStore` contract.

use crate::ports::{Consumed, RefreshRecord, RefreshTokenStore, Revocation, SessionId, TokenHash};
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

/// A revocation of `session` at `revoked_at_ms`, kept a day.
pub fn revocation(session: u128, revoked_at_ms: i64) -> Revocation {
    Revocation {
        session: SessionId(uuid(session)),
        revoked_at: at(revoked_at_ms),
        expires_at: at(revoked_at_ms + DAY_MS),
    }
}

const DAY_MS: i64 = 86_400_000;

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

    store.revoke_session(&revocation(10, 5)).await.expect("revoke");

    assert_eq!(store.consume(&revoked.hash).await.expect("consume"), Consumed::Invalid);
    assert_eq!(store.consume(&revoked.hash).await.expect("consume again"), Consumed::Invalid);
    assert_eq!(store.consume(&other_session.hash).await.expect("consume other"), Consumed::Fresh(other_session));
}

pub async fn revoking_an_unknown_session_succeeds(store: &impl RefreshTokenStore) {
    let revoked = store.revoke_session(&revocation(404, 5)).await;
    let again = store.revoke_session(&revocation(404, 6)).await;

    assert!(revoked.is_ok(), "{revoked:?}");
    assert!(again.is_ok(), "{again:?}");
}

pub async fn revocations_are_listed_from_an_instant_on_oldest_first_each_with_its_first_record(
    store: &impl RefreshTokenStore,
) {
    store.revoke_session(&revocation(1, 1_000)).await.expect("revoke");
    store.revoke_session(&revocation(3, 3_000)).await.expect("revoke");
    store.revoke_session(&revocation(2, 2_000)).await.expect("revoke");
    store.revoke_session(&revocation(3, 9_000)).await.expect("revoke again");

    let listed = store.revoked_since(at(2_000)).await.expect("list");

    assert_eq!(listed, vec![revocation(2, 2_000), revocation(3, 3_000)]);
}

pub async fn purging_deletes_expired_tokens_and_revocations_and_keeps_live_ones(store: &impl RefreshTokenStore) {
    // Arrange: a token and a revocation that expire at one day, and ones that live on.
    let expired = RefreshRecord { expires_at: at(DAY_MS), ..record("hash-expired", 10) };
    let live = RefreshRecord { expires_at: at(3 * DAY_MS), ..record("hash-live", 11) };
    store.insert(&expired).await.expect("insert");
    store.insert(&live).await.expect("insert");
    store.revoke_session(&revocation(12, 0)).await.expect("revoke");
    store.revoke_session(&revocation(13, 2 * DAY_MS)).await.expect("revoke");

    // Act
    let purged = store.purge_expired(at(DAY_MS)).await.expect("purge");

    // Assert
    assert_eq!(purged, 2);
    assert_eq!(store.consume(&expired.hash).await.expect("consume"), Consumed::Invalid);
    assert_eq!(store.consume(&live.hash).await.expect("consume"), Consumed::Fresh(live));
    assert_eq!(store.revoked_since(at(0)).await.expect("list"), vec![revocation(13, 2 * DAY_MS)]);
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
        revocations_are_listed_from_an_instant_on_oldest_first_each_with_its_first_record,
        purging_deletes_expired_tokens_and_revocations_and_keeps_live_ones,
        concurrent_consumes_of_one_refresh_token_yield_exactly_one_fresh,
        );
    };
}
