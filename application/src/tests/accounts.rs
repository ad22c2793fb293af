//! Unit tests of the accounts use case: register, login, refresh, logout and authenticate.

use std::sync::Arc;

use domain::{Password, Username};
use secrecy::{ExposeSecret, SecretString};

use super::fixtures::{alice, days, fixed_clock, generated_id, minutes, now, sequential_ids};
use crate::accounts::{Accounts, AuthError, Authenticated, LoginError, RefreshError, RegisterError, Registration};
use crate::ports::{
    AccessClaims, Consumed, CreateUserError, HashError, IssuedAccess, MockClock, MockEventBus, MockIdGenerator,
    MockPasswordHasher, MockRefreshTokenStore, MockTokenService, MockUserRepository, RefreshRecord, Revocation,
    RoomEvent, SessionEndReason, SessionId, StoredUser, TokenError, TokenHash,
};

const ALICE_HASH: &str = "$argon2id$alice";
const ACCESS_TTL_SECS: u64 = 900;

/// Every port of `Accounts` as a mock without expectations: any call a test did not expect fails it.
#[derive(Default)]
struct Ports {
    users: MockUserRepository,
    refresh: MockRefreshTokenStore,
    hasher: MockPasswordHasher,
    tokens: MockTokenService,
    bus: MockEventBus,
    clock: MockClock,
    ids: MockIdGenerator,
}

impl Ports {
    fn accounts(self) -> Accounts {
        Accounts::new(
            Arc::new(self.users),
            Arc::new(self.refresh),
            Arc::new(self.hasher),
            Arc::new(self.tokens),
            Arc::new(self.bus),
            Arc::new(self.clock),
            Arc::new(self.ids),
        )
    }

    /// Expects one token pair to be issued for alice in `session` at `now()`, as `access-2`/`refresh-2`.
    fn expect_pair_issued(&mut self, session: SessionId) {
        let user = alice().id;
        self.tokens
            .expect_issue_access()
            .withf(move |u, s, at| *u == user && *s == session && *at == now())
            .times(1)
            .returning(|_, _, at| {
                Ok(IssuedAccess {
                    token: "access-2".into(),
                    expires_in_secs: ACCESS_TTL_SECS,
                    expires_at: at + minutes(15),
                })
            });
        self.tokens
            .expect_new_refresh()
            .times(1)
            .returning(|| (SecretString::from("refresh-2"), TokenHash("hash-of-refresh-2".into())));
        self.tokens.expect_refresh_ttl().times(1).returning(|| days(30));
        let expected = RefreshRecord {
            hash: TokenHash("hash-of-refresh-2".into()),
            user_id: user,
            session,
            created_at: now(),
            expires_at: now() + days(30),
        };
        self.refresh.expect_insert().withf(move |record| *record == expected).times(1).returning(|_| Ok(()));
    }

    /// Expects alice's `session()` to be revoked at `now()` for a refresh-token lifetime, and its
    /// end announced on the bus with `reason`.
    fn expect_session_ended(&mut self, reason: SessionEndReason) {
        self.tokens.expect_refresh_ttl().times(1).returning(|| days(30));
        let revocation = Revocation { session: session(), revoked_at: now(), expires_at: now() + days(30) };
        self.refresh.expect_revoke_session().withf(move |r| *r == revocation).times(1).returning(|_| Ok(()));
        let ended = RoomEvent::SessionEnded { user_id: alice().id, session: session(), reason };
        self.bus.expect_publish().withf(move |event| *event == ended).times(1).returning(|_| Ok(()));
    }

    fn expect_no_pair_issued(&mut self) {
        self.tokens.expect_issue_access().never();
        self.refresh.expect_insert().never();
    }
}

fn registration() -> Registration {
    let username = Username::new("alice").expect("valid username");
    let password = Password::new("correct horse battery", &username).expect("valid password");
    Registration { username, password }
}

fn stored_alice() -> StoredUser {
    StoredUser { user: alice(), password_hash: ALICE_HASH.into() }
}

fn session() -> SessionId {
    SessionId(uuid::Uuid::from_u128(0x5e55))
}

fn refresh_record(expires_at: domain::Timestamp) -> RefreshRecord {
    RefreshRecord {
        hash: TokenHash("hash-of-refresh-1".into()),
        user_id: alice().id,
        session: session(),
        created_at: now() - days(1),
        expires_at,
    }
}

fn expect_consume(ports: &mut Ports, answer: Consumed) {
    ports
        .tokens
        .expect_hash_refresh()
        .withf(|token| token == "refresh-1")
        .times(1)
        .returning(|_| TokenHash("hash-of-refresh-1".into()));
    ports
        .refresh
        .expect_consume()
        .withf(|hash| hash.0 == "hash-of-refresh-1")
        .times(1)
        .return_once(move |_| Ok(answer));
}

fn claims() -> AccessClaims {
    AccessClaims { user_id: alice().id, session: session(), expires_at: now() + minutes(10) }
}

// --- register ---

#[tokio::test]
async fn registering_a_free_username_stores_the_user_with_the_password_hash() {
    let mut ports = Ports { ids: sequential_ids(1), clock: fixed_clock(1), ..Ports::default() };
    ports
        .hasher
        .expect_hash()
        .withf(|password| password.expose() == "correct horse battery")
        .times(1)
        .returning(|_| Ok(ALICE_HASH.into()));
    ports
        .users
        .expect_create()
        .withf(|stored| {
            stored.password_hash == ALICE_HASH
                && stored.user.username.as_str() == "alice"
                && stored.user.id.as_uuid() == generated_id(1)
        })
        .times(1)
        .returning(|_| Ok(()));

    let user = ports.accounts().register(registration()).await.expect("registered");

    assert_eq!(user.id.as_uuid(), generated_id(1));
    assert_eq!(user.username.as_str(), "alice");
    assert_eq!(user.created_at, now());
}

#[tokio::test]
async fn registering_a_taken_username_fails_with_username_taken() {
    let mut ports = Ports { ids: sequential_ids(1), clock: fixed_clock(1), ..Ports::default() };
    ports.hasher.expect_hash().times(1).returning(|_| Ok(ALICE_HASH.into()));
    ports.users.expect_create().times(1).returning(|_| Err(CreateUserError::Duplicate));

    let result = ports.accounts().register(registration()).await;

    assert!(matches!(result, Err(RegisterError::UsernameTaken)), "got {result:?}");
}

#[tokio::test]
async fn a_hasher_failure_fails_registration_without_storing_anything() {
    let mut ports = Ports::default();
    ports.hasher.expect_hash().times(1).returning(|_| Err(anyhow::anyhow!("out of memory").into()));
    ports.users.expect_create().never();

    let result = ports.accounts().register(registration()).await;

    assert!(matches!(result, Err(RegisterError::Unknown(_))), "got {result:?}");
}

// --- login ---

#[tokio::test]
async fn logging_in_with_the_right_password_issues_a_pair_and_stores_its_refresh_record() {
    let mut ports = Ports { ids: sequential_ids(1), clock: fixed_clock(1), ..Ports::default() };
    ports
        .users
        .expect_by_username()
        .withf(|name| name.as_str() == "alice")
        .times(1)
        .returning(|_| Ok(Some(stored_alice())));
    ports
        .hasher
        .expect_verify()
        .withf(|candidate, hash| candidate == "correct horse battery" && hash.as_deref() == Some(ALICE_HASH))
        .times(1)
        .returning(|_, _| Ok(true));
    ports.expect_pair_issued(SessionId(generated_id(1)));

    let pair = ports.accounts().login("alice", "correct horse battery").await.expect("logged in");

    assert_eq!(pair.access_token, "access-2");
    assert_eq!(pair.refresh_token.expose_secret(), "refresh-2");
    assert_eq!(pair.expires_in_secs, ACCESS_TTL_SECS);
}

#[tokio::test]
async fn an_unknown_username_is_invalid_credentials_yet_still_costs_a_verification() {
    let mut ports = Ports::default();
    ports.users.expect_by_username().times(1).returning(|_| Ok(None));
    ports.hasher.expect_verify().withf(|_, hash| hash.is_none()).times(1).returning(|_, _| Ok(false));
    ports.expect_no_pair_issued();

    let result = ports.accounts().login("mallory", "correct horse battery").await;

    assert!(matches!(result, Err(LoginError::InvalidCredentials)), "got {result:?}");
}

#[tokio::test]
async fn a_wrong_password_is_invalid_credentials() {
    let mut ports = Ports::default();
    ports.users.expect_by_username().times(1).returning(|_| Ok(Some(stored_alice())));
    ports
        .hasher
        .expect_verify()
        .withf(|candidate, hash| candidate == "wrong password" && hash.as_deref() == Some(ALICE_HASH))
        .times(1)
        .returning(|_, _| Ok(false));
    ports.expect_no_pair_issued();

    let result = ports.accounts().login("alice", "wrong password").await;

    assert!(matches!(result, Err(LoginError::InvalidCredentials)), "got {result:?}");
}

#[tokio::test]
async fn a_malformed_username_is_invalid_credentials_without_a_lookup() {
    let mut ports = Ports::default();
    ports.users.expect_by_username().never();
    ports.hasher.expect_verify().withf(|_, hash| hash.is_none()).times(1).returning(|_, _| Ok(false));
    ports.expect_no_pair_issued();

    let result = ports.accounts().login("not a username!", "correct horse battery").await;

    assert!(matches!(result, Err(LoginError::InvalidCredentials)), "got {result:?}");
}

#[tokio::test]
async fn a_hasher_failure_during_login_is_not_reported_as_bad_credentials() {
    let mut ports = Ports::default();
    ports.users.expect_by_username().times(1).returning(|_| Ok(Some(stored_alice())));
    ports.hasher.expect_verify().times(1).returning(|_, _| Err(anyhow::anyhow!("malformed stored hash").into()));
    ports.expect_no_pair_issued();

    let result = ports.accounts().login("alice", "correct horse battery").await;

    assert!(matches!(result, Err(LoginError::Unknown(_))), "got {result:?}");
}

#[tokio::test]
async fn a_busy_hasher_makes_login_busy_rather_than_a_failure() {
    let mut ports = Ports::default();
    ports.users.expect_by_username().times(1).returning(|_| Ok(Some(stored_alice())));
    ports.hasher.expect_verify().times(1).returning(|_, _| Err(HashError::Busy));
    ports.expect_no_pair_issued();

    let result = ports.accounts().login("alice", "correct horse battery").await;

    assert!(matches!(result, Err(LoginError::Busy)), "got {result:?}");
}

#[tokio::test]
async fn a_busy_hasher_makes_registration_busy_without_storing_anything() {
    let mut ports = Ports::default();
    ports.hasher.expect_hash().times(1).returning(|_| Err(HashError::Busy));
    ports.users.expect_create().never();

    let result = ports.accounts().register(registration()).await;

    assert!(matches!(result, Err(RegisterError::Busy)), "got {result:?}");
}

// --- refresh ---

#[tokio::test]
async fn a_fresh_refresh_token_is_traded_for_a_new_pair_in_the_same_session() {
    let mut ports = Ports { clock: fixed_clock(2), ..Ports::default() };
    expect_consume(&mut ports, Consumed::Fresh(refresh_record(now() + days(1))));
    ports.users.expect_by_id().withf(|id| *id == alice().id).times(1).returning(|_| Ok(Some(alice())));
    ports.expect_pair_issued(session());

    let pair = ports.accounts().refresh("refresh-1").await.expect("refreshed");

    assert_eq!(pair.access_token, "access-2");
    assert_eq!(pair.refresh_token.expose_secret(), "refresh-2");
}

#[tokio::test]
async fn a_reused_refresh_token_revokes_its_whole_session_and_ends_its_sockets() {
    let mut ports = Ports { clock: fixed_clock(1), ..Ports::default() };
    expect_consume(&mut ports, Consumed::Reused(refresh_record(now() + days(1))));
    ports.expect_session_ended(SessionEndReason::TokenReused);
    ports.expect_no_pair_issued();

    let result = ports.accounts().refresh("refresh-1").await;

    assert!(matches!(result, Err(RefreshError::Reused)), "got {result:?}");
}

#[tokio::test]
async fn an_unknown_or_revoked_refresh_token_is_invalid() {
    let mut ports = Ports::default();
    expect_consume(&mut ports, Consumed::Invalid);
    ports.refresh.expect_revoke_session().never();
    ports.expect_no_pair_issued();

    let result = ports.accounts().refresh("refresh-1").await;

    assert!(matches!(result, Err(RefreshError::Invalid)), "got {result:?}");
}

#[tokio::test]
async fn a_refresh_token_past_its_expiry_is_invalid() {
    let mut ports = Ports { clock: fixed_clock(1), ..Ports::default() };
    // Expiring exactly now counts as expired.
    expect_consume(&mut ports, Consumed::Fresh(refresh_record(now())));
    ports.users.expect_by_id().never();
    ports.expect_no_pair_issued();

    let result = ports.accounts().refresh("refresh-1").await;

    assert!(matches!(result, Err(RefreshError::Invalid)), "got {result:?}");
}

#[tokio::test]
async fn a_refresh_token_of_a_deleted_user_is_invalid() {
    let mut ports = Ports { clock: fixed_clock(1), ..Ports::default() };
    expect_consume(&mut ports, Consumed::Fresh(refresh_record(now() + days(1))));
    ports.users.expect_by_id().times(1).returning(|_| Ok(None));
    ports.expect_no_pair_issued();

    let result = ports.accounts().refresh("refresh-1").await;

    assert!(matches!(result, Err(RefreshError::Invalid)), "got {result:?}");
}

// --- logout ---

#[tokio::test]
async fn logging_out_revokes_the_session_and_ends_its_live_connections_everywhere() {
    let mut ports = Ports { clock: fixed_clock(1), ..Ports::default() };
    ports.expect_session_ended(SessionEndReason::LoggedOut);
    let caller = Authenticated { user: alice(), claims: claims() };

    let result = ports.accounts().logout(&caller).await;

    assert!(result.is_ok(), "got {result:?}");
}

#[tokio::test]
async fn after_logout_the_sessions_access_token_is_refused_as_revoked_at_once() {
    let mut ports = Ports { clock: fixed_clock(1), ..Ports::default() };
    ports.expect_session_ended(SessionEndReason::LoggedOut);
    ports.tokens.expect_verify_access().times(1).returning(|_| Ok(claims()));
    ports.users.expect_by_id().never();
    let accounts = ports.accounts();
    accounts.logout(&Authenticated { user: alice(), claims: claims() }).await.expect("logged out");

    let result = accounts.authenticate("access-1").await;

    assert!(matches!(result, Err(AuthError::Revoked)), "got {result:?}");
}

#[tokio::test]
async fn another_session_of_the_same_user_still_authenticates_after_a_logout() {
    let mut ports = Ports { clock: fixed_clock(1), ..Ports::default() };
    ports.expect_session_ended(SessionEndReason::LoggedOut);
    let other = AccessClaims { session: SessionId(uuid::Uuid::from_u128(0x077e2)), ..claims() };
    ports.tokens.expect_verify_access().times(1).returning(move |_| Ok(other.clone()));
    ports.users.expect_by_id().times(1).returning(|_| Ok(Some(alice())));
    let accounts = ports.accounts();
    accounts.logout(&Authenticated { user: alice(), claims: claims() }).await.expect("logged out");

    let result = accounts.authenticate("access-of-the-phone").await;

    assert!(result.is_ok(), "got {result:?}");
}

#[tokio::test]
async fn a_session_another_node_ended_is_refused_here() {
    let mut ports = Ports { clock: fixed_clock(1), ..Ports::default() };
    ports.tokens.expect_verify_access().times(1).returning(|_| Ok(claims()));
    let accounts = ports.accounts();
    accounts.session_ended_elsewhere(session());

    let result = accounts.authenticate("access-1").await;

    assert!(matches!(result, Err(AuthError::Revoked)), "got {result:?}");
}

#[tokio::test]
async fn reloading_learns_the_revocations_of_the_last_access_token_lifetime_from_the_store() {
    // Arrange: the store knows of a revocation this node never heard of.
    let mut ports = Ports { clock: fixed_clock(1), ..Ports::default() };
    ports.tokens.expect_access_ttl().times(1).returning(|| minutes(15));
    let missed = Revocation { session: session(), revoked_at: now() - minutes(1), expires_at: now() + days(30) };
    ports
        .refresh
        .expect_revoked_since()
        .withf(|since| *since == now() - minutes(15))
        .times(1)
        .returning(move |_| Ok(vec![missed]));
    ports.tokens.expect_verify_access().times(1).returning(|_| Ok(claims()));
    let accounts = ports.accounts();

    // Act
    let known = accounts.reload_revocations().await.expect("reloaded");
    let result = accounts.authenticate("access-1").await;

    // Assert
    assert_eq!(known, 1);
    assert!(matches!(result, Err(AuthError::Revoked)), "got {result:?}");
}

// --- authenticate ---

#[tokio::test]
async fn a_valid_access_token_of_an_existing_user_authenticates() {
    let mut ports = Ports::default();
    ports.tokens.expect_verify_access().withf(|token| token == "access-1").times(1).returning(|_| Ok(claims()));
    ports.users.expect_by_id().withf(|id| *id == alice().id).times(1).returning(|_| Ok(Some(alice())));

    let caller = ports.accounts().authenticate("access-1").await.expect("authenticated");

    assert_eq!(caller, Authenticated { user: alice(), claims: claims() });
}

#[tokio::test]
async fn an_expired_access_token_is_reported_as_expired() {
    let mut ports = Ports::default();
    ports.tokens.expect_verify_access().times(1).returning(|_| Err(TokenError::Expired));
    ports.users.expect_by_id().never();

    let result = ports.accounts().authenticate("access-1").await;

    assert!(matches!(result, Err(AuthError::Expired)), "got {result:?}");
}

#[tokio::test]
async fn a_badly_signed_access_token_is_invalid() {
    let mut ports = Ports::default();
    ports.tokens.expect_verify_access().times(1).returning(|_| Err(TokenError::Invalid("bad signature".into())));
    ports.users.expect_by_id().never();

    let result = ports.accounts().authenticate("access-1").await;

    assert!(matches!(result, Err(AuthError::Invalid)), "got {result:?}");
}

#[tokio::test]
async fn an_access_token_of_a_user_who_no_longer_exists_is_invalid() {
    let mut ports = Ports::default();
    ports.tokens.expect_verify_access().times(1).returning(|_| Ok(claims()));
    ports.users.expect_by_id().times(1).returning(|_| Ok(None));

    let result = ports.accounts().authenticate("access-1").await;

    assert!(matches!(result, Err(AuthError::Invalid)), "got {result:?}");
}
