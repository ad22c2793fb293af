//! e2e: per-room event routing in the split shape: a socket node hears a room's events only
//! while one of its sockets is in the room, counted by each node's `chat_bus_events_total`.

use std::time::Duration;

use e2e::{Shape, Socket, TestApp, TestUser, SHAPE};
use serde_json::json;

/// Bus events each socket node has received, read from the nodes' own `/metrics`.
async fn bus_events_per_node(app: &TestApp) -> Vec<u64> {
    let mut counts = Vec::new();
    for addr in &app.socket_addrs {
        let text =
            app.http.get(format!("http://{addr}/metrics")).send().await.expect("metrics").text().await.expect("text");
        let line = text.lines().find(|l| l.starts_with("chat_bus_events_total ")).expect("the bus events counter");
        counts.push(line.rsplit(' ').next().and_then(|n| n.parse().ok()).expect("a count"));
    }
    counts
}

/// How many more events each node received than at `before`.
async fn received_since(app: &TestApp, before: &[u64]) -> Vec<u64> {
    bus_events_per_node(app).await.iter().zip(before).map(|(now, then)| now - then).collect()
}

async fn room_of(app: &TestApp, owner: &TestUser, members: &[&TestUser]) -> String {
    app.create_room(owner, "private", members).await["id"].as_str().expect("room id").to_owned()
}

/// Sends `n` messages from `from` and waits until `to` has them all.
async fn exchange(room: &str, from: &mut Socket, to: &mut Socket, tag: &str, n: usize) {
    for i in 0..n {
        let ack = from.send_text(room, &format!("{tag}-{i}"), &format!("{tag} {i}")).await;
        assert_eq!(ack["type"], "ack", "{ack}");
    }
    for _ in 0..n {
        to.next_of("message").await;
    }
}

#[tokio::test]
#[ignore = "needs Redis and MongoDB (scripts/test.sh)"]
async fn a_rooms_events_reach_only_the_socket_nodes_with_a_socket_in_it() {
    SHAPE
        .scope(Shape::Split, async {
            // Arrange: alice and bob talk on node 0; carol, on node 1, is in none of their rooms.
            let app = TestApp::spawn().await;
            let (alice, bob, carol) = (app.signup("alice").await, app.signup("bob").await, app.signup("carol").await);
            let room = room_of(&app, &alice, &[&bob]).await;
            let mut a = app.socket_on(&alice, 0).await;
            let mut b = app.socket_on(&bob, 0).await;
            let _c = app.socket_on(&carol, 1).await;
            // Presence of the sockets just opened goes out in the background: let it settle.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let before = bus_events_per_node(&app).await;

            // Act
            exchange(&room, &mut a, &mut b, "busy", 20).await;

            // Assert: node 0 heard all 20 messages, node 1 none of them.
            let received = received_since(&app, &before).await;
            assert!(received[0] >= 20, "node 0 heard its room: {received:?}");
            assert_eq!(received[1], 0, "node 1 has no socket in the room: {received:?}");
        })
        .await;
}

#[tokio::test]
#[ignore = "needs Redis and MongoDB (scripts/test.sh)"]
async fn a_node_starts_hearing_a_room_when_a_socket_of_its_joins_and_stops_when_the_last_one_goes() {
    SHAPE
        .scope(Shape::Split, async {
            // Arrange: alice on node 0; carol on node 1, not yet in alice's room.
            let app = TestApp::spawn().await;
            let (alice, carol) = (app.signup("alice").await, app.signup("carol").await);
            let room = room_of(&app, &alice, &[]).await;
            let mut a = app.socket_on(&alice, 0).await;
            let mut c = app.socket_on(&carol, 1).await;

            // Act: carol is added; her node follows the room and her socket gets its messages.
            let (status, _) =
                app.post(&format!("/rooms/{room}/members"), &alice.access_token, json!({"user_id": carol.id})).await;
            assert_eq!(status, 201);
            c.next_of("member_joined").await;
            a.next_of("member_joined").await;
            // The join reaches node 1 over the control channel; give it a moment to follow the room.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let joined = bus_events_per_node(&app).await;
            exchange(&room, &mut a, &mut c, "joined", 5).await;
            let while_in = received_since(&app, &joined).await;

            // Then her only socket closes: node 1 no longer hears the room.
            drop(c);
            tokio::time::sleep(Duration::from_millis(500)).await;
            let gone = bus_events_per_node(&app).await;
            for i in 0..5 {
                let ack = a.send_text(&room, &format!("after-{i}"), "nobody on node 1").await;
                assert_eq!(ack["type"], "ack", "{ack}");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            let after = received_since(&app, &gone).await;

            // Assert
            assert!(while_in[1] >= 5, "node 1 heard the room while carol was in it: {while_in:?}");
            assert!(after[0] >= 5, "node 0 still hears it: {after:?}");
            // At most carol going offline, which is sent to her rooms' followers.
            assert!(after[1] <= 1, "node 1 stopped hearing the room: {after:?}");
        })
        .await;
}
