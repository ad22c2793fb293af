//! Handler tests of the account routes: register, login, refresh, logout and `/users/me`.

use std::sync::Arc;

use application::ports::{
    Consumed, CreateUserError, IssuedAccess, RefreshRecord, RoomEvent, SessionEndReason, SessionId, StoredUser,
    TokenError, TokenHash,
};
use chrono::Duration;
use poem::http::StatusCode;
use secrecy::SecretString;
use serde_json::json;
use uuid::Uuid;

use super::fixtures::{ada, claims_of, failure, now, send, Ports, GENERATED};
use crate::limiter::{LimiterConfig, LoginLimiter};

const PASSWORD: &str = "correct horse battery staple";

fn stored(user: &domain::User) -> StoredUser {
    StoredUser { user: user.clone(), password_hash: "$argon2id$stored".to_owned() }
}

fn record(session: SessionId, expires_at: domain::Timestamp) -> RefreshRecord {
    RefreshRecord {
        hash: TokenHash("hash-of-old".to_owned()),
        user_id: ada().id,
        session,
        created_at: now() - Duration::days(1),
        expires_at,
    }
}

/// The token service issues one pair: access `new-access`, refresh `new-refresh`, and the store keeps it.
fn issues_one_pair(ports: &mut Ports) {
    ports.tokens.expect_issue_access().times(1).returning(|_, _, now| {
        Ok(IssuedAccess {
            token: "new-access".to_owned(),
            expires_in_secs: 900,
            expires_at: now + Duration::minutes(15),
        })
    });
    ports
        .tokens
        .expect_new_refresh()
        .times(1)
        .returning(|| (SecretString::from("new-refresh"), TokenHash("hash-of-new".to_owned())));
    ports.tokens.expect_refresh_ttl().returning(|| Duration::days(30));
    ports.refresh.expect_insert().times(1).returning(|_| Ok(()));
}

fn credentials(username: &str, password: &str) -> serde_json::Value {
    json!({"username": username, "password": password})
}

#[tokio::test]
async fn register_answers_201_with_the_new_user() {
    // Arrange
    let mut ports = Ports::default();
    ports.hasher.expect_hash().times(1).returning(|_| Ok("$argon2id$new".to_owned()));
    ports
        .users
        .expect_create()
        .withf(|u| u.user.username.as_str() == "ada" && u.password_hash == "$argon2id$new")
        .times(1)
        .returning(|_| Ok(()));
    let client = ports.client();

    // Act
    let reply = send(client.post("/auth/register").body_json(&credentials("ada", PASSWORD))).await;

    // Assert
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    assert_eq!(
        reply.body,
        json!({"id": GENERATED.to_string(), "username": "ada", "created_at": "2023-11-14T22:13:20.000Z"})
    );
}

#[tokio::test]
async fn register_of_a_taken_username_answers_409_username_taken() {
    // Arrange
    let mut ports = Ports::default();
    ports.hasher.expect_hash().times(1).returning(|_| Ok("$argon2id$new".to_owned()));
    ports.users.expect_create().times(1).returning(|_| Err(CreateUserError::Duplicate));
    let client = ports.client();

    // Act
    let reply = send(client.post("/auth/register").body_json(&credentials("ada", PASSWORD))).await;

    // Assert
    let message = reply.assert_error(StatusCode::CONFLICT, "username_taken");
    assert!(message.starts_with("username"), "{message}");
}

#[tokio::test]
async fn register_with_an_invalid_username_answers_400_without_touching_storage() {
    // Arrange: no port expects a call.
    let client = Ports::default().client();

    // Act
    let reply = send(client.post("/auth/register").body_json(&credentials("1ada", PASSWORD))).await;

    // Assert
    let message = reply.assert_error(StatusCode::BAD_REQUEST, "invalid_username");
    assert!(message.starts_with("username:"), "{message}");
}

#[tokio::test]
async fn register_with_a_weak_password_answers_400_without_touching_storage() {
    // Arrange
    let client = Ports::default().client();

    // Act
    let reply = send(client.post("/auth/register").body_json(&credentials("ada", "short"))).await;

    // Assert
    let message = reply.assert_error(StatusCode::BAD_REQUEST, "weak_password");
    assert!(message.starts_with("password:"), "{message}");
}

#[tokio::test]
async fn register_answers_a_generic_500_when_the_user_repository_fails() {
    // Arrange
    let mut ports = Ports::default();
    ports.hasher.expect_hash().times(1).returning(|_| Ok("$argon2id$new".to_owned()));
    ports.users.expect_create().times(1).returning(|_| Err(CreateUserError::Unknown(failure())));
    let client = ports.client();

    // Act
    let reply = send(client.post("/auth/register").body_json(&credentials("ada", PASSWORD))).await;

    // Assert
    reply.assert_generic_500();
}

#[tokio::test]
async fn register_answers_a_generic_500_when_hashing_fails() {
    // Arrange
    let mut ports = Ports::default();
    ports.hasher.expect_hash().times(1).returning(|_| Err(failure().into()));
    let client = ports.client();

    // Act
    let reply = send(client.post("/auth/register").body_json(&credentials("ada", PASSWORD))).await;

    // Assert
    reply.assert_generic_500();
}

#[tokio::test]
async fn a_malformed_or_mistyped_body_answers_400_in_the_error_shape() {
    // Arrange
    let client = Ports::default().client();

    for body in [r#"{"username": "ada", "password": "#, r#"{"username": ["ada"], "password": "x"}"#, "[]", r#"{}"#] {
        // Act
        let reply =
            send(client.post("/auth/register").header("content-type", "application/json").body(body.to_owned())).await;

        // Assert
        reply.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    }
}

#[tokio::test]
async fn a_body_that_is_not_json_answers_415_in_the_error_shape() {
    // Arrange
    let client = Ports::default().client();

    // Act
    let reply = send(client.post("/auth/register").header("content-type", "text/plain").body("ada")).await;

    // Assert
    reply.assert_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
}

#[tokio::test]
async fn login_answers_200_with_a_bearer_pair() {
    // Arrange
    let mut ports = Ports::default();
    ports.users.expect_by_username().times(1).returning(|_| Ok(Some(stored(&ada()))));
    ports
        .hasher
        .expect_verify()
        .withf(|candidate, hash| candidate == PASSWORD && hash.as_deref() == Some("$argon2id$stored"))
        .times(1)
        .returning(|_, _| Ok(true));
    issues_one_pair(&mut ports);
    let client = ports.client();

    // Act
    let reply = send(client.post("/auth/login").body_json(&credentials("ada", PASSWORD))).await;

    // Assert
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(
        reply.body,
        json!({"access_token": "new-access", "refresh_token": "new-refresh", "token_type": "Bearer", "expires_in": 900})
    );
}

#[tokio::test]
async fn login_with_wrong_credentials_answers_401_invalid_credentials_and_counts_the_failure() {
    // Arrange: one failure is all a username gets.
    let mut ports = Ports {
        limiter: Arc::new(LoginLimiter::new(LimiterConfig { per_name: 1, ..LimiterConfig::default() })),
        ..Ports::default()
    };
    ports.users.expect_by_username().times(1).returning(|_| Ok(None));
    ports.hasher.expect_verify().withf(|_, hash| hash.is_none()).times(1).returning(|_, _| Ok(false));
    let client = ports.client();

    // Act
    let first = send(client.post("/auth/login").body_json(&credentials("ada", PASSWORD))).await;
    let second = send(client.post("/auth/login").body_json(&credentials("ada", PASSWORD))).await;

    // Assert
    first.assert_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    assert_eq!(first.header("www-authenticate"), Some("Bearer"));
    second.assert_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
}

#[tokio::test]
async fn login_while_rate_limited_answers_429_with_retry_after_without_checking_the_password() {
    // Arrange: the limit was reached earlier; no port expects a call.
    let ports = Ports::default();
    for _ in 0..5 {
        // The test client has no peer address, like a request whose address is unknown.
        let _failed = ports.limiter.begin_login("ada", None);
    }
    let client = ports.client();

    // Act
    let reply = send(client.post("/auth/login").body_json(&credentials("Ada", PASSWORD))).await;

    // Assert
    reply.assert_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    let retry_after: u64 = reply.header("retry-after").expect("Retry-After").parse().expect("seconds");
    assert!((1..=900).contains(&retry_after), "{retry_after}");
}

#[tokio::test]
async fn login_answers_a_generic_500_when_the_user_repository_fails() {
    // Arrange
    let mut ports = Ports::default();
    ports.users.expect_by_username().times(1).returning(|_| Err(failure()));
    let client = ports.client();

    // Act
    let reply = send(client.post("/auth/login").body_json(&credentials("ada", PASSWORD))).await;

    // Assert
    reply.assert_generic_500();
}

#[tokio::test]
async fn refresh_answers_200_with_a_new_pair_for_a_fresh_token() {
    // Arrange
    let session = SessionId(Uuid::from_u128(7));
    let mut ports = Ports::default();
    ports.tokens.expect_hash_refresh().withf(|t| t == "old-refresh").returning(|_| TokenHash("hash-of-old".to_owned()));
    ports
        .refresh
        .expect_consume()
        .withf(|h| h.0 == "hash-of-old")
        .times(1)
        .returning(move |_| Ok(Consumed::Fresh(record(session, now() + Duration::days(1)))));
    ports.user_exists(&ada());
    issues_one_pair(&mut ports);
    let client = ports.client();

    // Act
    let reply = send(client.post("/auth/refresh").body_json(&json!({"refresh_token": "old-refresh"}))).await;

    // Assert
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.body["access_token"], "new-access");
    assert_eq!(reply.body["refresh_token"], "new-refresh");
}

#[tokio::test]
async fn refresh_of_an_unknown_or_expired_token_answers_401_invalid_token() {
    for consumed in [Consumed::Invalid, Consumed::Fresh(record(SessionId(Uuid::from_u128(7)), now()))] {
        // Arrange
        let mut ports = Ports::default();
        ports.tokens.expect_hash_refresh().returning(|_| TokenHash("hash-of-old".to_owned()));
        ports.refresh.expect_consume().times(1).returning(move |_| Ok(consumed.clone()));
        let client = ports.client();

        // Act
        let reply = send(client.post("/auth/refresh").body_json(&json!({"refresh_token": "old-refresh"}))).await;

        // Assert
        reply.assert_error(StatusCode::UNAUTHORIZED, "invalid_token");
        assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
    }
}

#[tokio::test]
async fn refresh_of_a_used_token_answers_401_token_reused_and_revokes_its_session() {
    // Arrange
    let session = SessionId(Uuid::from_u128(7));
    let mut ports = Ports::default();
    ports.tokens.expect_hash_refresh().returning(|_| TokenHash("hash-of-old".to_owned()));
    ports
        .refresh
        .expect_consume()
        .times(1)
        .returning(move |_| Ok(Consumed::Reused(record(session, now() + Duration::days(1)))));
    ports.tokens.expect_refresh_ttl().returning(|| Duration::days(30));
    ports.refresh.expect_revoke_session().withf(move |r| r.session == session).times(1).returning(|_| Ok(()));
    ports
        .bus
        .expect_publish()
        .withf(move |e| {
            *e == RoomEvent::SessionEnded { user_id: ada().id, session, reason: SessionEndReason::TokenReused }
        })
        .times(1)
        .returning(|_| Ok(()));
    let client = ports.client();

    // Act
    let reply = send(client.post("/auth/refresh").body_json(&json!({"refresh_token": "old-refresh"}))).await;

    // Assert
    reply.assert_error(StatusCode::UNAUTHORIZED, "token_reused");
}

#[tokio::test]
async fn refresh_answers_a_generic_500_when_the_token_store_fails() {
    // Arrange
    let mut ports = Ports::default();
    ports.tokens.expect_hash_refresh().returning(|_| TokenHash("hash-of-old".to_owned()));
    ports.refresh.expect_consume().times(1).returning(|_| Err(failure()));
    let client = ports.client();

    // Act
    let reply = send(client.post("/auth/refresh").body_json(&json!({"refresh_token": "old-refresh"}))).await;

    // Assert
    reply.assert_generic_500();
}

#[tokio::test]
async fn logout_answers_204_after_revoking_the_session_and_ending_the_users_live_sockets() {
    // Arrange
    let mut ports = Ports::default();
    let auth = ports.sign_in(&ada());
    let session = claims_of(&ada()).session;
    ports.tokens.expect_refresh_ttl().returning(|| Duration::days(30));
    ports.refresh.expect_revoke_session().withf(move |r| r.session == session).times(1).returning(|_| Ok(()));
    ports
        .bus
        .expect_publish()
        .withf(move |e| {
            *e == RoomEvent::SessionEnded { user_id: ada().id, session, reason: SessionEndReason::LoggedOut }
        })
        .times(1)
        .returning(|_| Ok(()));
    let client = ports.client();

    // Act
    let reply = send(client.post("/auth/logout").header("authorization", auth)).await;

    // Assert
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{reply:?}");
    assert_eq!(reply.body, serde_json::Value::Null);
}

#[tokio::test]
async fn logout_answers_a_generic_500_when_revoking_fails() {
    // Arrange
    let mut ports = Ports::default();
    let auth = ports.sign_in(&ada());
    ports.tokens.expect_refresh_ttl().returning(|| Duration::days(30));
    ports.refresh.expect_revoke_session().times(1).returning(|_| Err(failure()));
    let client = ports.client();

    // Act
    let reply = send(client.post("/auth/logout").header("authorization", auth)).await;

    // Assert
    reply.assert_generic_500();
}

#[tokio::test]
async fn logout_without_a_token_answers_401_with_www_authenticate() {
    // Arrange
    let client = Ports::default().client();

    // Act
    let reply = send(client.post("/auth/logout")).await;

    // Assert
    reply.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
}

#[tokio::test]
async fn me_answers_200_with_the_signed_in_user() {
    // Arrange
    let mut ports = Ports::default();
    let auth = ports.sign_in(&ada());
    let client = ports.client();

    // Act
    let reply = send(client.get("/users/me").header("authorization", auth)).await;

    // Assert
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(
        reply.body,
        json!({"id": ada().id.to_string(), "username": "ada", "created_at": "2023-11-13T22:13:20.000Z"})
    );
}

#[tokio::test]
async fn an_expired_access_token_answers_401_token_expired() {
    // Arrange
    let mut ports = Ports::default();
    ports.tokens.expect_verify_access().times(1).returning(|_| Err(TokenError::Expired));
    let client = ports.client();

    // Act
    let reply = send(client.get("/users/me").header("authorization", "Bearer stale")).await;

    // Assert
    reply.assert_error(StatusCode::UNAUTHORIZED, "token_expired");
    assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
}

#[tokio::test]
async fn an_invalid_access_token_answers_401_invalid_token_without_saying_why() {
    // Arrange
    let mut ports = Ports::default();
    ports
        .tokens
        .expect_verify_access()
        .times(1)
        .returning(|_| Err(TokenError::Invalid("InvalidSignature: hmac mismatch".to_owned())));
    let client = ports.client();

    // Act
    let reply = send(client.get("/users/me").header("authorization", "Bearer forged")).await;

    // Assert
    let message = reply.assert_error(StatusCode::UNAUTHORIZED, "invalid_token");
    assert!(!message.contains("hmac"), "{message}");
    assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
}

#[tokio::test]
async fn a_valid_token_of_a_user_who_no_longer_exists_answers_401_invalid_token() {
    // Arrange
    let mut ports = Ports::default();
    let claims = claims_of(&ada());
    ports.tokens.expect_verify_access().times(1).returning(move |_| Ok(claims.clone()));
    ports.users.expect_by_id().times(1).returning(|_| Ok(None));
    let client = ports.client();

    // Act
    let reply = send(client.get("/users/me").header("authorization", "Bearer orphan")).await;

    // Assert
    reply.assert_error(StatusCode::UNAUTHORIZED, "invalid_token");
}

#[tokio::test]
async fn authentication_answers_a_generic_500_when_the_user_lookup_fails() {
    // Arrange
    let mut ports = Ports::default();
    let claims = claims_of(&ada());
    ports.tokens.expect_verify_access().times(1).returning(move |_| Ok(claims.clone()));
    ports.users.expect_by_id().times(1).returning(|_| Err(failure()));
    let client = ports.client();

    // Act
    let reply = send(client.get("/users/me").header("authorization", "Bearer valid")).await;

    // Assert
    reply.assert_generic_500();
}
