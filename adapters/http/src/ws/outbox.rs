//! A socket's outbound side: frames waiting for its writer, bounded in bytes, and the request to close it.

use std::collections::VecDeque;

use parking_lot::Mutex;
use tokio::sync::{watch, Notify};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::hub::close;

/// Why a socket is being closed; the first request wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closing {
    /// The server ends it: this close frame goes out, then the connection.
    Frame(u16, &'static str),
    /// The peer closed or vanished: only what the codec still owes it goes out.
    Gone,
}

impl Closing {
    /// The reason as `/metrics` counts it: the close frame's, or `gone`.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Frame(_, reason) => reason,
            Self::Gone => "gone",
        }
    }
}

/// What became of a frame offered by the room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    Queued,
    /// It would have taken the queue past its bound: the socket is asked to close with
    /// `1013 too_slow` instead, and this frame is not queued.
    Overflow {
        queued_bytes: usize,
    },
    /// The socket is closing; the frame is dropped.
    Closing,
}

pub struct Outbox {
    queue: Mutex<Queue>,
    /// Most bytes queued or being written before the socket counts as too slow.
    limit: usize,
    /// Wakes the writer: frames arrived, or a close was asked for.
    wake: Notify,
    /// Wakes the socket's own replies waiting for the queue to drain.
    drained: Notify,
    closing: watch::Sender<Option<Closing>>,
}

#[derive(Default)]
struct Queue {
    frames: VecDeque<Utf8Bytes>,
    /// Bytes queued or taken by the writer and not yet flushed: a batch stuck in a write still
    /// counts, so the bound holds for everything the socket keeps in memory.
    bytes: usize,
}

impl Outbox {
    pub fn new(limit: usize) -> Self {
        Self {
            queue: Mutex::new(Queue::default()),
            limit: limit.max(1),
            wake: Notify::new(),
            drained: Notify::new(),
            closing: watch::channel(None).0,
        }
    }

    /// Follows the close requests.
    pub fn closing(&self) -> watch::Receiver<Option<Closing>> {
        self.closing.subscribe()
    }

    pub fn is_closing(&self) -> bool {
        self.closing.borrow().is_some()
    }

    /// Asks the socket to close, unless it already was; true when this request is the one.
    pub fn close(&self, closing: Closing) -> bool {
        let first = self.closing.send_if_modified(|current| {
            let first = current.is_none();
            if first {
                *current = Some(closing);
            }
            first
        });
        self.drained.notify_waiters();
        self.wake.notify_one();
        first
    }

    /// Queues a frame of the room. One that would take the queue past its bound closes the
    /// socket instead, rather than slow the room down or hold more memory; a single frame larger
    /// than the bound still goes out alone.
    pub fn push(&self, frame: Utf8Bytes) -> Offer {
        if self.is_closing() {
            return Offer::Closing;
        }
        let mut queue = self.queue.lock();
        if queue.bytes > 0 && queue.bytes + frame.len() > self.limit {
            let queued_bytes = queue.bytes;
            drop(queue);
            self.close(Closing::Frame(close::TRY_AGAIN_LATER, "too_slow"));
            return Offer::Overflow { queued_bytes };
        }
        queue.bytes += frame.len();
        queue.frames.push_back(frame);
        drop(queue);
        self.wake.notify_one();
        Offer::Queued
    }

    /// Queues the socket's own reply once the queue is at most half full. So a socket's input
    /// waits for its output, and its replies never take the room the room's frames need. False
    /// once the socket is closing.
    pub async fn reply(&self, frame: Utf8Bytes) -> bool {
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            // Registered before looking, so a drain in between is not missed.
            drained.as_mut().enable();
            if self.is_closing() {
                return false;
            }
            {
                let mut queue = self.queue.lock();
                if queue.bytes <= self.limit / 2 {
                    queue.bytes += frame.len();
                    queue.frames.push_back(frame);
                    drop(queue);
                    self.wake.notify_one();
                    return true;
                }
            }
            drained.await;
        }
    }

    /// Takes every queued frame for one write, with their bytes; they stay counted until
    /// [`Outbox::written`].
    pub fn take(&self) -> (Vec<Utf8Bytes>, usize) {
        let mut queue = self.queue.lock();
        let frames: Vec<Utf8Bytes> = queue.frames.drain(..).collect();
        let bytes = frames.iter().map(|f| f.len()).sum();
        (frames, bytes)
    }

    /// A batch of `bytes` has been flushed to the connection.
    pub fn written(&self, bytes: usize) {
        let mut queue = self.queue.lock();
        queue.bytes = queue.bytes.saturating_sub(bytes);
        let half_empty = queue.bytes <= self.limit / 2;
        drop(queue);
        if half_empty {
            self.drained.notify_waiters();
        }
    }

    /// Bytes queued or being written.
    pub fn bytes(&self) -> usize {
        self.queue.lock().bytes
    }

    /// Resolves when frames may have arrived or a close was asked for.
    pub async fn wait(&self) {
        self.wake.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(len: usize) -> Utf8Bytes {
        "x".repeat(len).into()
    }

    #[test]
    fn frames_within_the_byte_bound_are_queued_whatever_their_number() {
        let outbox = Outbox::new(1000);

        let offers: Vec<Offer> = (0..500).map(|_| outbox.push(frame(2))).collect();

        assert!(offers.iter().all(|o| *o == Offer::Queued));
        assert_eq!(outbox.bytes(), 1000);
        assert!(!outbox.is_closing());
    }

    #[test]
    fn a_frame_that_would_pass_the_byte_bound_closes_the_socket_with_1013_too_slow() {
        let outbox = Outbox::new(1000);
        let closing = outbox.closing();
        outbox.push(frame(600));

        let offer = outbox.push(frame(600));

        assert_eq!(offer, Offer::Overflow { queued_bytes: 600 });
        assert_eq!(*closing.borrow(), Some(Closing::Frame(close::TRY_AGAIN_LATER, "too_slow")));
        assert_eq!(outbox.push(frame(1)), Offer::Closing, "nothing is queued once closing");
    }

    #[test]
    fn bytes_being_written_count_against_the_bound_until_they_are_flushed() {
        let outbox = Outbox::new(1000);
        outbox.push(frame(800));

        let (frames, bytes) = outbox.take();

        assert_eq!((frames.len(), bytes), (1, 800));
        assert_eq!(outbox.bytes(), 800);
        assert!(matches!(outbox.push(frame(300)), Offer::Overflow { .. }));
    }

    #[test]
    fn a_flushed_batch_makes_room_again() {
        let outbox = Outbox::new(1000);
        outbox.push(frame(800));
        let (_, bytes) = outbox.take();

        outbox.written(bytes);

        assert_eq!(outbox.push(frame(900)), Offer::Queued);
    }

    #[test]
    fn a_single_frame_larger_than_the_bound_still_goes_out_alone() {
        let outbox = Outbox::new(100);

        assert_eq!(outbox.push(frame(500)), Offer::Queued);
    }

    #[test]
    fn the_first_close_request_wins() {
        let outbox = Outbox::new(100);

        assert!(outbox.close(Closing::Frame(close::GOING_AWAY, "going_away")));
        assert!(!outbox.close(Closing::Gone));

        assert_eq!(*outbox.closing().borrow(), Some(Closing::Frame(close::GOING_AWAY, "going_away")));
    }

    #[tokio::test]
    async fn a_reply_waits_until_the_queue_is_at_most_half_full() {
        let outbox = std::sync::Arc::new(Outbox::new(1000));
        outbox.push(frame(700));
        let waiting = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.reply(frame(10)).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "the reply went in over half the bound");

        let (_, bytes) = outbox.take();
        outbox.written(bytes);

        assert!(waiting.await.expect("task"), "the reply is queued once the queue drained");
        assert_eq!(outbox.take().1, 10);
    }

    #[tokio::test]
    async fn a_waiting_reply_gives_up_when_the_socket_closes() {
        let outbox = std::sync::Arc::new(Outbox::new(1000));
        outbox.push(frame(700));
        let waiting = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.reply(frame(10)).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;

        outbox.close(Closing::Gone);

        assert!(!waiting.await.expect("task"));
    }
}
