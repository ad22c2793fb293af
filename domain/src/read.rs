//! Read markers: how far a member has read a room, which only ever moves forward.

use crate::Seq;

/// The most unread messages a room counts: past it a client shows "1000+", and counting a room
/// never costs more than this many index entries.
pub const UNREAD_CAP: u64 = 1000;

/// The highest seq a member has read in a room; 0 before they read any.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ReadMarker(u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReadMarkerError {
    #[error("seq {seq} is past the room's last message (seq {last})")]
    BeyondLast { seq: u64, last: u64 },
}

impl ReadMarker {
    pub const NONE: Self = Self(0);

    /// A marker a member asks for: at most the room's `last` seq given out, since nobody can have
    /// read a message that does not exist yet.
    pub fn requested(seq: u64, last: Option<Seq>) -> Result<Self, ReadMarkerError> {
        let last = last.map_or(0, Seq::get);
        if seq > last {
            return Err(ReadMarkerError::BeyondLast { seq, last });
        }
        Ok(Self(seq))
    }

    /// A marker read back from storage.
    pub const fn restore(seq: u64) -> Self {
        Self(seq)
    }

    pub const fn get(self) -> u64 {
        self.0
    }

    /// Where the marker stands after `requested`: never behind where it was. A lower seq (a
    /// late frame from another device) changes nothing and is no error.
    #[must_use]
    pub fn advanced_to(self, requested: Self) -> Self {
        self.max(requested)
    }

    /// The unread count to show for `counted` messages past the marker.
    pub fn capped(counted: u64) -> u64 {
        counted.min(UNREAD_CAP)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_marker_may_not_pass_the_last_message() {
        assert_eq!(ReadMarker::requested(5, Seq::new(5)), Ok(ReadMarker::restore(5)));
        assert_eq!(ReadMarker::requested(6, Seq::new(5)), Err(ReadMarkerError::BeyondLast { seq: 6, last: 5 }));
        assert_eq!(ReadMarker::requested(0, None), Ok(ReadMarker::NONE));
        assert_eq!(ReadMarker::requested(1, None), Err(ReadMarkerError::BeyondLast { seq: 1, last: 0 }));
    }

    #[test]
    fn a_lower_seq_leaves_the_marker_where_it_was() {
        let at_ten = ReadMarker::restore(10);
        assert_eq!(at_ten.advanced_to(ReadMarker::restore(3)), at_ten);
        assert_eq!(at_ten.advanced_to(ReadMarker::restore(12)), ReadMarker::restore(12));
    }

    #[test]
    fn unread_counts_stop_at_the_cap() {
        assert_eq!(ReadMarker::capped(7), 7);
        assert_eq!(ReadMarker::capped(UNREAD_CAP + 5), UNREAD_CAP);
    }

    proptest! {
        #[test]
        fn markers_only_move_forward(steps in proptest::collection::vec(0u64..100, 0..30)) {
            let mut marker = ReadMarker::NONE;
            for step in steps {
                let next = marker.advanced_to(ReadMarker::restore(step));
                prop_assert!(next >= marker);
                prop_assert!(next.get() >= step);
                marker = next;
            }
        }
    }
}
