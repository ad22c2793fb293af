//! Handler tests of the history route: bounds, direction, merging of cache and archive, access.

use application::ports::{SeqRange, Take};
use domain::{Message, Seq, Visibility};
use poem::http::StatusCode;
use serde_json::json;

use super::fixtures::{ada, eve, failure, message, room, room_id, send, Ports, Reply};

fn history_path() -> String {
    format!("/rooms/{}/messages", room_id(1))
}

fn seq(n: u64) -> Seq {
    Seq::new(n).expect("seqs start at 1")
}

fn seqs(reply: &Reply) -> Vec<u64> {
    reply.body["items"].as_array().expect("items").iter().map(|m| m["seq"].as_u64().expect("seq")).collect()
}

/// The caller is a member of room 1.
fn member(ports: &mut Ports, is_member: bool) {
    ports.rooms.expect_is_member().withf(|room, _| *room == room_id(1)).times(1).returning(move |_, _| Ok(is_member));
}

/// The hot cache and the archive each answer `range`/`take` with the given seqs of room 1.
fn stores_hold(ports: &mut Ports, range: SeqRange, take: Take, cached: &[u64], archived: &[u64]) {
    let cached: Vec<Message> = cached.iter().map(|n| message(room_id(1), *n)).collect();
    let archived: Vec<Message> = archived.iter().map(|n| message(room_id(1), *n)).collect();
    // No counter: the read range stays as the handler asked, which is what these tests pin.
    ports.log.expect_last_seq().times(1).returning(|_| Ok(None));
    ports
        .log
        .expect_fetch()
        .withf(move |room, r, t| *room == room_id(1) && *r == range && *t == take)
        .times(1)
        .returning(move |_, _, _| Ok(cached.clone()));
    ports
        .archive
        .expect_fetch()
        .withf(move |room, r, t| *room == room_id(1) && *r == range && *t == take)
        .times(1)
        .returning(move |_, _, _| Ok(archived.clone()));
}

#[tokio::test]
async fn without_bounds_the_newest_page_merges_cache_and_archive_once_each_in_ascending_seq() {
    // Arrange: seq 4 and 5 sit in both stores across the boundary; one more than the page exists.
    let mut ports = Ports::default();
    let auth = ports.sign_in(&ada());
    member(&mut ports, true);
    stores_hold(
        &mut ports,
        SeqRange { content_only: true, ..SeqRange::default() },
        Take::Newest(4),
        &[4, 5, 6],
        &[3, 4, 5],
    );
    let client = ports.client();

    // Act
    let reply = send(client.get(history_path()).query("limit", &3).header("authorization", auth)).await;

    // Assert
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(seqs(&reply), [4, 5, 6]);
    assert_eq!(reply.body["has_more"], true);
}

#[tokio::test]
async fn a_message_has_the_shape_the_socket_protocol_uses() {
    // Arrange
    let mut ports = Ports::default();
    let auth = ports.sign_in(&ada());
    member(&mut ports, true);
    stores_hold(&mut ports, SeqRange { content_only: true, ..SeqRange::default() }, Take::Newest(51), &[1], &[]);
    let client = ports.client();

    // Act
    let reply = send(client.get(history_path()).header("authorization", auth)).await;

    // Assert
    assert_eq!(
        reply.body,
        json!({
            "items": [{
                "id": message(room_id(1), 1).id.to_string(),
                "room_id": room_id(1).to_string(),
                "seq": 1,
                "sender": {"id": ada().id.to_string(), "username": "ada"},
                "kind": "text",
                "text": "message 1",
                "sent_at": "2023-11-14T20:34:20.000Z",
            }],
            "has_more": false,
        })
    );
}

#[tokio::test]
async fn before_pages_backwards_with_an_exclusive_bound() {
    // Arrange
    let mut ports = Ports::default();
    let auth = ports.sign_in(&ada());
    member(&mut ports, true);
    let range = SeqRange { after: None, before: Some(seq(8)), not_before: None, content_only: true };
    stores_hold(&mut ports, range, Take::Newest(3), &[], &[5, 6, 7]);
    let client = ports.client();

    // Act
    let reply =
        send(client.get(history_path()).query("before", &8).query("limit", &2).header("authorization", auth)).await;

    // Assert
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(seqs(&reply), [6, 7]);
    assert_eq!(reply.body["has_more"], true);
}

#[tokio::test]
async fn after_pages_forwards_with_an_exclusive_bound() {
    // Arrange
    let mut ports = Ports::default();
    let auth = ports.sign_in(&ada());
    member(&mut ports, true);
    let range = SeqRange { after: Some(seq(2)), before: None, not_before: None, content_only: true };
    stores_hold(&mut ports, range, Take::Oldest(3), &[5], &[3, 4]);
    let client = ports.client();

    // Act
    let reply =
        send(client.get(history_path()).query("after", &2).query("limit", &2).header("authorization", auth)).await;

    // Assert
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(seqs(&reply), [3, 4]);
    assert_eq!(reply.body["has_more"], true);
}

#[tokio::test]
async fn has_more_is_false_when_no_more_than_the_page_exists() {
    // Arrange
    let mut ports = Ports::default();
    let auth = ports.sign_in(&ada());
    member(&mut ports, true);
    stores_hold(&mut ports, SeqRange { content_only: true, ..SeqRange::default() }, Take::Newest(3), &[2], &[1]);
    let client = ports.client();

    // Act
    let reply = send(client.get(history_path()).query("limit", &2).header("authorization", auth)).await;

    // Assert
    assert_eq!(seqs(&reply), [1, 2]);
    assert_eq!(reply.body["has_more"], false);
}

#[tokio::test]
async fn a_limit_outside_1_to_100_or_a_negative_bound_answers_400_without_a_lookup() {
    for (name, value) in [("limit", "0"), ("limit", "101"), ("before", "-1"), ("after", "soon")] {
        // Arrange
        let mut ports = Ports::default();
        let auth = ports.sign_in(&ada());
        let client = ports.client();

        // Act
        let reply = send(client.get(history_path()).query(name, &value).header("authorization", auth)).await;

        // Assert
        reply.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    }
}

#[tokio::test]
async fn a_non_member_of_a_private_room_answers_404_without_reading_any_message() {
    // Arrange
    let mut ports = Ports::default();
    let auth = ports.sign_in(&eve());
    member(&mut ports, false);
    ports.room_stored(&room(room_id(1), Visibility::Private, &ada(), &[]));
    let client = ports.client();

    // Act
    let reply = send(client.get(history_path()).header("authorization", auth)).await;

    // Assert
    reply.assert_error(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn a_non_member_of_a_public_room_answers_403_without_reading_any_message() {
    // Arrange
    let mut ports = Ports::default();
    let auth = ports.sign_in(&eve());
    member(&mut ports, false);
    ports.room_stored(&room(room_id(1), Visibility::Public, &ada(), &[]));
    let client = ports.client();

    // Act
    let reply = send(client.get(history_path()).header("authorization", auth)).await;

    // Assert
    reply.assert_error(StatusCode::FORBIDDEN, "forbidden");
}

#[tokio::test]
async fn a_malformed_room_id_answers_404() {
    // Arrange
    let mut ports = Ports::default();
    let auth = ports.sign_in(&ada());
    let client = ports.client();

    // Act
    let reply = send(client.get("/rooms/general/messages").header("authorization", auth)).await;

    // Assert
    reply.assert_error(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn answers_a_generic_500_when_the_archive_fails() {
    // Arrange
    let mut ports = Ports::default();
    let auth = ports.sign_in(&ada());
    member(&mut ports, true);
    ports.log.expect_last_seq().times(1).returning(|_| Ok(None));
    ports.log.expect_fetch().times(1).returning(|_, _, _| Ok(vec![]));
    ports.archive.expect_fetch().times(1).returning(|_, _, _| Err(failure()));
    let client = ports.client();

    // Act
    let reply = send(client.get(history_path()).header("authorization", auth)).await;

    // Assert
    reply.assert_generic_500();
}

#[tokio::test]
async fn without_a_token_answers_401() {
    // Arrange
    let client = Ports::default().client();

    // Act
    let reply = send(client.get(history_path())).await;

    // Assert
    reply.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
}
