//! e2e: after a short exchange, `/metrics` of each node shows what it did: messages accepted and
//! their ack latency, frames written and the queues they drained, bus events, sockets closed by
//! reason, and in the split shape Redis and MongoDB call latency.

use std::net::SocketAddr;
use std::time::Duration;

use e2e::TestApp;

/// The value of the sample `series` (name and labels, as exposed) on the node at `addr`.
async fn sample(app: &TestApp, addr: SocketAddr, series: &str) -> f64 {
    let text =
        app.http.get(format!("http://{addr}/metrics")).send().await.expect("metrics").text().await.expect("text");
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{series} missing from\n{text}"))
}

/// Polls until `series` on `addr` reaches `at_least`: counters move after the frames that caused them.
async fn reaches(app: &TestApp, addr: SocketAddr, series: &str, at_least: f64) -> f64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let value = sample(app, addr, series).await;
        if value >= at_least || tokio::time::Instant::now() > deadline {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn a_short_exchange_shows_on_each_nodes_metrics() {
    // Arrange: the sender on socket node 0, the reader on node 1 (the same node, embedded).
    let app = TestApp::spawn().await;
    let ada = app.signup("ada").await;
    let bob = app.signup("bob").await;
    let room = app.create_room(&ada, "private", &[&bob]).await["id"].as_str().unwrap().to_owned();
    let mut sender = app.socket_on(&ada, 0).await;
    let mut reader = app.socket_on(&bob, 1).await;
    let (sending, reading) = (app.socket_addrs[0], app.socket_addrs[1 % app.socket_addrs.len()]);

    // Act
    for n in 0..3 {
        let ack = sender.send_text(&room, &format!("m{n}"), "hello").await;
        assert_eq!(ack["type"], "ack", "{ack}");
        reader.next_of("message").await;
    }
    drop(reader);

    // Assert
    assert_eq!(sample(&app, sending, "chat_messages_accepted_total").await, 3.0);
    assert_eq!(sample(&app, sending, "chat_ack_latency_seconds_count").await, 3.0);
    let ack_seconds = sample(&app, sending, "chat_ack_latency_seconds_sum").await;
    assert!(ack_seconds > 0.0 && ack_seconds < 15.0, "3 acks took {ack_seconds} s in all");
    // The reader got at least ready, three messages and presence; the sender as much and its acks.
    assert!(reaches(&app, reading, "chat_frames_delivered_total", 4.0).await >= 4.0);
    assert!(sample(&app, sending, "chat_frames_delivered_total").await >= 7.0);
    assert!(sample(&app, reading, "chat_socket_queue_bytes_count").await >= 1.0);
    assert!(sample(&app, reading, "chat_bus_events_total").await >= 3.0, "the messages came over the bus");
    assert_eq!(sample(&app, reading, "chat_bus_gaps_total").await, 0.0);
    assert_eq!(reaches(&app, reading, r#"chat_sockets_closed_total{reason="gone"}"#, 1.0).await, 1.0);
    if app.shape.is_split() {
        let appends = r#"chat_store_call_seconds_count{store="redis",op="append"}"#;
        // At least one per message: a node's first append also learns the counters are intact.
        assert!(sample(&app, sending, appends).await >= 3.0);
        let inserts = r#"chat_store_call_seconds_count{store="mongodb",op="insert"}"#;
        assert!(sample(&app, app.addr, inserts).await >= 1.0, "sign-ups and the room went to MongoDB");
    }
}

e2e::on_both_shapes!(a_short_exchange_shows_on_each_nodes_metrics);
