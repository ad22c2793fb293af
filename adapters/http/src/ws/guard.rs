//! The socket's read guard: refuses text frames over the text limit before the protocol layer buffers them.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

/// Frame limits the guard enforces as the bytes arrive.
#[derive(Debug, Clone, Copy)]
pub struct GuardLimits {
    /// Largest text message.
    pub max_text: u64,
    /// Largest frame of any kind: a text frame between the two limits is skipped without being
    /// kept, one past this closes the socket.
    pub max_frame: u64,
}

/// Why the guard cut the stream: the socket is closed with 1009.
#[derive(Debug, thiserror::Error)]
#[error("a text message over {limit} bytes")]
pub struct TextTooLarge {
    pub limit: u64,
}

/// Whether a read failed because the guard refused a frame.
pub fn is_refusal(error: &io::Error) -> bool {
    error.get_ref().is_some_and(|inner| inner.is::<TextTooLarge>())
}

/// Text messages the guard skipped and the connection has not answered yet.
#[derive(Debug, Default)]
pub struct Skipped {
    count: AtomicU64,
    wake: Notify,
}

impl Skipped {
    fn push(&self) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.wake.notify_one();
    }

    /// How many were skipped since the last call.
    pub fn take(&self) -> u64 {
        self.count.swap(0, Ordering::Relaxed)
    }

    /// Resolves once something was skipped (or a wake-up was left over from before).
    pub async fn wait(&self) {
        self.wake.notified().await;
    }
}

const TEXT: u8 = 0x1;
const CONTINUATION: u8 = 0x0;
/// The longest frame header: 2 bytes, 8 of extended length, 4 of mask.
const MAX_HEADER: usize = 14;

/// Wraps the raw connection under the WebSocket codec. It reads each frame's header before the
/// codec does: a text message over `max_text` never reaches the codec, which would buffer it
/// whole first. One up to `max_frame` is counted in [`Skipped`] as soon as its header is read, so
/// the connection answers it with an error frame at once, and its bytes are read past and
/// dropped as they come. One larger, or a fragment that takes a message over the limit after its
/// start was passed on, fails the read.
pub struct FrameGuard<T> {
    io: T,
    limits: GuardLimits,
    skipped: Arc<Skipped>,
    /// Bytes read from `io` but not handed on yet: a header being decided, and what followed it.
    pending: [u8; MAX_HEADER],
    start: usize,
    end: usize,
    phase: Phase,
    text: Text,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Collecting the next frame's header.
    Header,
    /// Handing on the `left` header bytes at the front of `pending`, then its `payload` bytes.
    Emit {
        left: usize,
        payload: u64,
    },
    /// Handing on `left` payload bytes.
    Pass {
        left: u64,
    },
    /// Dropping `left` payload bytes of a skipped frame.
    Drop {
        left: u64,
    },
    Failed {
        limit: u64,
    },
}

/// The text message in progress, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Text {
    None,
    /// Handed on so far, in bytes.
    Passing(u64),
    /// Dropped so far, in bytes.
    Skipping(u64),
}

/// A decoded frame header.
struct Header {
    fin: bool,
    opcode: u8,
    payload: u64,
    len: usize,
}

/// The header at the front of `bytes`, once all of it is there.
fn parse_header(bytes: &[u8]) -> Option<Header> {
    let (&b0, rest) = bytes.split_first()?;
    let &b1 = rest.first()?;
    let extended = match b1 & 0x7F {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if b1 & 0x80 != 0 { 4 } else { 0 };
    let len = 2 + extended + mask;
    let ext = bytes.get(2..2 + extended)?;
    bytes.get(..len)?;
    let payload = match extended {
        0 => u64::from(b1 & 0x7F),
        _ => ext.iter().fold(0u64, |n, b| (n << 8) | u64::from(*b)),
    };
    Some(Header { fin: b0 & 0x80 != 0, opcode: b0 & 0x0F, payload, len })
}

impl<T> FrameGuard<T> {
    pub fn new(io: T, limits: GuardLimits, skipped: Arc<Skipped>) -> Self {
        Self { io, limits, skipped, pending: [0; MAX_HEADER], start: 0, end: 0, phase: Phase::Header, text: Text::None }
    }

    /// Decides what to do with the frame whose header is complete at the front of `pending`.
    fn decide(&mut self, header: &Header) -> Phase {
        let Header { fin, opcode, payload, len } = *header;
        let pass = Phase::Emit { left: len, payload };
        let skip = |guard: &mut Self, so_far: u64| {
            guard.start += len;
            guard.text = if fin { Text::None } else { Text::Skipping(so_far) };
            Phase::Drop { left: payload }
        };
        let too_large = Phase::Failed { limit: self.limits.max_text };
        match (opcode, self.text) {
            (TEXT, _) if payload > self.limits.max_frame => too_large,
            (TEXT, _) if payload > self.limits.max_text => {
                // Answered now, from its header: the client need not send the rest to hear.
                self.skipped.push();
                skip(self, payload)
            }
            (TEXT, _) => {
                self.text = if fin { Text::None } else { Text::Passing(payload) };
                pass
            }
            (CONTINUATION, Text::Passing(so_far)) => {
                let total = so_far.saturating_add(payload);
                if total > self.limits.max_text {
                    return too_large;
                }
                self.text = if fin { Text::None } else { Text::Passing(total) };
                pass
            }
            (CONTINUATION, Text::Skipping(so_far)) => {
                let total = so_far.saturating_add(payload);
                if total > self.limits.max_frame {
                    return too_large;
                }
                skip(self, total)
            }
            // Binary frames, their continuations and control frames are the codec's to check.
            _ => pass,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for FrameGuard<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            match this.phase {
                Phase::Failed { limit } => {
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, TextTooLarge { limit })));
                }
                Phase::Header => {
                    if let Some(header) = parse_header(&this.pending[this.start..this.end]) {
                        this.phase = this.decide(&header);
                        continue;
                    }
                    this.pending.copy_within(this.start..this.end, 0);
                    this.end -= this.start;
                    this.start = 0;
                    let mut into = ReadBuf::new(&mut this.pending[this.end..]);
                    ready!(Pin::new(&mut this.io).poll_read(cx, &mut into))?;
                    let n = into.filled().len();
                    if n == 0 {
                        // The peer is gone mid-header: hand on what there is, then the end.
                        let rest = &this.pending[this.start..this.end];
                        let n = rest.len().min(buf.remaining());
                        buf.put_slice(&rest[..n]);
                        this.start += n;
                        return Poll::Ready(Ok(()));
                    }
                    this.end += n;
                }
                Phase::Emit { left, payload } => {
                    let n = left.min(buf.remaining());
                    buf.put_slice(&this.pending[this.start..this.start + n]);
                    this.start += n;
                    this.phase =
                        if n == left { Phase::Pass { left: payload } } else { Phase::Emit { left: left - n, payload } };
                    return Poll::Ready(Ok(()));
                }
                Phase::Pass { left: 0 } => this.phase = Phase::Header,
                Phase::Pass { left } => {
                    let wanted = usize::try_from(left).unwrap_or(usize::MAX).min(buf.remaining());
                    let n = if this.start < this.end {
                        let n = wanted.min(this.end - this.start);
                        buf.put_slice(&this.pending[this.start..this.start + n]);
                        this.start += n;
                        n
                    } else {
                        let into = buf.initialize_unfilled_to(wanted);
                        let mut limited = ReadBuf::new(into);
                        ready!(Pin::new(&mut this.io).poll_read(cx, &mut limited))?;
                        let n = limited.filled().len();
                        buf.advance(n);
                        n
                    };
                    this.phase = Phase::Pass { left: left - n as u64 };
                    return Poll::Ready(Ok(()));
                }
                Phase::Drop { left: 0 } => this.phase = Phase::Header,
                Phase::Drop { left } => {
                    let wanted = usize::try_from(left).unwrap_or(usize::MAX);
                    let n = if this.start < this.end {
                        let n = wanted.min(this.end - this.start);
                        this.start += n;
                        n
                    } else {
                        // The caller's buffer serves as scratch: nothing is marked filled.
                        let scratch = buf.initialize_unfilled_to(wanted.min(buf.remaining()));
                        let mut into = ReadBuf::new(scratch);
                        ready!(Pin::new(&mut this.io).poll_read(cx, &mut into))?;
                        let n = into.filled().len();
                        if n == 0 {
                            return Poll::Ready(Ok(()));
                        }
                        n
                    };
                    this.phase = Phase::Drop { left: left - n as u64 };
                }
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for FrameGuard<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    const LIMITS: GuardLimits = GuardLimits { max_text: 10, max_frame: 1_000 };
    const BINARY: u8 = 0x2;
    const PING: u8 = 0x9;

    /// A masked client frame, as a browser sends it.
    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![if fin { 0x80 | opcode } else { opcode }];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 0xFFFF => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let mask = [1, 2, 3, 4];
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    /// Hands out its bytes `step` at a time, as a slow network does.
    struct Trickle {
        bytes: Vec<u8>,
        at: usize,
        step: usize,
    }

    impl AsyncRead for Trickle {
        fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
            let n = self.step.min(buf.remaining()).min(self.bytes.len() - self.at);
            let at = self.at;
            buf.put_slice(&self.bytes[at..at + n]);
            self.at += n;
            Poll::Ready(Ok(()))
        }
    }

    /// What the codec reads through a guard over `input`, fed `step` bytes at a time and read
    /// into buffers of `read` bytes; and how many messages the guard skipped.
    async fn through_guard(input: &[u8], step: usize, read: usize) -> (io::Result<Vec<u8>>, u64) {
        let skipped = Arc::new(Skipped::default());
        let source = Trickle { bytes: input.to_vec(), at: 0, step };
        let mut guard = FrameGuard::new(source, LIMITS, skipped.clone());
        let mut out = Vec::new();
        let mut buf = vec![0u8; read];
        let result = loop {
            match guard.read(&mut buf).await {
                Ok(0) => break Ok(out),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => break Err(e),
            }
        };
        (result, skipped.take())
    }

    const SHAPES: [(usize, usize); 5] = [(1, 1), (1, 4096), (3, 5), (4096, 2), (4096, 4096)];

    #[tokio::test]
    async fn frames_within_the_limits_pass_unchanged_however_they_are_cut() {
        let input = [
            frame(true, TEXT, b"hello"),
            frame(true, PING, b""),
            frame(false, TEXT, b"split "),
            frame(true, CONTINUATION, b"text"),
            frame(true, BINARY, &[7; 300]),
            frame(true, TEXT, b""),
        ]
        .concat();

        for (step, read) in SHAPES {
            let (out, skipped) = through_guard(&input, step, read).await;
            assert_eq!(out.expect("readable"), input, "fed {step}, read {read}");
            assert_eq!(skipped, 0);
        }
    }

    #[tokio::test]
    async fn a_text_frame_over_the_text_limit_is_dropped_and_counted_and_the_next_frame_passes() {
        let before = frame(true, TEXT, b"one");
        let after = frame(true, TEXT, b"two");
        let input = [before.clone(), frame(true, TEXT, &[b'x'; 500]), after.clone()].concat();

        for (step, read) in SHAPES {
            let (out, skipped) = through_guard(&input, step, read).await;
            assert_eq!(out.expect("readable"), [before.clone(), after.clone()].concat(), "fed {step}, read {read}");
            assert_eq!(skipped, 1);
        }
    }

    #[tokio::test]
    async fn a_text_message_whose_first_fragment_is_over_the_limit_is_dropped_whole() {
        let after = frame(true, TEXT, b"next");
        let input = [frame(false, TEXT, &[b'x'; 50]), frame(true, CONTINUATION, &[b'y'; 50]), after.clone()].concat();

        let (out, skipped) = through_guard(&input, 7, 64).await;

        assert_eq!(out.expect("readable"), after);
        assert_eq!(skipped, 1, "one message, however many fragments");
    }

    #[tokio::test]
    async fn a_text_frame_over_the_limit_is_counted_from_its_header_before_its_bytes_arrive() {
        let skipped = Arc::new(Skipped::default());
        let mut partial = frame(true, TEXT, &[b'x'; 500]);
        partial.truncate(20);
        let (wire, mut peer) = tokio::io::duplex(64);
        let mut guard = FrameGuard::new(wire, LIMITS, skipped.clone());
        tokio::io::AsyncWriteExt::write_all(&mut peer, &partial).await.expect("written");

        let mut buf = [0u8; 64];
        let read = futures::FutureExt::now_or_never(guard.read(&mut buf));

        assert!(read.is_none(), "nothing to hand on yet: the rest of the frame has not come");
        assert_eq!(skipped.take(), 1);
    }

    #[tokio::test]
    async fn a_binary_frame_over_the_text_limit_passes() {
        let input = frame(true, BINARY, &[1; 500]);

        let (out, skipped) = through_guard(&input, 100, 100).await;

        assert_eq!(out.expect("readable"), input);
        assert_eq!(skipped, 0);
    }

    #[tokio::test]
    async fn a_text_frame_over_the_frame_limit_fails_the_read() {
        let input = frame(true, TEXT, &[b'x'; 2_000]);

        let (out, _) = through_guard(&input, 4096, 4096).await;

        let error = out.expect_err("refused");
        assert!(is_refusal(&error), "{error}");
    }

    #[tokio::test]
    async fn a_fragment_that_takes_a_passed_text_message_over_the_limit_fails_the_read() {
        let input = [frame(false, TEXT, b"12345678"), frame(true, CONTINUATION, b"345")].concat();

        let (out, _) = through_guard(&input, 4096, 4096).await;

        assert!(out.is_err_and(|e| is_refusal(&e)));
    }

    #[tokio::test]
    async fn a_text_frame_declaring_an_absurd_length_fails_the_read_without_waiting_for_it() {
        // The header claims 2^62 bytes and nothing follows.
        let mut input = vec![0x80 | TEXT, 0x80 | 127];
        input.extend_from_slice(&(1u64 << 62).to_be_bytes());
        input.extend_from_slice(&[0; 4]);

        let (out, _) = through_guard(&input, 3, 4096).await;

        assert!(out.is_err_and(|e| is_refusal(&e)));
    }
}
