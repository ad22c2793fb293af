//! e2e: accounts and tokens: register, login and its rate limit, refresh rotation and reuse detection,
//! logout, `/users/me`, and the access tokens a protected route refuses.

use std::time::Duration;

use e2e::{Reply, TestApp, TestUser, PASSWORD};
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// A secret both apps of a pair can be given, at least 32 bytes long.
const SHARED_SECRET: &str = "an-e2e-secret-shared-by-two-apps-0123456789";

/// Asserts the uniform refusal of a protected route: 401, `WWW-Authenticate: Bearer`, `{code, message}`.
fn assert_refused(reply: &Reply, code: &str) {
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{reply:?}");
    assert_eq!(reply.header("www-authenticate"), Some("Bearer"), "{reply:?}");
    assert_eq!(reply.body["code"], code, "{reply:?}");
    assert!(!reply.body["message"].as_str().unwrap_or_default().is_empty(), "{reply:?}");
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Base64url without padding, as JWT segments are encoded.
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// Two apps over one database, so a user of one exists for the other and only token settings differ.
async fn twin_apps(first: &[(&str, &str)], second: &[(&str, &str)]) -> (TestApp, TestApp) {
    let first = TestApp::spawn_with(first).await;
    let second = TestApp::spawn_in(first.data_dir.clone(), second).await;
    (first, second)
}

/// Signs `user` up on `home` and logs them in on `issuer`, returning the access token `issuer` gave.
async fn token_issued_elsewhere(home: &TestApp, issuer: &TestApp) -> (TestUser, String) {
    let user = home.signup("ada").await;
    let (status, tokens) = issuer.login(&user.username, PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    (user, tokens["access_token"].as_str().expect("an access token").to_owned())
}

async fn registering_returns_201_with_the_new_users_id_name_and_creation_time() {
    // Arrange
    let app = TestApp::spawn().await;

    // Act
    let (status, body) = app.register("ada", PASSWORD).await;

    // Assert
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let fields = e2e::field_names(&body);
    assert_eq!(fields, ["created_at", "id", "username"]);
    assert!(uuid::Uuid::parse_str(body["id"].as_str().unwrap()).is_ok(), "{body}");
    assert_eq!(body["username"], "ada");
    assert!(body["created_at"].as_str().unwrap().ends_with('Z'), "RFC 3339 in UTC: {body}");
}

async fn registering_a_taken_username_is_a_409_even_in_a_different_case() {
    // Arrange
    let app = TestApp::spawn().await;
    let (status, _) = app.register("ada", PASSWORD).await;
    assert_eq!(status, StatusCode::CREATED);

    for name in ["ada", "ADA", "Ada"] {
        // Act
        let (status, body) = app.register(name, PASSWORD).await;

        // Assert
        assert_eq!(status, StatusCode::CONFLICT, "{name}: {body}");
        assert_eq!(body["code"], "username_taken");
        assert!(body["message"].as_str().unwrap().contains("username"), "{body}");
    }
}

async fn an_invalid_username_is_a_400_whose_message_names_the_field() {
    // Arrange
    let app = TestApp::spawn().await;

    for name in ["a", "1ada", "ada lovelace", "ada!", &"a".repeat(33)] {
        // Act
        let (status, body) = app.register(name, PASSWORD).await;

        // Assert
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}: {body}");
        assert_eq!(body["code"], "invalid_username");
        assert!(body["message"].as_str().unwrap().starts_with("username"), "{body}");
    }
}

async fn a_weak_password_is_a_400_whose_message_names_the_field() {
    // Arrange
    let app = TestApp::spawn().await;

    for password in ["short", "password", "adalovelace", "AdaLovelace", &"x".repeat(129)] {
        // Act
        let (status, body) = app.register("adalovelace", password).await;

        // Assert
        assert_eq!(status, StatusCode::BAD_REQUEST, "{password}: {body}");
        assert_eq!(body["code"], "weak_password");
        assert!(body["message"].as_str().unwrap().starts_with("password"), "{body}");
    }
}

async fn a_registration_missing_a_field_is_a_400_not_a_500() {
    // Arrange
    let app = TestApp::spawn().await;

    // Act
    let (status, body) =
        app.call(Method::POST, "/auth/register", None, Some(serde_json::json!({"username": "ada"}))).await;

    // Assert
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], "invalid_request");
    assert!(!body["message"].as_str().unwrap().is_empty(), "{body}");
}

async fn logging_in_returns_a_bearer_token_pair_and_its_lifetime() {
    // Arrange
    let app = TestApp::spawn().await;
    app.register("ada", PASSWORD).await;

    // Act
    let (status, body) = app.login("ada", PASSWORD).await;

    // Assert
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body["access_token"].as_str().unwrap().split('.').count(), 3, "a JWT: {body}");
    assert!(!body["refresh_token"].as_str().unwrap().is_empty(), "{body}");
}

async fn an_unknown_user_and_a_wrong_password_get_the_same_401() {
    // Arrange
    let app = TestApp::spawn().await;
    app.register("ada", PASSWORD).await;
    let login = |username: &'static str, password: &'static str| {
        let request = app.http.post(app.url("/auth/login")).json(&serde_json::json!({
            "username": username, "password": password,
        }));
        app.send(request)
    };

    // Act
    let wrong_password = login("ada", "not the right password").await;
    let unknown_user = login("grace", PASSWORD).await;

    // Assert
    assert_refused(&wrong_password, "invalid_credentials");
    assert_eq!(wrong_password.status, unknown_user.status);
    assert_eq!(wrong_password.body, unknown_user.body);
    assert_eq!(wrong_password.header("www-authenticate"), unknown_user.header("www-authenticate"));
}

async fn repeated_failed_logins_for_one_username_are_rate_limited_with_retry_after() {
    // Arrange: five failures for one username.
    let app = TestApp::spawn().await;
    app.register("ada", PASSWORD).await;
    app.register("grace", PASSWORD).await;
    for _ in 0..5 {
        let (status, _) = app.login("ada", "not the right password").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let login = |username: &str| {
        let body = serde_json::json!({"username": username, "password": PASSWORD});
        app.send(app.http.post(app.url("/auth/login")).json(&body))
    };

    // Act: even the right password is refused now, in any case of the name.
    let limited = login("ada").await;
    let limited_other_case = login("ADA").await;
    let other_user = login("grace").await;

    // Assert
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS, "{limited:?}");
    assert_eq!(limited.body["code"], "rate_limited");
    let retry_after: u64 = limited.header("retry-after").expect("Retry-After").parse().expect("seconds");
    assert!((1..=900).contains(&retry_after), "{retry_after}");
    assert_eq!(limited_other_case.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(other_user.status, StatusCode::OK, "another username is not limited: {other_user:?}");
}

async fn parallel_wrong_logins_for_one_username_stop_at_the_limit() {
    // Arrange
    let app = TestApp::spawn().await;
    app.register("ada", PASSWORD).await;

    // Act: twelve guesses at once, none finished before the others start.
    let guesses = (0..12).map(|n| app.login("ada", if n % 2 == 0 { "guess number one" } else { "guess number two" }));
    let statuses: Vec<StatusCode> = futures::future::join_all(guesses).await.into_iter().map(|(s, _)| s).collect();

    // Assert: the default five failures, then 429s.
    let checked = statuses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count();
    let limited = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    assert_eq!((checked, limited), (5, 7), "{statuses:?}");
}

async fn a_stranger_who_fails_logins_for_a_name_does_not_lock_its_owner_out() {
    // Arrange: the stranger's requests come from another loopback address.
    let app = TestApp::spawn().await;
    app.register("ada", PASSWORD).await;
    let stranger = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .expect("a client bound to 127.0.0.2");
    let body = serde_json::json!({"username": "ada", "password": "not the right password"});
    for _ in 0..6 {
        app.send(stranger.post(app.url("/auth/login")).json(&body)).await;
    }
    let stranger_again = app.send(stranger.post(app.url("/auth/login")).json(&body)).await;

    // Act
    let (owner, tokens) = app.login("ada", PASSWORD).await;

    // Assert
    assert_eq!(stranger_again.status, StatusCode::TOO_MANY_REQUESTS, "{stranger_again:?}");
    assert_eq!(owner, StatusCode::OK, "{tokens}");
}

async fn signing_up_past_the_per_address_limit_is_a_429_with_retry_after() {
    // Arrange
    let app = TestApp::spawn_with(&[("CHAT_REGISTRATIONS_PER_ADDRESS", "2")]).await;
    app.register("ada", PASSWORD).await;
    app.register("grace", PASSWORD).await;

    // Act
    let request = app.http.post(app.url("/auth/register")).json(&serde_json::json!({
        "username": "linus", "password": PASSWORD,
    }));
    let third = app.send(request).await;

    // Assert
    assert_eq!(third.status, StatusCode::TOO_MANY_REQUESTS, "{third:?}");
    assert_eq!(third.body["code"], "rate_limited");
    let retry_after: u64 = third.header("retry-after").expect("Retry-After").parse().expect("seconds");
    assert!((1..=3600).contains(&retry_after), "{retry_after}");
}

async fn logins_beyond_the_password_hashing_queue_get_503_with_retry_after_not_500() {
    // Arrange: one hashing thread and one waiting place.
    let app = TestApp::spawn_with(&[("CHAT_PASSWORD_HASH_THREADS", "1"), ("CHAT_PASSWORD_HASH_QUEUE", "1")]).await;
    let names: Vec<String> = (0..10).map(|n| format!("user{n}")).collect();
    for name in &names {
        app.register(name, PASSWORD).await;
    }

    // Act: ten users log in at once, with the right password.
    let logins = names.iter().map(|name| {
        let body = serde_json::json!({"username": name, "password": PASSWORD});
        app.send(app.http.post(app.url("/auth/login")).json(&body))
    });
    let replies = futures::future::join_all(logins).await;

    // Assert
    let busy: Vec<&Reply> = replies.iter().filter(|r| r.status == StatusCode::SERVICE_UNAVAILABLE).collect();
    let served = replies.iter().filter(|r| r.status == StatusCode::OK).count();
    assert!(!busy.is_empty() && served >= 1 && busy.len() + served == 10, "{replies:?}");
    assert!(busy.iter().all(|r| r.body["code"] == "busy" && r.header("retry-after") == Some("1")), "{busy:?}");
}

async fn a_field_far_over_the_length_the_spec_states_is_a_400_naming_it() {
    // Arrange: the spec says username ≤ 32 and refresh_token ≤ 256 characters; a login name is
    // refused while parsing past 256, before it can key the login limiter.
    let app = TestApp::spawn().await;
    let long = "a".repeat(257);

    // Act
    let login = app.send(app.http.post(app.url("/auth/login")).json(&serde_json::json!({
        "username": long, "password": PASSWORD,
    })));
    let refresh = app.send(app.http.post(app.url("/auth/refresh")).json(&serde_json::json!({"refresh_token": long})));
    let (login, refresh) = futures::join!(login, refresh);

    // Assert
    for (reply, field) in [(&login, "username"), (&refresh, "refresh_token")] {
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{reply:?}");
        assert_eq!(reply.body["code"], "invalid_request", "{reply:?}");
        let message = reply.body["message"].as_str().unwrap_or_default();
        assert!(message.contains(field) && message.contains("256"), "{message}");
    }
}

async fn refreshing_hands_out_a_new_pair_whose_tokens_both_work() {
    // Arrange
    let app = TestApp::spawn().await;
    let ada = app.signup("ada").await;

    // Act
    let (status, pair) = app.refresh(&ada.refresh_token).await;

    // Assert
    assert_eq!(status, StatusCode::OK, "{pair}");
    assert_eq!(pair["token_type"], "Bearer");
    let (access, refresh) = (pair["access_token"].as_str().unwrap(), pair["refresh_token"].as_str().unwrap());
    assert_ne!(refresh, ada.refresh_token);
    let (status, me) = app.get("/users/me", access).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["id"], ada.id.as_str());
    let (status, next) = app.refresh(refresh).await;
    assert_eq!(status, StatusCode::OK, "the new refresh token works once too: {next}");
}

async fn reusing_a_refresh_token_is_a_401_token_reused_and_revokes_its_newer_tokens() {
    // Arrange: the token is used once, legitimately; a second login is another session.
    let app = TestApp::spawn().await;
    let ada = app.signup("ada").await;
    let (_, rotated) = app.refresh(&ada.refresh_token).await;
    let newer = rotated["refresh_token"].as_str().unwrap().to_owned();
    let (_, other_session) = app.login(&ada.username, PASSWORD).await;

    // Act
    let (status, body) = app.refresh(&ada.refresh_token).await;

    // Assert
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["code"], "token_reused");
    let (status, body) = app.refresh(&newer).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the stolen session is revoked whole: {body}");
    let (status, body) = app.refresh(other_session["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "other sessions are untouched: {body}");
}

async fn an_unknown_refresh_token_is_a_401_invalid_token() {
    // Arrange
    let app = TestApp::spawn().await;

    // Act
    let (status, body) = app.refresh("never-issued").await;

    // Assert
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["code"], "invalid_token");
}

async fn logging_out_is_a_204_after_which_the_refresh_token_is_refused() {
    // Arrange
    let app = TestApp::spawn().await;
    let ada = app.signup("ada").await;

    // Act
    let (status, body) = app.call(Method::POST, "/auth/logout", Some(&ada.access_token), None).await;

    // Assert
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(body, Value::Null);
    let (status, body) = app.refresh(&ada.refresh_token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
}

async fn logging_out_closes_the_users_open_sockets_with_4001_logged_out_and_no_one_elses() {
    // Arrange
    let app = TestApp::spawn().await;
    let ada = app.signup("ada").await;
    let grace = app.signup("grace").await;
    let mut ada_socket = app.socket(&ada).await;
    let mut grace_socket = app.socket(&grace).await;

    // Act
    let (status, _) = app.call(Method::POST, "/auth/logout", Some(&ada.access_token), None).await;

    // Assert
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(ada_socket.closed().await, (4001, "logged_out".to_owned()));
    grace_socket.expect_none_of("error", Duration::from_millis(300)).await;
}

/// Waits until every socket node refuses `token`'s handshake with 401, for at most the revocation
/// reload period and a margin: split nodes learn of a revocation from the bus, or failing that the store.
async fn refused_by_every_socket_node(app: &TestApp, token: &str) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    for node in 0..app.socket_addrs.len() {
        while app.handshake_status(node, Some(token), None, None).await != 401 {
            if tokio::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    true
}

async fn after_logout_the_access_token_is_refused_by_every_route_and_socket_node() {
    // Arrange
    let app = TestApp::spawn().await;
    let ada = app.signup("ada").await;

    // Act
    let (status, _) = app.call(Method::POST, "/auth/logout", Some(&ada.access_token), None).await;

    // Assert
    assert_eq!(status, StatusCode::NO_CONTENT);
    let me = app.send(app.http.get(app.url("/users/me")).bearer_auth(&ada.access_token)).await;
    assert_refused(&me, "session_revoked");
    let body = serde_json::json!({"name": "after logout", "visibility": "public"});
    let create = app.send(app.http.post(app.url("/rooms")).bearer_auth(&ada.access_token).json(&body)).await;
    assert_refused(&create, "session_revoked");
    assert!(refused_by_every_socket_node(&app, &ada.access_token).await, "a socket node still accepts the token");
}

async fn logging_out_ends_only_that_sessions_sockets_and_tokens() {
    // Arrange: ada on a laptop and on a phone, two logins.
    let app = TestApp::spawn().await;
    let laptop = app.signup("ada").await;
    let (_, phone_tokens) = app.login(&laptop.username, PASSWORD).await;
    let phone = TestUser {
        access_token: phone_tokens["access_token"].as_str().expect("access").to_owned(),
        refresh_token: phone_tokens["refresh_token"].as_str().expect("refresh").to_owned(),
        ..laptop.clone()
    };
    let room = app.create_room(&laptop, "private", &[]).await["id"].as_str().expect("room id").to_owned();
    let mut laptop_socket = app.socket_on(&laptop, 0).await;
    let mut phone_socket = app.socket_on(&phone, 1).await;

    // Act
    let (status, _) = app.call(Method::POST, "/auth/logout", Some(&laptop.access_token), None).await;

    // Assert
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(laptop_socket.closed().await, (4001, "logged_out".to_owned()));
    let ack = phone_socket.send_text(&room, "phone-1", "still here").await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let (status, me) = app.get("/users/me", &phone.access_token).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    let (status, body) = app.refresh(&phone.refresh_token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn reusing_a_refresh_token_also_refuses_the_sessions_access_token_and_closes_its_sockets() {
    // Arrange: the thief rotated the token; the victim presents the old one again.
    let app = TestApp::spawn().await;
    let ada = app.signup("ada").await;
    let (_, rotated) = app.refresh(&ada.refresh_token).await;
    let thief = TestUser {
        access_token: rotated["access_token"].as_str().expect("access").to_owned(),
        refresh_token: rotated["refresh_token"].as_str().expect("refresh").to_owned(),
        ..ada.clone()
    };
    let mut thief_socket = app.socket_on(&thief, 1).await;

    // Act
    let (status, body) = app.refresh(&ada.refresh_token).await;

    // Assert
    assert_eq!(body["code"], "token_reused", "{status} {body}");
    assert_eq!(thief_socket.closed().await, (4001, "token_reused".to_owned()));
    let me = app.send(app.http.get(app.url("/users/me")).bearer_auth(&thief.access_token)).await;
    assert_refused(&me, "session_revoked");
    assert!(refused_by_every_socket_node(&app, &thief.access_token).await, "a socket node still accepts the token");
}

async fn logging_out_without_a_token_is_a_401() {
    // Arrange
    let app = TestApp::spawn().await;

    // Act
    let reply = app.send(app.http.post(app.url("/auth/logout"))).await;

    // Assert
    assert_refused(&reply, "unauthorized");
}

async fn users_me_returns_the_signed_in_user() {
    // Arrange
    let app = TestApp::spawn().await;
    let ada = app.signup("ada").await;

    // Act
    let (status, me) = app.get("/users/me", &ada.access_token).await;

    // Assert
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["id"], ada.id.as_str());
    assert_eq!(me["username"], ada.username.as_str());
    assert!(me["created_at"].is_string(), "{me}");
}

async fn a_protected_route_refuses_a_request_without_a_bearer_token() {
    // Arrange
    let app = TestApp::spawn().await;

    // Act
    let missing = app.get_authorized("/users/me", None).await;
    let basic = app.get_authorized("/users/me", Some("Basic YWRhOnNlY3JldA==")).await;

    // Assert
    assert_refused(&missing, "unauthorized");
    assert_refused(&basic, "unauthorized");
}

async fn a_protected_route_refuses_a_garbage_token() {
    // Arrange
    let app = TestApp::spawn().await;

    // Act
    let reply = app.get_authorized("/rooms", Some("Bearer not-a-jwt")).await;

    // Assert
    assert_refused(&reply, "invalid_token");
}

async fn a_protected_route_refuses_a_token_with_a_tampered_signature_or_payload() {
    // Arrange
    let app = TestApp::spawn().await;
    let ada = app.signup("ada").await;
    let grace = app.signup("grace").await;
    let parts: Vec<&str> = ada.access_token.split('.').collect();
    let signature = parts[2];
    let flipped = if signature.starts_with('A') { "B" } else { "A" };
    let tampered_signature = format!("{}.{}.{flipped}{}", parts[0], parts[1], &signature[1..]);
    let grace_payload = grace.access_token.split('.').nth(1).unwrap();
    let swapped_payload = format!("{}.{grace_payload}.{signature}", parts[0]);

    // Act
    let bad_signature = app.get_authorized("/users/me", Some(&bearer(&tampered_signature))).await;
    let bad_payload = app.get_authorized("/users/me", Some(&bearer(&swapped_payload))).await;

    // Assert
    assert_refused(&bad_signature, "invalid_token");
    assert_refused(&bad_payload, "invalid_token");
}

async fn a_protected_route_refuses_an_alg_none_token_in_every_spelling() {
    // Arrange: a real token's claims under an unsigned header.
    let app = TestApp::spawn().await;
    let ada = app.signup("ada").await;
    let payload = ada.access_token.split('.').nth(1).unwrap();

    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = base64url(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#).as_bytes());
        let unsigned = format!("{header}.{payload}.");

        // Act
        let reply = app.get_authorized("/users/me", Some(&bearer(&unsigned))).await;

        // Assert
        assert_refused(&reply, "invalid_token");
    }
}

async fn a_protected_route_refuses_an_expired_token_as_token_expired() {
    // Arrange: a one-second token, waited out past the five-second leeway.
    let app = TestApp::spawn_with(&[("CHAT_ACCESS_TOKEN_TTL_SECS", "1")]).await;
    let ada = app.signup("ada").await;
    tokio::time::sleep(Duration::from_secs(7)).await;

    // Act
    let reply = app.get_authorized("/users/me", Some(&bearer(&ada.access_token))).await;

    // Assert
    assert_refused(&reply, "token_expired");
}

#[tokio::test]
async fn a_protected_route_refuses_a_token_signed_with_another_secret() {
    // Arrange
    let other_secret = "another-e2e-secret-that-this-app-never-had-0123";
    let (app, other) = twin_apps(&[("CHAT_JWT_SECRET", SHARED_SECRET)], &[("CHAT_JWT_SECRET", other_secret)]).await;
    let (_, foreign) = token_issued_elsewhere(&app, &other).await;

    // Act
    let reply = app.get_authorized("/users/me", Some(&bearer(&foreign))).await;

    // Assert
    assert_refused(&reply, "invalid_token");
}

#[tokio::test]
async fn a_protected_route_refuses_a_token_for_another_issuer_or_audience() {
    // Arrange: same secret and database; only the issuer or the audience differs.
    let secret = ("CHAT_JWT_SECRET", SHARED_SECRET);
    let (app, other_issuer) = twin_apps(&[secret], &[secret, ("CHAT_JWT_ISSUER", "someone-else")]).await;
    let other_audience = TestApp::spawn_in(app.data_dir.clone(), &[secret, ("CHAT_JWT_AUDIENCE", "another-app")]).await;
    let twin = TestApp::spawn_in(app.data_dir.clone(), &[secret]).await;
    let (_, wrong_iss) = token_issued_elsewhere(&app, &other_issuer).await;
    let (_, wrong_aud) = token_issued_elsewhere(&app, &other_audience).await;
    let (_, same_settings) = token_issued_elsewhere(&app, &twin).await;

    // Act
    let iss_reply = app.get_authorized("/users/me", Some(&bearer(&wrong_iss))).await;
    let aud_reply = app.get_authorized("/users/me", Some(&bearer(&wrong_aud))).await;
    let control = app.get_authorized("/users/me", Some(&bearer(&same_settings))).await;

    // Assert
    assert_refused(&iss_reply, "invalid_token");
    assert_refused(&aud_reply, "invalid_token");
    assert_eq!(control.status, StatusCode::OK, "identical settings are accepted: {control:?}");
}

async fn a_protected_route_refuses_a_well_signed_token_whose_user_does_not_exist() {
    // Arrange: two apps with the same secret but separate databases; the user exists in one only.
    let secret = [("CHAT_JWT_SECRET", SHARED_SECRET)];
    let app = TestApp::spawn_with(&secret).await;
    let elsewhere = TestApp::spawn_with(&secret).await;
    let stranger = elsewhere.signup("ada").await;
    let (status, _) = elsewhere.get("/users/me", &stranger.access_token).await;
    assert_eq!(status, StatusCode::OK);

    // Act
    let reply = app.get_authorized("/users/me", Some(&bearer(&stranger.access_token))).await;

    // Assert
    assert_refused(&reply, "invalid_token");
}

e2e::on_both_shapes!(
    registering_returns_201_with_the_new_users_id_name_and_creation_time,
    registering_a_taken_username_is_a_409_even_in_a_different_case,
    an_invalid_username_is_a_400_whose_message_names_the_field,
    a_weak_password_is_a_400_whose_message_names_the_field,
    a_registration_missing_a_field_is_a_400_not_a_500,
    logging_in_returns_a_bearer_token_pair_and_its_lifetime,
    an_unknown_user_and_a_wrong_password_get_the_same_401,
    repeated_failed_logins_for_one_username_are_rate_limited_with_retry_after,
    parallel_wrong_logins_for_one_username_stop_at_the_limit,
    a_stranger_who_fails_logins_for_a_name_does_not_lock_its_owner_out,
    signing_up_past_the_per_address_limit_is_a_429_with_retry_after,
    logins_beyond_the_password_hashing_queue_get_503_with_retry_after_not_500,
    a_field_far_over_the_length_the_spec_states_is_a_400_naming_it,
    refreshing_hands_out_a_new_pair_whose_tokens_both_work,
    reusing_a_refresh_token_is_a_401_token_reused_and_revokes_its_newer_tokens,
    an_unknown_refresh_token_is_a_401_invalid_token,
    logging_out_is_a_204_after_which_the_refresh_token_is_refused,
    logging_out_closes_the_users_open_sockets_with_4001_logged_out_and_no_one_elses,
    after_logout_the_access_token_is_refused_by_every_route_and_socket_node,
    logging_out_ends_only_that_sessions_sockets_and_tokens,
    reusing_a_refresh_token_also_refuses_the_sessions_access_token_and_closes_its_sockets,
    logging_out_without_a_token_is_a_401,
    users_me_returns_the_signed_in_user,
    a_protected_route_refuses_a_request_without_a_bearer_token,
    a_protected_route_refuses_a_garbage_token,
    a_protected_route_refuses_a_token_with_a_tampered_signature_or_payload,
    a_protected_route_refuses_an_alg_none_token_in_every_spelling,
    a_protected_route_refuses_an_expired_token_as_token_expired,
    a_protected_route_refuses_a_well_signed_token_whose_user_does_not_exist,
);
