//! Retention: how long messages and files are kept, and what has expired at a given instant.

use crate::{FileKind, Timestamp};
use chrono::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    messages: Duration,
    images: Duration,
    files: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("retention periods must be positive")]
pub struct RetentionError;

impl Default for RetentionPolicy {
    /// Messages 30 days, images 14 days, other files 28 days.
    fn default() -> Self {
        Self { messages: Duration::days(30), images: Duration::days(14), files: Duration::days(28) }
    }
}

impl RetentionPolicy {
    pub fn new(messages: Duration, images: Duration, files: Duration) -> Result<Self, RetentionError> {
        let positive = |d: Duration| d > Duration::zero();
        if positive(messages) && positive(images) && positive(files) {
            Ok(Self { messages, images, files })
        } else {
            Err(RetentionError)
        }
    }

    pub fn messages(&self) -> Duration {
        self.messages
    }

    pub fn for_file(&self, kind: FileKind) -> Duration {
        match kind {
            FileKind::Image => self.images,
            FileKind::File => self.files,
        }
    }

    /// When a file uploaded at `uploaded_at` expires.
    pub fn file_expiry(&self, kind: FileKind, uploaded_at: Timestamp) -> Timestamp {
        uploaded_at + self.for_file(kind)
    }

    /// Messages sent strictly before this instant are expired at `now`.
    pub fn message_cutoff(&self, now: Timestamp) -> Timestamp {
        now - self.messages
    }

    pub fn is_message_expired(&self, sent_at: Timestamp, now: Timestamp) -> bool {
        sent_at < self.message_cutoff(now)
    }

    /// A file is expired from its expiry instant on.
    pub fn is_file_expired(expires_at: Timestamp, now: Timestamp) -> bool {
        now >= expires_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use proptest::prelude::*;

    fn t0() -> Timestamp {
        Utc.timestamp_opt(1_700_000_000, 0).unwrap()
    }

    #[test]
    fn defaults_are_thirty_fourteen_and_twenty_eight_days() {
        let p = RetentionPolicy::default();
        assert_eq!(p.messages(), Duration::days(30));
        assert_eq!(p.for_file(FileKind::Image), Duration::days(14));
        assert_eq!(p.for_file(FileKind::File), Duration::days(28));
    }

    #[test]
    fn a_message_expires_just_after_thirty_days() {
        let p = RetentionPolicy::default();
        let now = t0() + Duration::days(30);
        assert!(!p.is_message_expired(t0(), now));
        assert!(p.is_message_expired(t0() - Duration::seconds(1), now));
    }

    #[test]
    fn an_image_expires_at_fourteen_days_and_a_file_at_twenty_eight() {
        let p = RetentionPolicy::default();
        let image = p.file_expiry(FileKind::Image, t0());
        let file = p.file_expiry(FileKind::File, t0());
        assert!(!RetentionPolicy::is_file_expired(image, t0() + Duration::days(14) - Duration::seconds(1)));
        assert!(RetentionPolicy::is_file_expired(image, t0() + Duration::days(14)));
        assert!(!RetentionPolicy::is_file_expired(file, t0() + Duration::days(27)));
        assert!(RetentionPolicy::is_file_expired(file, t0() + Duration::days(28)));
    }

    #[test]
    fn non_positive_periods_are_refused() {
        assert_eq!(RetentionPolicy::new(Duration::zero(), Duration::days(1), Duration::days(1)), Err(RetentionError));
    }

    proptest! {
        #[test]
        fn a_message_is_expired_exactly_when_older_than_the_period(age_secs in 0i64..10_000_000) {
            let p = RetentionPolicy::default();
            let now = t0();
            let sent = now - Duration::seconds(age_secs);
            prop_assert_eq!(p.is_message_expired(sent, now), Duration::seconds(age_secs) > p.messages());
        }
    }
}
