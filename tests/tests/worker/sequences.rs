//! Recovering the log's seq counters from the archive, after Redis lost them.

use application::ports::{MessageArchive, MessageLog};
use domain::{Message, MessageId, RoomId, Seq};

use crate::support::{append, new_room, new_sender, text, World};

/// Archived messages of `room` with exactly these seqs, as if older ones had been purged.
fn archived_with_seqs(room: RoomId, seqs: impl IntoIterator<Item = u64>) -> Vec<Message> {
    let sender = new_sender("dave");
    seqs.into_iter()
        .map(|n| Message {
            id: MessageId::from_uuid(uuid::Uuid::now_v7()),
            room_id: room,
            seq: Seq::new(n).expect("a positive seq"),
            sender: sender.clone(),
            body: text(&format!("message {n}")),
            sent_at: chrono::Utc::now(),
            state: Default::default(),
        })
        .collect()
}

#[tokio::test]
#[ignore = "needs Redis and MongoDB (scripts/test.sh)"]
async fn recover_sequences_makes_a_fresh_log_continue_after_the_archived_seq() {
    // Arrange: the archive reaches seq 42 in one room (its start purged) and 7 in another; the
    // log is on a fresh prefix, as after a Redis restart without data, except that a third room
    // already counted further than its archive.
    let world = World::new().await;
    let (purged_start, small, ahead, unknown) = (new_room(), new_room(), new_room(), new_room());
    world.store.insert_batch(&archived_with_seqs(purged_start, 30..=42)).await.expect("archived");
    world.store.insert_batch(&archived_with_seqs(small, 1..=7)).await.expect("archived");
    world.store.insert_batch(&archived_with_seqs(ahead, 1..=3)).await.expect("archived");
    let sender = new_sender("erin");
    for n in 1..=5 {
        append(world.log.as_ref(), ahead, &sender, &format!("already counted {n}")).await;
    }
    let archiver = world.restarted_archiver().await;

    // Act
    let recovered = archiver.recover_sequences().await.expect("recover");
    let next = |room| append(world.log.as_ref(), room, &sender, "after the recovery");
    let (after_purged_start, after_small, after_ahead, in_unknown) =
        (next(purged_start).await, next(small).await, next(ahead).await, next(unknown).await);
    let twice = archiver.recover_sequences().await.expect("recover again");
    let after_twice = next(purged_start).await;

    // Assert
    assert_eq!(recovered, 3, "one counter per archived room");
    assert_eq!(after_purged_start.seq.get(), 43);
    assert_eq!(after_small.seq.get(), 8);
    assert_eq!(after_ahead.seq.get(), 6, "a counter already past the archive is never lowered");
    assert_eq!(in_unknown.seq.get(), 1, "a room with nothing archived starts at 1");
    assert_eq!(twice, 3);
    assert_eq!(after_twice.seq.get(), 44, "recovering again does not rewind a counter in use");
    assert_eq!(world.log.last_seq(purged_start).await.expect("last seq"), Seq::new(44));
}
