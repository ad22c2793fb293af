//! e2e: rooms: create, list and page, view, join, invite, remove, leave with hand-over, delete, and
//! what a non-member can and cannot see.

use e2e::{TestApp, TestUser};
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn id_of(room: &Value) -> String {
    room["id"].as_str().expect("a room id").to_owned()
}

/// The member ids of a room JSON, in the order given.
fn member_ids(room: &Value) -> Vec<&str> {
    room["members"].as_array().expect("members").iter().map(|m| m["user_id"].as_str().expect("user_id")).collect()
}

/// Walks every page of `path` with `limit`, returning the room ids in order and the page sizes.
async fn walk_pages(app: &TestApp, path: &str, user: &TestUser, limit: u32) -> (Vec<String>, Vec<usize>) {
    let (mut ids, mut sizes, mut cursor) = (Vec::new(), Vec::new(), None::<String>);
    loop {
        let query = cursor.as_ref().map_or_else(|| format!("?limit={limit}"), |c| format!("?limit={limit}&cursor={c}"));
        let (status, page) = app.get(&format!("{path}{query}"), &user.access_token).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let items = page["items"].as_array().expect("items");
        sizes.push(items.len());
        ids.extend(items.iter().map(id_of));
        match page.get("next_cursor") {
            Some(next) => cursor = Some(next.as_str().expect("a string cursor").to_owned()),
            None => return (ids, sizes),
        }
    }
}

async fn creating_a_room_returns_201_with_members_by_name_and_last_seq_zero() {
    // Arrange
    let app = TestApp::spawn().await;
    let ada = app.signup("ada").await;
    let grace = app.signup("grace").await;

    // Act
    let (status, room) = app
        .post(
            "/rooms",
            &ada.access_token,
            json!({"name": "  tea  ", "visibility": "private", "member_ids": [grace.id]}),
        )
        .await;

    // Assert
    assert_eq!(status, StatusCode::CREATED, "{room}");
    let fields = e2e::field_names(&room);
    assert_eq!(fields, ["created_at", "id", "kind", "last_seq", "members", "name", "owner_id", "visibility"]);
    assert_eq!(room["kind"], "group");
    assert_eq!(room["name"], "tea");
    assert_eq!(room["visibility"], "private");
    assert_eq!(room["owner_id"], ada.id.as_str());
    assert_eq!(room["last_seq"], 0);
    let members: Vec<(&str, &str, &str)> = room["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["user_id"].as_str().unwrap(), m["username"].as_str().unwrap(), m["role"].as_str().unwrap()))
        .collect();
    assert_eq!(
        members,
        [(ada.id.as_str(), ada.username.as_str(), "owner"), (grace.id.as_str(), grace.username.as_str(), "member")]
    );
    assert!(room["members"][0]["joined_at"].as_str().unwrap().ends_with('Z'), "{room}");
}

async fn unknown_member_ids_are_a_400_that_names_them_and_create_nothing() {
    // Arrange
    let app = TestApp::spawn().await;
    let ada = app.signup("ada").await;
    let grace = app.signup("grace").await;
    let ghost = uuid::Uuid::now_v7().to_string();

    // Act
    let (status, body) = app
        .post(
            "/rooms",
            &ada.access_token,
            json!({"name": "tea", "visibility": "public", "member_ids": [grace.id, ghost]}),
        )
        .await;
    let (not_ids_status, not_ids) = app
        .post("/rooms", &ada.access_token, json!({"name": "tea", "visibility": "public", "member_ids": ["bob"]}))
        .await;

    // Assert
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], "unknown_members");
    let message = body["message"].as_str().unwrap();
    assert!(message.starts_with("member_ids") && message.contains(&ghost), "{message}");
    assert!(!message.contains(&grace.id), "only the unknown ones are named: {message}");
    assert_eq!(not_ids_status, StatusCode::BAD_REQUEST, "{not_ids}");
    assert!(not_ids["message"].as_str().unwrap().contains("bob"), "{not_ids}");
    let (_, mine) = app.get("/rooms", &ada.access_token).await;
    assert_eq!(mine["items"], json!([]));
}

async fn more_than_fifty_member_ids_are_a_400() {
    // Arrange
    let app = TestApp::spawn().await;
    let ada = app.signup("ada").await;
    let ids: Vec<String> = (0..51).map(|_| uuid::Uuid::now_v7().to_string()).collect();

    // Act
    let (status, body) =
        app.post("/rooms", &ada.access_token, json!({"name": "tea", "visibility": "public", "member_ids": ids})).await;

    // Assert
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], "invalid_request");
    assert!(body["message"].as_str().unwrap().contains("member_ids"), "{body}");
}

async fn an_unknown_visibility_or_an_invalid_name_is_a_400() {
    // Arrange
    let app = TestApp::spawn().await;
    let ada = app.signup("ada").await;

    // Act
    let (visibility_status, visibility) =
        app.post("/rooms", &ada.access_token, json!({"name": "tea", "visibility": "secret"})).await;
    let (name_status, name) =
        app.post("/rooms", &ada.access_token, json!({"name": "   ", "visibility": "public"})).await;

    // Assert
    assert_eq!(visibility_status, StatusCode::BAD_REQUEST, "{visibility}");
    assert_eq!(visibility["code"], "invalid_request");
    assert_eq!(name_status, StatusCode::BAD_REQUEST, "{name}");
    assert_eq!(name["code"], "invalid_room_name");
    assert!(name["message"].as_str().unwrap().starts_with("name"), "{name}");
}

async fn malformed_json_is_a_400_not_a_500() {
    // Arrange
    let app = TestApp::spawn().await;
    let ada = app.signup("ada").await;
    let request = app
        .http
        .post(app.url("/rooms"))
        .bearer_auth(&ada.access_token)
        .header("content-type", "application/json")
        .body(r#"{"name": "tea", "visibility": "#);

    // Act
    let reply = app.send(request).await;

    // Assert
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{reply:?}");
    assert_eq!(reply.body["code"], "invalid_request");
}

async fn a_body_over_one_mebibyte_is_a_413() {
    // Arrange
    let app = TestApp::spawn().await;
    let ada = app.signup("ada").await;
    let name = "x".repeat(1 << 20);
    let request = app
        .http
        .post(app.url("/rooms"))
        .bearer_auth(&ada.access_token)
        .json(&json!({"name": name, "visibility": "public"}));

    // Act
    let reply = app.send(request).await;

    // Assert
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE, "{:?}", reply.status);
    assert_eq!(reply.body["code"], "too_large");
}

async fn my_rooms_come_in_pages_linked_by_next_cursor_without_others_rooms() {
    // Arrange: five rooms of ada's, one she is not in.
    let app = TestApp::spawn().await;
    let ada = app.signup("ada").await;
    let grace = app.signup("grace").await;
    let mut created = Vec::new();
    for _ in 0..5 {
        created.push(id_of(&app.create_room(&ada, "private", &[]).await));
    }
    app.create_room(&grace, "public", &[]).await;

    // Act
    let (ids, sizes) = walk_pages(&app, "/rooms", &ada, 2).await;

    // Assert
    assert_eq!(sizes, [2, 2, 1]);
    assert_eq!(ids, created, "every room once, in creation order");
}

async fn public_rooms_come_in_pages_and_leave_out_private_rooms() {
    // Arrange
    let app = TestApp::spawn().await;
    let ada = app.signup("ada").await;
    let grace = app.signup("grace").await;
    let mut public = Vec::new();
    for _ in 0..3 {
        public.push(id_of(&app.create_room(&grace, "public", &[]).await));
    }
    app.create_room(&grace, "private", &[]).await;

    // Act
    let (ids, sizes) = walk_pages(&app, "/rooms/public", &ada, 2).await;

    // Assert
    assert_eq!(sizes, [2, 1]);
    assert_eq!(ids, public);
}

async fn a_page_limit_outside_1_to_100_or_a_foreign_cursor_is_a_400() {
    // Arrange
    let app = TestApp::spawn().await;
    let ada = app.signup("ada").await;

    for path in ["/rooms", "/rooms/public"] {
        for query in ["?limit=0", "?limit=101", "?limit=-1", "?cursor=not-a-cursor"] {
            // Act
            let (status, body) = app.get(&format!("{path}{query}"), &ada.access_token).await;

            // Assert
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path}{query}: {body}");
            assert_eq!(body["code"], "invalid_request");
        }
        let (status, _) = app.get(&format!("{path}?limit=100"), &ada.access_token).await;
        assert_eq!(status, StatusCode::OK, "{path}?limit=100");
    }
}

async fn a_private_room_is_a_404_for_a_non_member_and_a_200_for_a_member() {
    // Arrange
    let app = TestApp::spawn().await;
    let ada = app.signup("ada").await;
    let grace = app.signup("grace").await;
    let room = id_of(&app.create_room(&ada, "private", &[]).await);

    // Act
    let (stranger_status, stranger_body) = app.get(&format!("/rooms/{room}"), &grace.access_token).await;
    let (member_status, _) = app.get(&format!("/rooms/{room}"), &ada.access_token).await;

    // Assert
    assert_eq!(stranger_status, StatusCode::NOT_FOUND, "{stranger_body}");
    assert_eq!(stranger_body["code"], "not_found");
    assert_eq!(member_status, StatusCode::OK);
}

async fn a_public_room_is_visible_to_a_non_member() {
    // Arrange
    let app = TestApp::spawn().await;
    let ada = app.signup("ada").await;
    let grace = app.signup("grace").await;
    let room = id_of(&app.create_room(&ada, "public", &[]).await);

    // Act
    let (status, body) = app.get(&format!("/rooms/{room}"), &grace.access_token).await;

    // Assert
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["id"], room.as_str());
}

async fn an_unknown_or_malformed_room_id_is_a_404() {
    // Arrange
    let app = TestApp::spawn().await;
    let ada = app.signup("ada").await;
    let unknown = uuid::Uuid::now_v7();

    for path in [format!("/rooms/{unknown}"), "/rooms/not-a-room".to_owned(), format!("/rooms/{unknown}/messages")] {
        // Act
        let (status, body) = app.get(&path, &ada.access_token).await;

        // Assert
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert_eq!(body["code"], "not_found");
    }
}

async fn a_non_member_can_read_neither_a_private_room_its_members_nor_its_history() {
    // Arrange
    let app = TestApp::spawn().await;
    let ada = app.signup("ada").await;
    let grace = app.signup("grace").await;
    let eve = app.signup("eve").await;
    let room = id_of(&app.create_room(&ada, "private", &[&grace]).await);
    let token = eve.access_token.as_str();

    // Act
    let room_reply = app.get(&format!("/rooms/{room}"), token).await;
    let history_reply = app.get(&format!("/rooms/{room}/messages"), token).await;
    let invite_reply = app.post(&format!("/rooms/{room}/members"), token, json!({"user_id": eve.id})).await;
    let remove_reply = app.delete(&format!("/rooms/{room}/members/{}", grace.id), token).await;
    let leave_reply = app.call(Method::POST, &format!("/rooms/{room}/leave"), Some(token), None).await;
    let delete_reply = app.delete(&format!("/rooms/{room}"), token).await;
    let (_, listed) = app.get("/rooms", token).await;

    // Assert
    for (what, (status, body)) in [
        ("room", room_reply),
        ("history", history_reply),
        ("invite", invite_reply),
        ("remove", remove_reply),
        ("leave", leave_reply),
        ("delete", delete_reply),
    ] {
        assert_eq!(status, StatusCode::NOT_FOUND, "{what}: {body}");
        assert_eq!(body["code"], "not_found", "{what}");
    }
    assert_eq!(listed["items"], json!([]));
    let (_, still) = app.get(&format!("/rooms/{room}"), &ada.access_token).await;
    assert_eq!(member_ids(&still), [ada.id.as_str(), grace.id.as_str()], "nothing changed");
}

async fn joining_a_public_room_returns_it_with_the_new_member() {
    // Arrange
    let app = TestApp::spawn().await;
    let ada = app.signup("ada").await;
    let grace = app.signup("grace").await;
    let room = id_of(&app.create_room(&ada, "public", &[]).await);

    // Act
    let (status, body) = app.call(Method::POST, &format!("/rooms/{room}/join"), Some(&grace.access_token), None).await;

    // Assert
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(member_ids(&body), [ada.id.as_str(), grace.id.as_str()]);
    assert_eq!(body["members"][1]["role"], "member");
    let (_, mine) = app.get("/rooms", &grace.access_token).await;
    assert_eq!(mine["items"][0]["id"], room.as_str());
}

async fn joining_a_private_room_is_a_403() {
    // Arrange
    let app = TestApp::spawn().await;
    let ada = app.signup("ada").await;
    let grace = app.signup("grace").await;
    let room = id_of(&app.create_room(&ada, "private", &[]).await);

    // Act
    let (status, body) = app.call(Method::POST, &format!("/rooms/{room}/join"), Some(&grace.access_token), None).await;

    // Assert
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["code"], "forbidden");
}

async fn joining_a_full_room_is_a_409_room_full() {
    // Arrange: rooms hold two members; ada and grace fill this one.
    let app = TestApp::spawn_with(&[("CHAT_ROOM_MEMBER_LIMIT", "2")]).await;
    let ada = app.signup("ada").await;
    let grace = app.signup("grace").await;
    let eve = app.signup("eve").await;
    let room = id_of(&app.create_room(&ada, "public", &[&grace]).await);

    // Act
    let (status, body) = app.call(Method::POST, &format!("/rooms/{room}/join"), Some(&eve.access_token), None).await;

    // Assert
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "room_full");
}

async fn any_member_may_invite_and_the_invitee_can_then_see_the_room() {
    // Arrange: grace is a plain member.
    let app = TestApp::spawn().await;
    let ada = app.signup("ada").await;
    let grace = app.signup("grace").await;
    let eve = app.signup("eve").await;
    let room = id_of(&app.create_room(&ada, "private", &[&grace]).await);

    // Act
    let (status, body) =
        app.post(&format!("/rooms/{room}/members"), &grace.access_token, json!({"user_id": eve.id})).await;

    // Assert
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(member_ids(&body), [ada.id.as_str(), grace.id.as_str(), eve.id.as_str()]);
    let (status, _) = app.get(&format!("/rooms/{room}"), &eve.access_token).await;
    assert_eq!(status, StatusCode::OK);
}

async fn inviting_a_member_again_is_a_409_and_an_unknown_user_a_400() {
    // Arrange
    let app = TestApp::spawn().await;
    let ada = app.signup("ada").await;
    let grace = app.signup("grace").await;
    let room = id_of(&app.create_room(&ada, "private", &[&grace]).await);
    let path = format!("/rooms/{room}/members");

    // Act
    let (again_status, again) = app.post(&path, &ada.access_token, json!({"user_id": grace.id})).await;
    let ghost = uuid::Uuid::now_v7().to_string();
    let (unknown_status, unknown) = app.post(&path, &ada.access_token, json!({"user_id": ghost})).await;

    // Assert
    assert_eq!(again_status, StatusCode::CONFLICT, "{again}");
    assert_eq!(again["code"], "already_member");
    assert_eq!(unknown_status, StatusCode::BAD_REQUEST, "{unknown}");
    assert_eq!(unknown["code"], "unknown_user");
    assert!(unknown["message"].as_str().unwrap().starts_with("user_id"), "{unknown}");
}

async fn the_owner_removes_a_member_with_204_and_the_room_disappears_for_them() {
    // Arrange
    let app = TestApp::spawn().await;
    let ada = app.signup("ada").await;
    let grace = app.signup("grace").await;
    let room = id_of(&app.create_room(&ada, "private", &[&grace]).await);

    // Act
    let (status, body) = app.delete(&format!("/rooms/{room}/members/{}", grace.id), &ada.access_token).await;

    // Assert
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, _) = app.get(&format!("/rooms/{room}"), &grace.access_token).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, after) = app.get(&format!("/rooms/{room}"), &ada.access_token).await;
    assert_eq!(member_ids(&after), [ada.id.as_str()]);
}

async fn only_the_owner_may_remove_members_and_the_owner_cannot_be_removed() {
    // Arrange
    let app = TestApp::spawn().await;
    let ada = app.signup("ada").await;
    let grace = app.signup("grace").await;
    let eve = app.signup("eve").await;
    let room = id_of(&app.create_room(&ada, "private", &[&grace, &eve]).await);

    // Act
    let (by_member, forbidden) = app.delete(&format!("/rooms/{room}/members/{}", eve.id), &grace.access_token).await;
    let (owner_status, owner) = app.delete(&format!("/rooms/{room}/members/{}", ada.id), &ada.access_token).await;

    // Assert
    assert_eq!(by_member, StatusCode::FORBIDDEN, "{forbidden}");
    assert_eq!(forbidden["code"], "forbidden");
    assert_eq!(owner_status, StatusCode::CONFLICT, "{owner}");
    assert_eq!(owner["code"], "cannot_remove_owner");
    let (_, after) = app.get(&format!("/rooms/{room}"), &ada.access_token).await;
    assert_eq!(after["members"].as_array().unwrap().len(), 3);
}

async fn an_owner_who_leaves_hands_the_room_to_the_longest_standing_member() {
    // Arrange: grace joined at creation, eve was invited later.
    let app = TestApp::spawn().await;
    let ada = app.signup("ada").await;
    let grace = app.signup("grace").await;
    let eve = app.signup("eve").await;
    let room = id_of(&app.create_room(&ada, "private", &[&grace]).await);
    let (status, _) = app.post(&format!("/rooms/{room}/members"), &ada.access_token, json!({"user_id": eve.id})).await;
    assert_eq!(status, StatusCode::CREATED);

    // Act
    let (status, body) = app.call(Method::POST, &format!("/rooms/{room}/leave"), Some(&ada.access_token), None).await;

    // Assert
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (_, after) = app.get(&format!("/rooms/{room}"), &eve.access_token).await;
    assert_eq!(after["owner_id"], grace.id.as_str());
    assert_eq!(member_ids(&after), [grace.id.as_str(), eve.id.as_str()]);
    assert_eq!(after["members"][0]["role"], "owner");
    let (status, _) = app.get(&format!("/rooms/{room}"), &ada.access_token).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn the_last_member_leaving_deletes_the_room() {
    // Arrange: a public room, so a non-member can tell whether it still exists.
    let app = TestApp::spawn().await;
    let ada = app.signup("ada").await;
    let grace = app.signup("grace").await;
    let room = id_of(&app.create_room(&ada, "public", &[]).await);
    let (status, _) = app.get(&format!("/rooms/{room}"), &grace.access_token).await;
    assert_eq!(status, StatusCode::OK);

    // Act
    let (status, _) = app.call(Method::POST, &format!("/rooms/{room}/leave"), Some(&ada.access_token), None).await;

    // Assert
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = app.get(&format!("/rooms/{room}"), &grace.access_token).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, public) = app.get("/rooms/public", &grace.access_token).await;
    assert_eq!(public["items"], json!([]));
}

async fn only_the_owner_may_delete_a_room_after_which_it_is_a_404() {
    // Arrange
    let app = TestApp::spawn().await;
    let ada = app.signup("ada").await;
    let grace = app.signup("grace").await;
    let room = id_of(&app.create_room(&ada, "private", &[&grace]).await);

    // Act
    let (by_member, forbidden) = app.delete(&format!("/rooms/{room}"), &grace.access_token).await;
    let (by_owner, _) = app.delete(&format!("/rooms/{room}"), &ada.access_token).await;

    // Assert
    assert_eq!(by_member, StatusCode::FORBIDDEN, "{forbidden}");
    assert_eq!(forbidden["code"], "forbidden");
    assert_eq!(by_owner, StatusCode::NO_CONTENT);
    for user in [&ada, &grace] {
        let (status, _) = app.get(&format!("/rooms/{room}"), &user.access_token).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}

async fn a_user_is_found_by_name_in_any_case_and_seen_by_id() {
    // Arrange
    let app = TestApp::spawn().await;
    let ada = app.signup("ada").await;
    let grace = app.signup("grace").await;

    // Act
    let (found_status, found) =
        app.get(&format!("/users?username={}", ada.username.to_uppercase()), &grace.access_token).await;
    let (_, nobody) = app.get("/users?username=nobody", &grace.access_token).await;
    let (profile_status, profile) = app.get(&format!("/users/{}", ada.id), &grace.access_token).await;
    let (unknown_status, unknown) = app.get(&format!("/users/{}", uuid::Uuid::now_v7()), &grace.access_token).await;
    let anonymous = app.send(app.http.get(app.url("/users?username=ada"))).await;

    // Assert
    assert_eq!(found_status, StatusCode::OK, "{found}");
    assert_eq!(found["items"].as_array().map(Vec::len), Some(1), "{found}");
    assert_eq!(found["items"][0]["id"], ada.id.as_str());
    assert_eq!(found["items"][0]["username"], ada.username.as_str());
    assert_eq!(nobody["items"], serde_json::json!([]));
    assert_eq!(profile_status, StatusCode::OK, "{profile}");
    assert_eq!(
        (profile["id"].as_str(), profile["username"].as_str()),
        (Some(ada.id.as_str()), Some(ada.username.as_str()))
    );
    assert_eq!(unknown_status, StatusCode::NOT_FOUND, "{unknown}");
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
}

async fn a_member_invites_by_username() {
    // Arrange
    let app = TestApp::spawn().await;
    let ada = app.signup("ada").await;
    let grace = app.signup("grace").await;
    let room = app.create_room(&ada, "private", &[]).await["id"].as_str().expect("room id").to_owned();

    // Act
    let (status, body) =
        app.post(&format!("/rooms/{room}/members"), &ada.access_token, json!({"username": grace.username})).await;
    let (unknown_status, unknown) =
        app.post(&format!("/rooms/{room}/members"), &ada.access_token, json!({"username": "nobody"})).await;
    let (both_status, both) = app
        .post(
            &format!("/rooms/{room}/members"),
            &ada.access_token,
            json!({"username": grace.username, "user_id": grace.id}),
        )
        .await;

    // Assert
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(body["members"].as_array().expect("members").iter().any(|m| m["user_id"] == grace.id.as_str()), "{body}");
    assert_eq!(
        (unknown_status, unknown["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("unknown_user")),
        "{unknown}"
    );
    assert_eq!((both_status, both["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")), "{both}");
}

async fn a_public_room_one_left_stays_visible_and_its_history_says_not_a_member() {
    // Arrange: grace was in both rooms and left them.
    let app = TestApp::spawn().await;
    let ada = app.signup("ada").await;
    let grace = app.signup("grace").await;
    let public = app.create_room(&ada, "public", &[&grace]).await["id"].as_str().expect("id").to_owned();
    let private = app.create_room(&ada, "private", &[&grace]).await["id"].as_str().expect("id").to_owned();
    for room in [&public, &private] {
        let (status, body) = app.post(&format!("/rooms/{room}/leave"), &grace.access_token, json!({})).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    }

    // Act
    let (public_get, _) = app.get(&format!("/rooms/{public}"), &grace.access_token).await;
    let (public_history, public_body) = app.get(&format!("/rooms/{public}/messages"), &grace.access_token).await;
    let (private_get, _) = app.get(&format!("/rooms/{private}"), &grace.access_token).await;
    let (private_history, _) = app.get(&format!("/rooms/{private}/messages"), &grace.access_token).await;

    // Assert
    assert_eq!((public_get, public_history), (StatusCode::OK, StatusCode::FORBIDDEN), "{public_body}");
    assert_eq!(public_body["code"], "forbidden");
    assert_eq!((private_get, private_history), (StatusCode::NOT_FOUND, StatusCode::NOT_FOUND));
}

/// Files under the data directory's `files/`, where both shapes keep uploaded bytes.
fn stored_files(app: &TestApp) -> usize {
    fn count(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| if entry.path().is_dir() { count(&entry.path()) } else { 1 })
            .sum()
    }
    count(&app.data_dir.path().join("files"))
}

/// Polls `done` every 100 ms for at most 15 s; true once it held.
async fn eventually(mut done: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    while tokio::time::Instant::now() < deadline {
        if done().await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    false
}

async fn a_deleted_rooms_messages_and_files_are_deleted_by_the_next_purge() {
    // Arrange: purge every second; a room with three messages and a file, all archived.
    let app = TestApp::spawn_with(&[("CHAT_PURGE_CRON", "* * * * * *")]).await;
    let alice = app.signup("alice").await;
    let room = app.create_room(&alice, "private", &[]).await["id"].as_str().expect("room id").to_owned();
    let mut socket = app.socket(&alice).await;
    for n in 0..3 {
        let ack = socket.send_text(&room, &format!("m{n}"), "soon gone").await;
        assert_eq!(ack["type"], "ack", "{ack}");
    }
    let form = reqwest::multipart::Form::new()
        .text("room_id", room.clone())
        .part("file", reqwest::multipart::Part::bytes(b"some bytes".to_vec()).file_name("notes.txt"));
    let upload = app.send(app.http.post(app.url("/files")).bearer_auth(&alice.access_token).multipart(form)).await;
    assert_eq!(upload.status, StatusCode::CREATED, "{upload:?}");
    assert!(eventually(async || app.archived_messages(&room).await == 3).await, "the messages were archived");
    assert_eq!(stored_files(&app), 1);

    // Act
    let (status, _) = app.call(Method::DELETE, &format!("/rooms/{room}"), Some(&alice.access_token), None).await;

    // Assert
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(eventually(async || app.archived_messages(&room).await == 0).await, "the messages are still archived");
    assert!(eventually(async || stored_files(&app) == 0).await, "the file's bytes are still stored");
}

async fn a_room_created_with_null_member_ids_has_only_its_owner() {
    // Arrange
    let app = TestApp::spawn().await;
    let ada = app.signup("ada").await;

    // Act
    let body = json!({"name": "solo", "visibility": "private", "member_ids": null});
    let (status, room) = app.post("/rooms", &ada.access_token, body).await;

    // Assert: the spec declares the field nullable, and null means none.
    assert_eq!(status, StatusCode::CREATED, "{room}");
    assert_eq!(room["members"].as_array().map(Vec::len), Some(1), "{room}");
}

async fn a_hundred_concurrent_invites_to_one_room_all_succeed_or_fail_with_a_4xx() {
    // Arrange: 100 users to invite into a room with 99 places left besides its owner.
    let app = TestApp::spawn_with(&[("CHAT_ROOM_MEMBER_LIMIT", "100")]).await;
    let ada = app.signup("ada").await;
    let room = id_of(&app.create_room(&ada, "private", &[]).await);
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let guests: Vec<String> = futures::stream::iter(0..100)
        .map(|n| {
            let username = format!("guest{n}x{}", &suffix[..8]);
            let app = &app;
            async move {
                let (status, user) = app.register(&username, e2e::PASSWORD).await;
                assert_eq!(status, StatusCode::CREATED, "{user}");
                user["id"].as_str().expect("id").to_owned()
            }
        })
        .buffer_unordered(4)
        .collect()
        .await;
    let path = format!("/rooms/{room}/members");

    // Act
    let replies =
        futures::future::join_all(guests.iter().map(|id| app.post(&path, &ada.access_token, json!({"user_id": id}))))
            .await;

    // Assert
    let failed: Vec<&(StatusCode, Value)> = replies.iter().filter(|(status, _)| status.is_server_error()).collect();
    assert!(failed.is_empty(), "{} invites answered 5xx, e.g. {:?}", failed.len(), failed.first());
    let created = replies.iter().filter(|(status, _)| *status == StatusCode::CREATED).count();
    let full = replies.iter().filter(|(status, body)| *status == StatusCode::CONFLICT && body["code"] == "room_full");
    assert_eq!((created, full.count()), (99, 1), "every place was given once, then the room was full");
    let (_, after) = app.get(&format!("/rooms/{room}"), &ada.access_token).await;
    assert_eq!(member_ids(&after).len(), 100);
}

e2e::on_both_shapes!(
    a_room_created_with_null_member_ids_has_only_its_owner,
    a_hundred_concurrent_invites_to_one_room_all_succeed_or_fail_with_a_4xx,
    a_deleted_rooms_messages_and_files_are_deleted_by_the_next_purge,
    a_public_room_one_left_stays_visible_and_its_history_says_not_a_member,
    a_user_is_found_by_name_in_any_case_and_seen_by_id,
    a_member_invites_by_username,
    creating_a_room_returns_201_with_members_by_name_and_last_seq_zero,
    unknown_member_ids_are_a_400_that_names_them_and_create_nothing,
    more_than_fifty_member_ids_are_a_400,
    an_unknown_visibility_or_an_invalid_name_is_a_400,
    malformed_json_is_a_400_not_a_500,
    a_body_over_one_mebibyte_is_a_413,
    my_rooms_come_in_pages_linked_by_next_cursor_without_others_rooms,
    public_rooms_come_in_pages_and_leave_out_private_rooms,
    a_page_limit_outside_1_to_100_or_a_foreign_cursor_is_a_400,
    a_private_room_is_a_404_for_a_non_member_and_a_200_for_a_member,
    a_public_room_is_visible_to_a_non_member,
    an_unknown_or_malformed_room_id_is_a_404,
    a_non_member_can_read_neither_a_private_room_its_members_nor_its_history,
    joining_a_public_room_returns_it_with_the_new_member,
    joining_a_private_room_is_a_403,
    joining_a_full_room_is_a_409_room_full,
    any_member_may_invite_and_the_invitee_can_then_see_the_room,
    inviting_a_member_again_is_a_409_and_an_unknown_user_a_400,
    the_owner_removes_a_member_with_204_and_the_room_disappears_for_them,
    only_the_owner_may_remove_members_and_the_owner_cannot_be_removed,
    an_owner_who_leaves_hands_the_room_to_the_longest_standing_member,
    the_last_member_leaving_deletes_the_room,
    only_the_owner_may_delete_a_room_after_which_it_is_a_404,
);
