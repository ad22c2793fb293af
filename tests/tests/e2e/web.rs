//! The web client in a real headless Chromium: two people chat through it, on both shapes.

use e2e::browser::{Driver, Page};
use e2e::{current_shape, Shape, TestApp, TestUser, PASSWORD};
use serde_json::json;

/// Like `on_both_shapes!`, but both need Chromium, so plain `cargo test` shows them as ignored.
macro_rules! in_a_browser_on_both_shapes {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test]
                #[ignore = "needs chromium and chromium-driver (scripts/test.sh)"]
                async fn $name() {
                    e2e::SHAPE.scope(e2e::Shape::Embedded, super::$name()).await
                }
            )*
        }
        mod split {
            $(
                #[tokio::test]
                #[ignore = "needs chromium, chromium-driver, Redis and MongoDB (scripts/test.sh)"]
                async fn $name() {
                    e2e::SHAPE.scope(e2e::Shape::Split, super::$name()).await
                }
            )*
        }
    };
}

in_a_browser_on_both_shapes!(
    two_people_chat_share_an_image_and_recover_after_a_reload_and_a_lost_socket,
    one_person_keeps_a_short_lived_session_sees_refusals_joins_and_leaves_a_public_room_and_logs_out,
);

/// A 120×80 striped PNG.
const PNG: &[u8] = include_bytes!("stripes.png");

/// The messages of the open room whose text contains `text`.
async fn count_of(page: &Page, text: &str) -> usize {
    page.texts("#messages li .text").await.iter().filter(|t| t.contains(text)).count()
}

async fn register(page: &Page, username: &str) {
    page.fill("#username", username).await;
    page.fill("#password", PASSWORD).await;
    page.click("#register").await;
    page.shows("#me", username).await;
    page.shows("#status", "online").await;
}

/// Saves the page to `CHAT_WEB_SCREENSHOTS/<name>.png` when that directory is set (docs/screenshots).
async fn screenshot(page: &Page, name: &str) {
    if let Some(dir) = std::env::var_os("CHAT_WEB_SCREENSHOTS") {
        page.screenshot(&std::path::Path::new(&dir).join(format!("{name}.png"))).await;
    }
}

/// Alice signed in on another device, through the API.
async fn alice_elsewhere(app: &TestApp, username: &str) -> TestUser {
    let (_, tokens) = app.login(username, PASSWORD).await;
    let access_token = tokens["access_token"].as_str().unwrap().to_owned();
    let (_, me) = app.get("/users/me", &access_token).await;
    TestUser {
        id: me["id"].as_str().unwrap().to_owned(),
        username: username.to_owned(),
        access_token,
        refresh_token: tokens["refresh_token"].as_str().unwrap().to_owned(),
    }
}

async fn two_people_chat_share_an_image_and_recover_after_a_reload_and_a_lost_socket() {
    // A test client sends a page of history in one go.
    let app = TestApp::spawn_for_browser(&[("CHAT_WS_RATE_PER_SEC", "1000"), ("CHAT_WS_BURST", "1000")]).await;
    let driver = Driver::start().await;
    let suffix: String = uuid::Uuid::new_v4().simple().to_string().chars().take(8).collect();
    let (alice_name, bob_name) = (format!("alice{suffix}"), format!("bob{suffix}"));
    // In the split shape each of them talks to a socket node of their own.
    let alice = driver.open(&format!("{}/?socket=0", app.base)).await;
    let bob = driver.open(&format!("{}/?socket=1", app.base)).await;

    // A wrong password is said so; then both sign up.
    bob.fill("#username", &bob_name).await;
    bob.fill("#password", "not the password").await;
    screenshot(&bob, "login").await;
    bob.click("#login").await;
    bob.shows("#auth-error", "Wrong username or password").await;
    register(&alice, &alice_name).await;
    register(&bob, &bob_name).await;

    // Alice makes a room and invites Bob, who sees it appear and opens it.
    alice.fill("#room-name", "team").await;
    alice.click("#create-room button").await;
    alice.shows("#room-title", "team").await;
    alice.fill("#invite-name", &bob_name).await;
    alice.click("#invite button").await;
    alice.shows("#members li", &bob_name).await;
    bob.click_text("#rooms li", "team").await;
    bob.shows("#room-title", "team").await;
    alice.until("bob is shown online", "return !!document.querySelector('#members li.online[data-user^=bob]')").await;

    // They see each other type, and talk both ways.
    alice.type_into("#text", "hello b").await;
    bob.shows("#typing", &format!("{alice_name} is typing")).await;
    alice.type_into("#text", "ob").await;
    alice.click("#send").await;
    bob.shows("#messages li", "hello bob").await;
    bob.fill("#text", "hi alice").await;
    bob.click("#send").await;
    alice.shows("#messages li", "hi alice").await;

    // An image Alice uploads shows inline for Bob.
    let image = app.data_dir.path().join("stripes.png");
    std::fs::write(&image, PNG).expect("write the image");
    alice.type_into("#file", &image.display().to_string()).await;
    let image_loaded = "const img = document.querySelector('#messages img'); \
                        return !!img && img.complete && img.naturalWidth === 120 && img.src.startsWith('blob:')";
    alice.until("alice sees her image", image_loaded).await;
    bob.until("bob sees alice's image inline", image_loaded).await;
    screenshot(&alice, "chat").await;

    // Alice chatters from another device, more than one page of history.
    let chatter = alice_elsewhere(&app, &alice_name).await;
    let room_id = app.get("/rooms", &chatter.access_token).await.1["items"][0]["id"].as_str().unwrap().to_owned();
    let mut socket = app.socket(&chatter).await;
    for i in 0..55 {
        let ack = socket.send_text(&room_id, &format!("chatter-{i}"), &format!("chatter {i}")).await;
        assert_eq!(ack["type"], "ack", "{ack}");
    }

    // Bob reloads: still signed in, he gets the newest page, and pages back to the start.
    bob.client.refresh().await.expect("reload");
    bob.shows("#status", "online").await;
    bob.shows("#rooms li", "team").await;
    screenshot(&bob, "rooms").await;
    bob.click_text("#rooms li", "team").await;
    bob.shows("#messages li", "chatter 54").await;
    assert_eq!(count_of(&bob, "hello bob").await, 0, "only the newest page is loaded");
    bob.click("#older").await;
    bob.shows("#messages li", "hello bob").await;
    bob.shows("#messages li", "hi alice").await;
    bob.until("bob sees the image again", image_loaded).await;

    // Bob's socket drops; what Alice says meanwhile reaches him once it is back, once each.
    bob.run("window.chat.goOffline()", vec![]).await;
    bob.shows("#status", "offline").await;
    alice.until("alice sees bob offline", "return !document.querySelector('#members li.online[data-user^=bob]')").await;
    for text in ["while you were away", "and one more thing"] {
        alice.fill("#text", text).await;
        alice.click("#send").await;
        alice.until("the message is acked", "return !document.querySelector('#messages li.pending')").await;
    }
    assert_eq!(count_of(&bob, "while you were away").await, 0, "bob was offline");
    bob.run("window.chat.goOnline()", vec![]).await;
    bob.shows("#messages li", "and one more thing").await;
    assert_eq!(count_of(&bob, "while you were away").await, 1);
    assert_eq!(count_of(&bob, "and one more thing").await, 1);

    // Nothing went wrong in either page: no script error, no console error, nothing blocked.
    assert_eq!(alice.errors().await, Vec::<String>::new(), "alice's page");
    assert_eq!(bob.errors().await, Vec::<String>::new(), "bob's page");
    if current_shape() == Shape::Split {
        let config = app.http.get(format!("{}/config.json", app.base)).send().await.unwrap();
        let config: serde_json::Value = config.json().await.unwrap();
        assert_eq!(
            config["files_url"],
            json!(format!("http://{}", app.files_addr)),
            "the split page uploads to the file app"
        );
    }
    alice.close().await;
    bob.close().await;
}

async fn one_person_keeps_a_short_lived_session_sees_refusals_joins_and_leaves_a_public_room_and_logs_out() {
    // Tokens live 3 s: the socket is closed at each expiry and must come back with a fresh one.
    // Rooms hold two people and files 1 KiB, so both refusals are easy to reach.
    let settings =
        [("CHAT_ACCESS_TOKEN_TTL_SECS", "3"), ("CHAT_ROOM_MEMBER_LIMIT", "2"), ("CHAT_FILE_MAX_BYTES", "1024")];
    let app = TestApp::spawn_for_browser(&settings).await;
    let driver = Driver::start().await;
    let page = driver.open(&format!("{}/", app.base)).await;
    let name = format!("carol{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    register(&page, &name).await;
    page.fill("#room-name", "notes").await;
    page.click("#create-room button").await;
    page.shows("#room-title", "notes").await;

    // Two refreshes later (each spends the single-use refresh token), the session still works.
    for _ in 0..2 {
        let before = page.run("return sessionStorage.getItem('chat.session')", vec![]).await;
        page.until("the token is refreshed", &format!("return sessionStorage.getItem('chat.session') !== {before}"))
            .await;
    }
    page.fill("#text", "still here").await;
    page.click("#send").await;
    page.shows("#messages li", "still here").await;
    page.until("the message is acked", "return !document.querySelector('#messages li.pending')").await;
    page.shows("#status", "online").await;

    // A full room and a file too large are said so.
    let (dave, erin) = (app.signup("dave").await, app.signup("erin").await);
    page.fill("#invite-name", &dave.username).await;
    page.click("#invite button").await;
    page.shows("#members li", &dave.username).await;
    page.fill("#invite-name", &erin.username).await;
    page.click("#invite button").await;
    page.shows("#banner", "The room is full.").await;
    let big = app.data_dir.path().join("big.txt");
    std::fs::write(&big, "x".repeat(2048)).expect("write the file");
    page.type_into("#file", &big.display().to_string()).await;
    page.shows("#banner", "The file is too large.").await;

    // A public room is found, joined and left again.
    let (status, _) = app.post("/rooms", &dave.access_token, json!({"name": "lobby", "visibility": "public"})).await;
    assert_eq!(status, 201);
    page.click("#back").await;
    page.click("#browse").await;
    page.shows("#public-rooms li", "lobby").await;
    page.click("#public-rooms li button").await;
    page.shows("#room-title", "lobby").await;
    page.click("#leave").await;
    let left = "return ![...document.querySelectorAll('#rooms li')].some(li => li.textContent.startsWith('lobby'))";
    page.until("lobby leaves the room list", left).await;

    // Logging out goes back to the login screen, and a reload does not sign in again.
    page.click("#logout").await;
    page.until("the login screen shows", "return !document.getElementById('auth').hidden").await;
    page.client.refresh().await.expect("reload");
    page.until("the login screen shows after a reload", "return !document.getElementById('auth').hidden").await;
    assert_eq!(page.run("return document.getElementById('app').hidden", vec![]).await, json!(true));

    assert_eq!(page.errors().await, Vec::<String>::new());
    page.close().await;
}
