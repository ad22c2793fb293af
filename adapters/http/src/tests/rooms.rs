//! Handler tests of the room routes: create, list, view, join, leave, invite, remove and delete.

use application::ports::{MemberAddError, MemberRemoveError, RoomEvent, RoomPage, UserSummary};
use domain::{MemberLimit, Room, Visibility};
use poem::http::StatusCode;
use serde_json::json;
use uuid::Uuid;

use super::fixtures::{ada, eve, failure, grace, room, room_id, room_with_limit, send, Ports, Reply, GENERATED};

fn create_body(visibility: &str, member_ids: &[String]) -> serde_json::Value {
    json!({"name": "general", "visibility": visibility, "member_ids": member_ids})
}

fn ids_in(reply: &Reply) -> Vec<String> {
    reply.body["items"].as_array().expect("items").iter().map(|r| r["id"].as_str().expect("id").to_owned()).collect()
}

fn member_ids(reply: &Reply) -> Vec<String> {
    reply.body["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["user_id"].as_str().expect("user_id").to_owned())
        .collect()
}

/// Publishing exactly `event`, once.
fn publishes(ports: &mut Ports, event: RoomEvent) {
    ports.bus.expect_publish().withf(move |e| *e == event).times(1).returning(|_| Ok(()));
}

/// Storing exactly one update of the room, whatever it is, which `check` must accept.
fn updates(ports: &mut Ports, check: impl Fn(&Room) -> bool + Send + Sync + 'static) {
    ports.rooms.expect_update().withf(check).times(1).returning(|_| Ok(()));
}

mod create {
    use super::*;

    #[tokio::test]
    async fn answers_201_with_the_room_its_members_by_name_and_last_seq() {
        // Arrange
        let mut ports = Ports::default();
        let auth = ports.sign_in(&ada());
        ports.room_details_known(&[ada(), grace()]);
        ports
            .rooms
            .expect_insert()
            .withf(|r| r.owner() == ada().id && r.is_member(grace().id) && r.visibility() == Visibility::Private)
            .times(1)
            .returning(|_| Ok(()));
        // The creator and the member are announced as joined, so their sockets follow the room.
        ports.bus.expect_publish().times(2).returning(|_| Ok(()));
        let client = ports.client();

        // Act
        let body = create_body("private", &[grace().id.to_string()]);
        let reply = send(client.post("/rooms").header("authorization", auth).body_json(&body)).await;

        // Assert
        assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
        assert_eq!(
            reply.body,
            json!({
                "id": GENERATED.to_string(),
                "name": "general",
                "visibility": "private",
                "kind": "group",
                "owner_id": ada().id.to_string(),
                "members": [
                    {"user_id": ada().id.to_string(), "username": "ada", "role": "owner", "joined_at": "2023-11-14T22:13:20.000Z"},
                    {"user_id": grace().id.to_string(), "username": "grace", "role": "member", "joined_at": "2023-11-14T22:13:20.000Z"},
                ],
                "created_at": "2023-11-14T22:13:20.000Z",
                "last_seq": 0,
            })
        );
    }

    #[tokio::test]
    async fn with_unknown_member_ids_answers_400_naming_only_those_and_stores_nothing() {
        // Arrange
        let mut ports = Ports::default();
        let auth = ports.sign_in(&ada());
        ports.room_details_known(&[ada(), grace()]);
        let client = ports.client();
        let ghost = Uuid::from_u128(0x9999).to_string();

        // Act
        let body = create_body("public", &[grace().id.to_string(), ghost.clone()]);
        let reply = send(client.post("/rooms").header("authorization", auth).body_json(&body)).await;

        // Assert
        let message = reply.assert_error(StatusCode::BAD_REQUEST, "unknown_members");
        assert!(message.starts_with("member_ids") && message.contains(&ghost), "{message}");
        assert!(!message.contains(&grace().id.to_string()), "{message}");
    }

    #[tokio::test]
    async fn with_member_ids_that_are_not_ids_answers_400_naming_them() {
        // Arrange
        let mut ports = Ports::default();
        let auth = ports.sign_in(&ada());
        let client = ports.client();

        // Act
        let body = create_body("public", &["bob".to_owned(), grace().id.to_string()]);
        let reply = send(client.post("/rooms").header("authorization", auth).body_json(&body)).await;

        // Assert
        let message = reply.assert_error(StatusCode::BAD_REQUEST, "unknown_members");
        assert!(message.contains("bob") && !message.contains(&grace().id.to_string()), "{message}");
    }

    #[tokio::test]
    async fn with_more_than_fifty_member_ids_answers_400() {
        // Arrange
        let mut ports = Ports::default();
        let auth = ports.sign_in(&ada());
        let client = ports.client();
        let ids: Vec<String> = (0..51u128).map(|n| Uuid::from_u128(0x7000 + n).to_string()).collect();

        // Act
        let reply =
            send(client.post("/rooms").header("authorization", auth).body_json(&create_body("public", &ids))).await;

        // Assert
        let message = reply.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
        assert!(message.contains("member_ids"), "{message}");
    }

    #[tokio::test]
    async fn with_an_invalid_name_answers_400_naming_the_field() {
        // Arrange
        let mut ports = Ports::default();
        let auth = ports.sign_in(&ada());
        let client = ports.client();

        // Act
        let body = json!({"name": "   ", "visibility": "public"});
        let reply = send(client.post("/rooms").header("authorization", auth).body_json(&body)).await;

        // Assert
        let message = reply.assert_error(StatusCode::BAD_REQUEST, "invalid_room_name");
        assert!(message.starts_with("name:"), "{message}");
    }

    #[tokio::test]
    async fn with_an_unknown_visibility_answers_400() {
        // Arrange
        let mut ports = Ports::default();
        let auth = ports.sign_in(&ada());
        let client = ports.client();

        // Act
        let body = json!({"name": "general", "visibility": "secret"});
        let reply = send(client.post("/rooms").header("authorization", auth).body_json(&body)).await;

        // Assert
        reply.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    }

    #[tokio::test]
    async fn beyond_the_member_limit_answers_409_room_full() {
        // Arrange: rooms hold two; ada plus two invitees is one too many.
        let mut ports = Ports { member_limit: MemberLimit::new(2).expect("a limit"), ..Ports::default() };
        let auth = ports.sign_in(&ada());
        ports.room_details_known(&[ada(), grace(), eve()]);
        let client = ports.client();

        // Act
        let body = create_body("public", &[grace().id.to_string(), eve().id.to_string()]);
        let reply = send(client.post("/rooms").header("authorization", auth).body_json(&body)).await;

        // Assert
        reply.assert_error(StatusCode::CONFLICT, "room_full");
    }

    #[tokio::test]
    async fn answers_a_generic_500_when_the_room_cannot_be_stored() {
        // Arrange
        let mut ports = Ports::default();
        let auth = ports.sign_in(&ada());
        ports.room_details_known(&[ada()]);
        ports.rooms.expect_insert().times(1).returning(|_| Err(failure()));
        let client = ports.client();

        // Act
        let reply =
            send(client.post("/rooms").header("authorization", auth).body_json(&create_body("public", &[]))).await;

        // Assert
        reply.assert_generic_500();
    }

    #[tokio::test]
    async fn without_a_token_answers_401() {
        // Arrange
        let client = Ports::default().client();

        // Act
        let reply = send(client.post("/rooms").body_json(&create_body("public", &[]))).await;

        // Assert
        reply.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
        assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
    }
}

mod list {
    use super::*;

    fn rooms_of(owner: &domain::User, ids: &[u128], visibility: Visibility) -> Vec<Room> {
        ids.iter().map(|n| room(room_id(*n), visibility, owner, &[])).collect()
    }

    #[tokio::test]
    async fn mine_answers_a_page_with_a_next_cursor_when_more_rooms_exist() {
        // Arrange: the repository finds one more than the page, which signals another page.
        let mut ports = Ports::default();
        let auth = ports.sign_in(&ada());
        ports.room_details_known(&[ada()]);
        let found = rooms_of(&ada(), &[1, 2, 3], Visibility::Private);
        ports
            .rooms
            .expect_list_for_member()
            .withf(|user, page| *user == ada().id && *page == RoomPage { after: None, limit: 3 })
            .times(1)
            .returning(move |_, _| Ok(found.clone()));
        let client = ports.client();

        // Act
        let reply = send(client.get("/rooms").query("limit", &2).header("authorization", auth)).await;

        // Assert
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        assert_eq!(ids_in(&reply), [room_id(1).to_string(), room_id(2).to_string()]);
        assert_eq!(reply.body["next_cursor"], room_id(2).to_string());
    }

    #[tokio::test]
    async fn mine_passes_the_cursor_on_and_leaves_next_cursor_out_on_the_last_page() {
        // Arrange
        let mut ports = Ports::default();
        let auth = ports.sign_in(&ada());
        ports.room_details_known(&[ada()]);
        let found = rooms_of(&ada(), &[3], Visibility::Private);
        ports
            .rooms
            .expect_list_for_member()
            .withf(|_, page| *page == RoomPage { after: Some(room_id(2)), limit: 21 })
            .times(1)
            .returning(move |_, _| Ok(found.clone()));
        let client = ports.client();

        // Act
        let reply =
            send(client.get("/rooms").query("cursor", &room_id(2).to_string()).header("authorization", auth)).await;

        // Assert
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        assert_eq!(ids_in(&reply), [room_id(3).to_string()]);
        assert!(reply.body.get("next_cursor").is_none(), "{reply:?}");
    }

    #[tokio::test]
    async fn public_answers_only_what_the_repository_lists_as_public() {
        // Arrange
        let mut ports = Ports::default();
        let auth = ports.sign_in(&grace());
        ports.room_details_known(&[ada()]);
        let found = rooms_of(&ada(), &[1], Visibility::Public);
        ports
            .rooms
            .expect_list_public()
            .withf(|page| *page == RoomPage { after: None, limit: 101 })
            .times(1)
            .returning(move |_| Ok(found.clone()));
        let client = ports.client();

        // Act
        let reply = send(client.get("/rooms/public").query("limit", &100).header("authorization", auth)).await;

        // Assert
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        assert_eq!(ids_in(&reply), [room_id(1).to_string()]);
        assert_eq!(reply.body["items"][0]["visibility"], "public");
    }

    #[tokio::test]
    async fn a_limit_outside_1_to_100_or_a_foreign_cursor_answers_400_without_a_lookup() {
        for path in ["/rooms", "/rooms/public"] {
            for (name, value) in [("limit", "0"), ("limit", "101"), ("limit", "many"), ("cursor", "page-2")] {
                // Arrange
                let mut ports = Ports::default();
                let auth = ports.sign_in(&ada());
                let client = ports.client();

                // Act
                let reply = send(client.get(path).query(name, &value).header("authorization", auth)).await;

                // Assert
                let message = reply.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
                assert!(message.contains(name), "{path}?{name}={value}: {message}");
            }
        }
    }

    #[tokio::test]
    async fn answers_a_generic_500_when_listing_fails() {
        // Arrange
        let mut ports = Ports::default();
        let auth = ports.sign_in(&ada());
        ports.rooms.expect_list_for_member().times(1).returning(|_, _| Err(failure()));
        ports.rooms.expect_list_public().times(1).returning(|_| Err(failure()));
        let client = ports.client();

        // Act
        let mine = send(client.get("/rooms").header("authorization", auth.clone())).await;
        let public = send(client.get("/rooms/public").header("authorization", auth)).await;

        // Assert
        mine.assert_generic_500();
        public.assert_generic_500();
    }
}

mod view {
    use super::*;

    #[tokio::test]
    async fn a_member_gets_200_with_the_room() {
        // Arrange
        let mut ports = Ports::default();
        let auth = ports.sign_in(&grace());
        ports.room_stored(&room(room_id(1), Visibility::Private, &ada(), &[&grace()]));
        ports.room_details_known(&[ada(), grace()]);
        let client = ports.client();

        // Act
        let reply = send(client.get(format!("/rooms/{}", room_id(1))).header("authorization", auth)).await;

        // Assert
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        assert_eq!(member_ids(&reply), [ada().id.to_string(), grace().id.to_string()]);
    }

    #[tokio::test]
    async fn a_non_member_gets_200_for_a_public_room_and_404_for_a_private_one() {
        // Arrange
        let mut ports = Ports::default();
        let auth = ports.sign_in(&eve());
        ports.room_stored(&room(room_id(1), Visibility::Public, &ada(), &[]));
        ports.room_stored(&room(room_id(2), Visibility::Private, &ada(), &[]));
        ports.room_details_known(&[ada()]);
        let client = ports.client();

        // Act
        let public = send(client.get(format!("/rooms/{}", room_id(1))).header("authorization", auth.clone())).await;
        let private = send(client.get(format!("/rooms/{}", room_id(2))).header("authorization", auth)).await;

        // Assert
        assert_eq!(public.status, StatusCode::OK, "{public:?}");
        private.assert_error(StatusCode::NOT_FOUND, "not_found");
    }

    #[tokio::test]
    async fn an_unknown_or_malformed_room_id_answers_404() {
        // Arrange
        let mut ports = Ports::default();
        let auth = ports.sign_in(&ada());
        ports.rooms.expect_get().times(1).returning(|_| Ok(None));
        let client = ports.client();

        // Act
        let unknown = send(client.get(format!("/rooms/{}", room_id(9))).header("authorization", auth.clone())).await;
        let malformed = send(client.get("/rooms/general").header("authorization", auth)).await;

        // Assert
        unknown.assert_error(StatusCode::NOT_FOUND, "not_found");
        malformed.assert_error(StatusCode::NOT_FOUND, "not_found");
    }

    #[tokio::test]
    async fn answers_a_generic_500_when_reading_fails() {
        // Arrange
        let mut ports = Ports::default();
        let auth = ports.sign_in(&ada());
        ports.rooms.expect_get().times(1).returning(|_| Err(failure()));
        let client = ports.client();

        // Act
        let reply = send(client.get(format!("/rooms/{}", room_id(1))).header("authorization", auth)).await;

        // Assert
        reply.assert_generic_500();
    }
}

mod join {
    use super::*;

    fn join_path() -> String {
        format!("/rooms/{}/join", room_id(1))
    }

    #[tokio::test]
    async fn a_public_room_answers_200_with_the_new_member_and_tells_the_room() {
        // Arrange
        let mut ports = Ports::default();
        let auth = ports.sign_in(&eve());
        ports.room_stored(&room(room_id(1), Visibility::Public, &ada(), &[]));
        publishes(&mut ports, RoomEvent::MemberJoined { room_id: room_id(1), user: UserSummary::from(&eve()) });
        ports.room_details_known(&[ada(), eve()]);
        let client = ports.client();

        // Act
        let reply = send(client.post(join_path()).header("authorization", auth)).await;

        // Assert
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        assert_eq!(member_ids(&reply), [ada().id.to_string(), eve().id.to_string()]);
    }

    #[tokio::test]
    async fn a_room_one_is_in_already_answers_200_and_changes_nothing() {
        // Arrange: no update and no event are expected.
        let mut ports = Ports::default();
        let auth = ports.sign_in(&grace());
        ports.room_stored(&room(room_id(1), Visibility::Public, &ada(), &[&grace()]));
        ports.room_details_known(&[ada(), grace()]);
        let client = ports.client();

        // Act
        let reply = send(client.post(join_path()).header("authorization", auth)).await;

        // Assert
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    }

    #[tokio::test]
    async fn a_private_room_answers_403() {
        // Arrange
        let mut ports = Ports::default();
        let auth = ports.sign_in(&eve());
        ports.room_stored(&room(room_id(1), Visibility::Private, &ada(), &[]));
        let client = ports.client();

        // Act
        let reply = send(client.post(join_path()).header("authorization", auth)).await;

        // Assert
        reply.assert_error(StatusCode::FORBIDDEN, "forbidden");
    }

    #[tokio::test]
    async fn a_full_room_answers_409_room_full() {
        // Arrange
        let mut ports = Ports::default();
        let auth = ports.sign_in(&eve());
        let limit = MemberLimit::new(2).expect("a limit");
        ports.room_stored(&room_with_limit(room_id(1), Visibility::Public, &ada(), &[&grace()], limit));
        let client = ports.client();

        // Act
        let reply = send(client.post(join_path()).header("authorization", auth)).await;

        // Assert
        reply.assert_error(StatusCode::CONFLICT, "room_full");
    }

    #[tokio::test]
    async fn an_unknown_room_answers_404() {
        // Arrange
        let mut ports = Ports::default();
        let auth = ports.sign_in(&eve());
        ports.rooms.expect_get().times(1).returning(|_| Ok(None));
        let client = ports.client();

        // Act
        let reply = send(client.post(join_path()).header("authorization", auth)).await;

        // Assert
        reply.assert_error(StatusCode::NOT_FOUND, "not_found");
    }

    #[tokio::test]
    async fn answers_a_generic_500_when_adding_the_member_fails() {
        // Arrange
        let mut ports = Ports::default();
        let auth = ports.sign_in(&eve());
        ports.rooms.expect_add_member().times(1).returning(|_, _, _| Err(MemberAddError::Unknown(failure())));
        ports.room_stored(&room(room_id(1), Visibility::Public, &ada(), &[]));
        let client = ports.client();

        // Act
        let reply = send(client.post(join_path()).header("authorization", auth)).await;

        // Assert
        reply.assert_generic_500();
    }
}

mod leave {
    use super::*;

    fn leave_path() -> String {
        format!("/rooms/{}/leave", room_id(1))
    }

    #[tokio::test]
    async fn a_member_answers_204_and_the_room_hears_of_it() {
        // Arrange
        let mut ports = Ports::default();
        let auth = ports.sign_in(&grace());
        ports.room_stored(&room(room_id(1), Visibility::Private, &ada(), &[&grace()]));
        publishes(&mut ports, RoomEvent::MemberLeft { room_id: room_id(1), user: UserSummary::from(&grace()) });
        let client = ports.client();

        // Act
        let reply = send(client.post(leave_path()).header("authorization", auth)).await;

        // Assert
        assert_eq!(reply.status, StatusCode::NO_CONTENT, "{reply:?}");
    }

    #[tokio::test]
    async fn an_owner_hands_the_room_to_the_longest_standing_member() {
        // Arrange: grace joined before eve.
        let mut ports = Ports::default();
        let auth = ports.sign_in(&ada());
        ports.room_stored(&room(room_id(1), Visibility::Private, &ada(), &[&grace(), &eve()]));
        updates(&mut ports, |r| r.owner() == grace().id && !r.is_member(ada().id));
        publishes(&mut ports, RoomEvent::MemberLeft { room_id: room_id(1), user: UserSummary::from(&ada()) });
        let client = ports.client();

        // Act
        let reply = send(client.post(leave_path()).header("authorization", auth)).await;

        // Assert
        assert_eq!(reply.status, StatusCode::NO_CONTENT, "{reply:?}");
    }

    #[tokio::test]
    async fn the_last_member_out_deletes_the_room() {
        // Arrange
        let mut ports = Ports::default();
        let auth = ports.sign_in(&ada());
        ports.room_stored(&room(room_id(1), Visibility::Public, &ada(), &[]));
        ports.rooms.expect_update().returning(|_| Ok(()));
        ports.rooms.expect_delete().withf(|id| *id == room_id(1)).times(1).returning(|_| Ok(true));
        publishes(&mut ports, RoomEvent::MemberLeft { room_id: room_id(1), user: UserSummary::from(&ada()) });
        publishes(&mut ports, RoomEvent::RoomDeleted { room_id: room_id(1) });
        let client = ports.client();

        // Act
        let reply = send(client.post(leave_path()).header("authorization", auth)).await;

        // Assert
        assert_eq!(reply.status, StatusCode::NO_CONTENT, "{reply:?}");
    }

    #[tokio::test]
    async fn a_non_member_answers_404() {
        // Arrange
        let mut ports = Ports::default();
        let auth = ports.sign_in(&eve());
        ports.room_stored(&room(room_id(1), Visibility::Public, &ada(), &[]));
        let client = ports.client();

        // Act
        let reply = send(client.post(leave_path()).header("authorization", auth)).await;

        // Assert
        reply.assert_error(StatusCode::NOT_FOUND, "not_found");
    }

    #[tokio::test]
    async fn answers_a_generic_500_when_the_store_fails() {
        // Arrange
        let mut ports = Ports::default();
        let auth = ports.sign_in(&ada());
        ports.rooms.expect_remove_member().times(1).returning(|_, _| Err(MemberRemoveError::Unknown(failure())));
        let client = ports.client();

        // Act
        let reply = send(client.post(leave_path()).header("authorization", auth)).await;

        // Assert
        reply.assert_generic_500();
    }
}

mod invite {
    use super::*;

    fn invite(user_id: impl ToString) -> serde_json::Value {
        json!({"user_id": user_id.to_string()})
    }

    fn members_path() -> String {
        format!("/rooms/{}/members", room_id(1))
    }

    #[tokio::test]
    async fn any_member_answers_201_with_the_invitee_added_and_tells_the_room() {
        // Arrange: grace is a plain member.
        let mut ports = Ports::default();
        let auth = ports.sign_in(&grace());
        ports.user_exists(&eve());
        ports.room_stored(&room(room_id(1), Visibility::Private, &ada(), &[&grace()]));
        publishes(&mut ports, RoomEvent::MemberJoined { room_id: room_id(1), user: UserSummary::from(&eve()) });
        ports.room_details_known(&[ada(), grace(), eve()]);
        let client = ports.client();

        // Act
        let reply = send(client.post(members_path()).header("authorization", auth).body_json(&invite(eve().id))).await;

        // Assert
        assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
        assert_eq!(member_ids(&reply), [ada().id.to_string(), grace().id.to_string(), eve().id.to_string()]);
    }

    #[tokio::test]
    async fn a_user_id_that_is_not_an_id_answers_400_naming_the_field() {
        // Arrange
        let mut ports = Ports::default();
        let auth = ports.sign_in(&ada());
        let client = ports.client();

        // Act
        let reply = send(client.post(members_path()).header("authorization", auth).body_json(&invite("eve"))).await;

        // Assert
        let message = reply.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
        assert!(message.starts_with("user_id"), "{message}");
    }

    #[tokio::test]
    async fn an_unknown_user_answers_400_unknown_user() {
        // Arrange
        let mut ports = Ports::default();
        let auth = ports.sign_in(&ada());
        let ghost = Uuid::from_u128(0x9999);
        ports.users.expect_by_id().withf(move |id| id.as_uuid() == ghost).times(1).returning(|_| Ok(None));
        let client = ports.client();

        // Act
        let reply = send(client.post(members_path()).header("authorization", auth).body_json(&invite(ghost))).await;

        // Assert
        let message = reply.assert_error(StatusCode::BAD_REQUEST, "unknown_user");
        assert!(message.starts_with("user_id"), "{message}");
    }

    #[tokio::test]
    async fn a_non_member_answers_404() {
        // Arrange
        let mut ports = Ports::default();
        let auth = ports.sign_in(&eve());
        ports.user_exists(&grace());
        ports.room_stored(&room(room_id(1), Visibility::Private, &ada(), &[]));
        let client = ports.client();

        // Act
        let reply =
            send(client.post(members_path()).header("authorization", auth).body_json(&invite(grace().id))).await;

        // Assert
        reply.assert_error(StatusCode::NOT_FOUND, "not_found");
    }

    #[tokio::test]
    async fn an_existing_member_answers_409_already_member() {
        // Arrange
        let mut ports = Ports::default();
        let auth = ports.sign_in(&ada());
        ports.user_exists(&grace());
        ports.room_stored(&room(room_id(1), Visibility::Private, &ada(), &[&grace()]));
        let client = ports.client();

        // Act
        let reply =
            send(client.post(members_path()).header("authorization", auth).body_json(&invite(grace().id))).await;

        // Assert
        reply.assert_error(StatusCode::CONFLICT, "already_member");
    }

    #[tokio::test]
    async fn a_full_room_answers_409_room_full() {
        // Arrange
        let mut ports = Ports::default();
        let auth = ports.sign_in(&ada());
        ports.user_exists(&eve());
        let limit = MemberLimit::new(2).expect("a limit");
        ports.room_stored(&room_with_limit(room_id(1), Visibility::Private, &ada(), &[&grace()], limit));
        let client = ports.client();

        // Act
        let reply = send(client.post(members_path()).header("authorization", auth).body_json(&invite(eve().id))).await;

        // Assert
        reply.assert_error(StatusCode::CONFLICT, "room_full");
    }

    #[tokio::test]
    async fn answers_a_generic_500_when_the_user_lookup_fails() {
        // Arrange
        let mut ports = Ports::default();
        let auth = ports.sign_in(&ada());
        let ghost = Uuid::from_u128(0x9999);
        ports.users.expect_by_id().withf(move |id| id.as_uuid() == ghost).times(1).returning(|_| Err(failure()));
        let client = ports.client();

        // Act
        let reply = send(client.post(members_path()).header("authorization", auth).body_json(&invite(ghost))).await;

        // Assert
        reply.assert_generic_500();
    }
}

mod remove_member {
    use super::*;

    fn member_path(user: impl ToString) -> String {
        format!("/rooms/{}/members/{}", room_id(1), user.to_string())
    }

    #[tokio::test]
    async fn the_owner_answers_204_and_the_room_hears_of_it() {
        // Arrange
        let mut ports = Ports::default();
        let auth = ports.sign_in(&ada());
        ports.user_exists(&grace());
        ports.room_stored(&room(room_id(1), Visibility::Private, &ada(), &[&grace()]));
        publishes(&mut ports, RoomEvent::MemberLeft { room_id: room_id(1), user: UserSummary::from(&grace()) });
        let client = ports.client();

        // Act
        let reply = send(client.delete(member_path(grace().id)).header("authorization", auth)).await;

        // Assert
        assert_eq!(reply.status, StatusCode::NO_CONTENT, "{reply:?}");
    }

    #[tokio::test]
    async fn a_member_who_is_not_the_owner_answers_403() {
        // Arrange
        let mut ports = Ports::default();
        let auth = ports.sign_in(&grace());
        ports.room_stored(&room(room_id(1), Visibility::Private, &ada(), &[&grace(), &eve()]));
        let client = ports.client();

        // Act
        let reply = send(client.delete(member_path(eve().id)).header("authorization", auth)).await;

        // Assert
        reply.assert_error(StatusCode::FORBIDDEN, "forbidden");
    }

    #[tokio::test]
    async fn a_non_member_answers_404_as_if_the_room_did_not_exist() {
        // Arrange
        let mut ports = Ports::default();
        let auth = ports.sign_in(&eve());
        ports.room_stored(&room(room_id(1), Visibility::Private, &ada(), &[&grace()]));
        let client = ports.client();

        // Act
        let reply = send(client.delete(member_path(grace().id)).header("authorization", auth)).await;

        // Assert
        let message = reply.assert_error(StatusCode::NOT_FOUND, "not_found");
        assert_eq!(message, "room not found");
    }

    #[tokio::test]
    async fn a_user_who_is_not_a_member_answers_404() {
        // Arrange
        let mut ports = Ports::default();
        let auth = ports.sign_in(&ada());
        ports.room_stored(&room(room_id(1), Visibility::Private, &ada(), &[]));
        let client = ports.client();

        // Act
        let reply = send(client.delete(member_path(eve().id)).header("authorization", auth)).await;

        // Assert
        reply.assert_error(StatusCode::NOT_FOUND, "not_found");
    }

    #[tokio::test]
    async fn removing_the_owner_answers_409_cannot_remove_owner() {
        // Arrange
        let mut ports = Ports::default();
        let auth = ports.sign_in(&ada());
        ports.room_stored(&room(room_id(1), Visibility::Private, &ada(), &[&grace()]));
        let client = ports.client();

        // Act
        let reply = send(client.delete(member_path(ada().id)).header("authorization", auth)).await;

        // Assert
        reply.assert_error(StatusCode::CONFLICT, "cannot_remove_owner");
    }

    #[tokio::test]
    async fn a_user_id_that_is_not_an_id_answers_400() {
        // Arrange
        let mut ports = Ports::default();
        let auth = ports.sign_in(&ada());
        let client = ports.client();

        // Act
        let reply = send(client.delete(member_path("grace")).header("authorization", auth)).await;

        // Assert
        let message = reply.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
        assert!(message.starts_with("user_id"), "{message}");
    }

    #[tokio::test]
    async fn answers_a_generic_500_when_removing_the_member_fails() {
        // Arrange
        let mut ports = Ports::default();
        let auth = ports.sign_in(&ada());
        ports.rooms.expect_remove_member().times(1).returning(|_, _| Err(MemberRemoveError::Unknown(failure())));
        ports.room_stored(&room(room_id(1), Visibility::Private, &ada(), &[&grace()]));
        let client = ports.client();

        // Act
        let reply = send(client.delete(member_path(grace().id)).header("authorization", auth)).await;

        // Assert
        reply.assert_generic_500();
    }
}

mod delete {
    use super::*;

    fn room_path() -> String {
        format!("/rooms/{}", room_id(1))
    }

    #[tokio::test]
    async fn the_owner_answers_204_and_the_room_hears_of_it() {
        // Arrange
        let mut ports = Ports::default();
        let auth = ports.sign_in(&ada());
        ports.room_stored(&room(room_id(1), Visibility::Private, &ada(), &[&grace()]));
        ports.rooms.expect_delete().withf(|id| *id == room_id(1)).times(1).returning(|_| Ok(true));
        publishes(&mut ports, RoomEvent::RoomDeleted { room_id: room_id(1) });
        let client = ports.client();

        // Act
        let reply = send(client.delete(room_path()).header("authorization", auth)).await;

        // Assert
        assert_eq!(reply.status, StatusCode::NO_CONTENT, "{reply:?}");
    }

    #[tokio::test]
    async fn a_member_who_is_not_the_owner_answers_403() {
        // Arrange
        let mut ports = Ports::default();
        let auth = ports.sign_in(&grace());
        ports.room_stored(&room(room_id(1), Visibility::Private, &ada(), &[&grace()]));
        let client = ports.client();

        // Act
        let reply = send(client.delete(room_path()).header("authorization", auth)).await;

        // Assert
        reply.assert_error(StatusCode::FORBIDDEN, "forbidden");
    }

    #[tokio::test]
    async fn a_non_member_or_an_unknown_room_answers_404() {
        // Arrange
        let mut ports = Ports::default();
        let auth = ports.sign_in(&eve());
        ports.room_stored(&room(room_id(1), Visibility::Public, &ada(), &[]));
        ports.rooms.expect_get().returning(|_| Ok(None));
        let client = ports.client();

        // Act
        let not_member = send(client.delete(room_path()).header("authorization", auth.clone())).await;
        let unknown = send(client.delete(format!("/rooms/{}", room_id(9))).header("authorization", auth)).await;

        // Assert
        not_member.assert_error(StatusCode::NOT_FOUND, "not_found");
        unknown.assert_error(StatusCode::NOT_FOUND, "not_found");
    }

    #[tokio::test]
    async fn answers_a_generic_500_when_deleting_fails() {
        // Arrange
        let mut ports = Ports::default();
        let auth = ports.sign_in(&ada());
        ports.room_stored(&room(room_id(1), Visibility::Private, &ada(), &[]));
        ports.rooms.expect_delete().times(1).returning(|_| Err(failure()));
        let client = ports.client();

        // Act
        let reply = send(client.delete(room_path()).header("authorization", auth)).await;

        // Assert
        reply.assert_generic_500();
    }
}
