//! A resumed room of one socket: from the seq the client has, each message goes out exactly once
//! and in seq order, first read from the log, then live; live frames that come early are held.

use std::collections::BTreeMap;

use tokio_tungstenite::tungstenite::Utf8Bytes;

/// The sequencer of one room on one socket.
#[derive(Debug)]
pub struct Resumed {
    /// The next seq this socket is owed.
    next: u64,
    /// Live frames past `next`, held until every one before them has gone out.
    held: BTreeMap<u64, Utf8Bytes>,
    held_bytes: usize,
    /// While the connection reads the log for this room, every live frame is held.
    recovering: bool,
}

/// What to do with a live message frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Live {
    /// Send these, in order: the frame and the held ones that follow it.
    Send(Vec<Utf8Bytes>),
    /// Held; `gap` when a seq before it is missing and the connection should fill it from the
    /// log if it does not come live soon.
    Held { gap: bool },
    /// Already sent (from the log, or live): a copy.
    Dropped,
    /// Holding it would pass the socket's bound: the socket is too slow.
    Overflow,
}

/// What to do with a message read from the log while recovering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Owed: send it.
    Send,
    /// Sent already.
    Skip,
    /// Owed, but the seqs before it are gone from the log (retention): say so, then send it.
    Truncated { oldest: u64 },
}

impl Resumed {
    /// The client has everything up to `after`; the log is read next.
    pub fn new(after: u64) -> Self {
        Self { next: after.saturating_add(1), held: BTreeMap::new(), held_bytes: 0, recovering: true }
    }

    pub fn next(&self) -> u64 {
        self.next
    }

    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    /// A live message frame of seq `seq`; `room` is how many more bytes may be held.
    pub fn live(&mut self, seq: u64, frame: Utf8Bytes, room: usize) -> Live {
        if seq < self.next || self.held.contains_key(&seq) {
            return Live::Dropped;
        }
        if self.recovering || seq > self.next {
            if self.held_bytes + frame.len() > room {
                return Live::Overflow;
            }
            self.held_bytes += frame.len();
            self.held.insert(seq, frame);
            return Live::Held { gap: !self.recovering };
        }
        self.next += 1;
        let mut out = vec![frame];
        out.extend(self.release());
        Live::Send(out)
    }

    /// A message of seq `seq` read from the log.
    pub fn recovered(&mut self, seq: u64) -> Claim {
        if seq < self.next {
            return Claim::Skip;
        }
        let claim = if seq == self.next { Claim::Send } else { Claim::Truncated { oldest: seq } };
        self.next = seq + 1;
        claim
    }

    /// The log has nothing more to give: the held frames that follow on go out. Recovery is over
    /// unless a seq is still missing before the held ones (`false`: read the log again).
    pub fn settle(&mut self) -> (Vec<Utf8Bytes>, bool) {
        // Those the log sent already.
        let stale: Vec<u64> = self.held.range(..self.next).map(|(seq, _)| *seq).collect();
        for seq in stale {
            if let Some(frame) = self.held.remove(&seq) {
                self.held_bytes -= frame.len();
            }
        }
        let out = self.release();
        let done = self.held.is_empty();
        if done {
            self.recovering = false;
        }
        (out, done)
    }

    /// Recovery is to run again: a gap among the live frames did not close by itself.
    pub fn begin(&mut self) {
        self.recovering = true;
    }

    /// A seq the log will never have (an append that failed after taking it): go on from the
    /// first held frame rather than wait for it forever.
    pub fn skip_hole(&mut self) {
        if let Some(first) = self.held.keys().next() {
            self.next = self.next.max(*first);
        }
    }

    /// Live frames wait behind a missing seq while no recovery runs.
    pub fn gapped(&self) -> bool {
        !self.recovering && !self.held.is_empty()
    }

    fn release(&mut self) -> Vec<Utf8Bytes> {
        let mut out = Vec::new();
        while let Some(frame) = self.held.remove(&self.next) {
            self.held_bytes -= frame.len();
            self.next += 1;
            out.push(frame);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOM: usize = 1 << 20;

    fn frame(seq: u64) -> Utf8Bytes {
        format!("m{seq}").into()
    }

    fn sent(live: Live) -> Vec<String> {
        match live {
            Live::Send(frames) => frames.iter().map(|f| f.as_str().to_owned()).collect(),
            other => panic!("expected frames to send, got {other:?}"),
        }
    }

    #[test]
    fn live_frames_during_recovery_wait_and_those_the_log_sent_are_dropped() {
        // Arrange: the client has 10; 11 and 12 are in the log; 12 and 13 also come live.
        let mut room = Resumed::new(10);
        assert_eq!(room.live(12, frame(12), ROOM), Live::Held { gap: false });
        assert_eq!(room.live(13, frame(13), ROOM), Live::Held { gap: false });

        // Act
        let claims = [room.recovered(11), room.recovered(12)];
        let (released, done) = room.settle();

        // Assert: 11 and 12 from the log, then 13 live, each once.
        assert_eq!(claims, [Claim::Send, Claim::Send]);
        assert_eq!(released.iter().map(|f| f.as_str()).collect::<Vec<_>>(), ["m13"]);
        assert!(done);
        assert_eq!((room.next(), room.held_bytes()), (14, 0));
        assert_eq!(room.live(12, frame(12), ROOM), Live::Dropped);
        assert_eq!(sent(room.live(14, frame(14), ROOM)), ["m14"]);
    }

    #[test]
    fn live_frames_out_of_order_go_out_in_seq_order() {
        let mut room = Resumed::new(0);
        assert!(room.settle().1);

        assert_eq!(room.live(2, frame(2), ROOM), Live::Held { gap: true });
        assert!(room.gapped());
        assert_eq!(sent(room.live(1, frame(1), ROOM)), ["m1", "m2"]);
        assert!(!room.gapped());
    }

    #[test]
    fn a_gap_that_does_not_close_is_filled_from_the_log() {
        let mut room = Resumed::new(0);
        room.settle();
        room.live(3, frame(3), ROOM);

        room.begin();
        let claims = [room.recovered(1), room.recovered(2)];
        let (released, done) = room.settle();

        assert_eq!(claims, [Claim::Send, Claim::Send]);
        assert_eq!(released.iter().map(|f| f.as_str()).collect::<Vec<_>>(), ["m3"]);
        assert!(done);
    }

    #[test]
    fn a_seq_the_log_no_longer_has_is_reported_as_truncated() {
        let mut room = Resumed::new(5);

        assert_eq!(room.recovered(40), Claim::Truncated { oldest: 40 });
        assert_eq!(room.recovered(41), Claim::Send);
        assert_eq!(room.next(), 42);
    }

    #[test]
    fn holding_is_bounded() {
        let mut room = Resumed::new(0);

        assert_eq!(room.live(1, frame(1), 2), Live::Held { gap: false });
        assert_eq!(room.live(2, frame(2), 2), Live::Overflow);
    }

    #[test]
    fn a_hole_the_log_never_fills_is_skipped_to_the_first_held_frame() {
        let mut room = Resumed::new(0);
        room.live(5, frame(5), ROOM);
        assert!(!room.settle().1);

        room.skip_hole();
        let (released, done) = room.settle();

        assert_eq!(released.iter().map(|f| f.as_str()).collect::<Vec<_>>(), ["m5"]);
        assert!(done);
    }
}
