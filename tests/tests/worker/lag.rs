//! The archive-lag metric: how long the oldest message not yet archived has waited.

use std::time::{Duration, Instant};

use application::ports::MessageLog;

use crate::support::{append, new_room, new_sender, World};

/// Slack for the millisecond rounding of stream ids and of the clock.
const ROUNDING: Duration = Duration::from_millis(5);

/// Asserts `lag` lies between the time since the message's append returned and the time since it
/// began (both measured around the lag call), give or take the rounding.
fn assert_age(lag: chrono::Duration, since_append_returned: Duration, since_append_began: Duration, what: &str) {
    let lag = lag.to_std().expect("the lag is never negative");
    assert!(
        lag + ROUNDING >= since_append_returned && lag <= since_append_began + ROUNDING,
        "{what}: lag {lag:?} is not the age of its message ({since_append_returned:?}..={since_append_began:?})"
    );
}

#[tokio::test]
#[ignore = "needs Redis and MongoDB (scripts/test.sh)"]
async fn the_archive_lag_is_the_age_of_the_oldest_unarchived_message() {
    // Arrange: two messages appended 400 ms apart.
    let world = World::new().await;
    let archiver = world.restarted_archiver().await;
    let (room, sender) = (new_room(), new_sender("frank"));
    let idle_lag = archiver.lag().await.expect("lag");
    let first_began = Instant::now();
    append(world.log.as_ref(), room, &sender, "first").await;
    let first_returned = Instant::now();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let second_began = Instant::now();
    append(world.log.as_ref(), room, &sender, "second").await;
    let second_returned = Instant::now();
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Act: measure with both waiting, with the first claimed but not acknowledged, with only the
    // second waiting, and with none.
    let (lower, both_waiting, upper) = (first_returned.elapsed(), archiver.lag().await, first_began.elapsed());
    let claimed = world.log.claim_batch("w1", 1).await.expect("claim");
    let (claimed_lower, while_claimed, claimed_upper) =
        (first_returned.elapsed(), archiver.lag().await, first_began.elapsed());
    world.log.ack(&[claimed[0].receipt.clone()]).await.expect("ack");
    let (second_lower, second_waiting, second_upper) =
        (second_returned.elapsed(), archiver.lag().await, second_began.elapsed());
    let drained = archiver.drain("w1", 10).await.expect("drain");
    let none_waiting = archiver.lag().await.expect("lag");

    // Assert
    assert_eq!(idle_lag, chrono::Duration::zero(), "nothing waits before the first message");
    assert_age(both_waiting.expect("lag"), lower, upper, "both waiting");
    assert!(lower >= Duration::from_millis(500));
    assert_age(while_claimed.expect("lag"), claimed_lower, claimed_upper, "first claimed, not acknowledged");
    assert_eq!(seqs_of(&claimed), [1]);
    assert_age(second_waiting.expect("lag"), second_lower, second_upper, "only the second waiting");
    assert_eq!(drained, 1);
    assert_eq!(none_waiting, chrono::Duration::zero(), "nothing waits once everything is archived");
}

fn seqs_of(batch: &[application::ports::Queued]) -> Vec<u64> {
    batch.iter().map(|q| q.message.seq.get()).collect()
}
