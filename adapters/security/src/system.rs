//! The real clock and id generator.

use application::ports::{Clock, IdGenerator};
use chrono::{SubsecRound, Utc};
use domain::Timestamp;

/// Wall-clock time in whole milliseconds, the finest precision every store keeps, so a timestamp
/// read back from SQLite millis or a BSON datetime equals the one written.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Utc::now().trunc_subsecs(3)
    }
}

/// Time-ordered UUIDv7 ids, so ids sort by creation time.
#[derive(Debug, Clone, Copy, Default)]
pub struct UuidV7Ids;

impl IdGenerator for UuidV7Ids {
    fn new_id(&self) -> uuid::Uuid {
        uuid::Uuid::now_v7()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Timelike};

    #[test]
    fn the_clock_has_no_precision_below_a_millisecond() {
        let now = SystemClock.now();

        assert_eq!(now.nanosecond() % 1_000_000, 0);
        assert_eq!(DateTime::from_timestamp_millis(now.timestamp_millis()), Some(now));
    }

    #[test]
    fn the_clock_follows_the_system_time() {
        let before = Utc::now().trunc_subsecs(3);

        let now = SystemClock.now();

        assert!(now >= before && now <= Utc::now());
    }

    #[test]
    fn ids_are_version_seven_and_ordered_by_creation() {
        let ids: Vec<uuid::Uuid> = (0..1000).map(|_| UuidV7Ids.new_id()).collect();

        assert!(ids.iter().all(|id| id.get_version_num() == 7));
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]));
    }
}
