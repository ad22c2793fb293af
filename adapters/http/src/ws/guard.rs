//! The socket's read guard: frames are measured and cut before the protocol codec buffers them.

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
    /// Largest frame of any kind. A text frame between `max_text` and this is read past without
    /// being kept; any frame larger closes the socket.
    pub max_frame: u64,
    /// Largest data frame the codec is handed: a longer binary frame reaches it cut into
    /// fragments of this size, so the codec never holds a read buffer the size of an upload.
    /// At least `max_text`.
    pub piece: u64,
}

/// Why the guard cut the stream: the socket is closed with 1009.
#[derive(Debug, thiserror::Error)]
#[error("a frame or text message over {limit} bytes")]
pub struct TooLarge {
    pub limit: u64,
}

/// Whether a read failed because the guard refused a frame.
pub fn is_refusal(error: &io::Error) -> bool {
    error.get_ref().is_some_and(|inner| inner.is::<TooLarge>())
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

const CONTINUATION: u8 = 0x0;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
/// The longest frame header: 2 bytes, 8 of extended length, 4 of mask.
const MAX_HEADER: usize = 14;

/// Wraps the raw connection under the WebSocket codec and reads each frame's header first.
///
/// - A text message over `max_text` never reaches the codec, which would reserve its whole
///   length. Up to `max_frame` it is counted in [`Skipped`] as soon as its header is read, so the
///   connection answers it with an error frame at once, and its bytes are dropped as they come.
///   One larger, or a fragment that takes a passed text message over the limit, fails the read.
/// - A binary frame over `max_frame` fails the read. A shorter one longer than `piece` reaches
///   the codec as fragments of `piece` bytes (their masks turned to match), which the codec puts
///   together into one message; so its read buffer stays small after the upload is gone.
pub struct FrameGuard<T> {
    io: T,
    limits: GuardLimits,
    skipped: Arc<Skipped>,
    /// Bytes read from `io` but not handed on yet: a header being decided, and what followed it.
    pending: [u8; MAX_HEADER],
    start: usize,
    end: usize,
    /// The header being handed on: the client's, or one written for a fragment.
    out: [u8; MAX_HEADER],
    phase: Phase,
    text: Text,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Collecting the next frame's header.
    Header,
    /// Handing on `out[at..len]`, then `payload` bytes, then the rest of a cut frame.
    Emit {
        at: usize,
        len: usize,
        payload: u64,
        rest: Option<Cut>,
    },
    /// Handing on `left` payload bytes, then the rest of a cut frame.
    Pass {
        left: u64,
        rest: Option<Cut>,
    },
    /// Dropping `left` payload bytes of a skipped frame.
    Drop {
        left: u64,
    },
    Failed {
        limit: u64,
    },
}

/// What is left of a binary frame being handed on in fragments.
#[derive(Debug, Clone, Copy)]
struct Cut {
    left: u64,
    /// Payload bytes handed on so far: where the mask stands for the next fragment.
    offset: u64,
    key: [u8; 4],
    /// Whether the client's frame ended its message; only the last fragment says so.
    fin: bool,
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
#[derive(Debug, Clone, Copy)]
struct Header {
    fin: bool,
    /// The three reserved bits, as they stand in the first byte.
    rsv: u8,
    opcode: u8,
    key: Option<[u8; 4]>,
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
    let masked = b1 & 0x80 != 0;
    let len = 2 + extended + if masked { 4 } else { 0 };
    let header = bytes.get(..len)?;
    let payload = match extended {
        0 => u64::from(b1 & 0x7F),
        _ => header[2..2 + extended].iter().fold(0u64, |n, b| (n << 8) | u64::from(*b)),
    };
    let key = masked.then(|| [header[len - 4], header[len - 3], header[len - 2], header[len - 1]]);
    Some(Header { fin: b0 & 0x80 != 0, rsv: b0 & 0x70, opcode: b0 & 0x0F, key, payload, len })
}

/// A masked frame header with the shortest length encoding, and its length.
fn write_header(out: &mut [u8; MAX_HEADER], fin: bool, first_byte: u8, payload: u64, key: [u8; 4]) -> usize {
    out[0] = if fin { 0x80 | first_byte } else { first_byte };
    let at = match payload {
        0..=125 => {
            out[1] = 0x80 | payload as u8;
            2
        }
        126..=0xFFFF => {
            out[1] = 0x80 | 126;
            out[2..4].copy_from_slice(&(payload as u16).to_be_bytes());
            4
        }
        _ => {
            out[1] = 0x80 | 127;
            out[2..10].copy_from_slice(&payload.to_be_bytes());
            10
        }
    };
    out[at..at + 4].copy_from_slice(&key);
    at + 4
}

impl<T> FrameGuard<T> {
    pub fn new(io: T, limits: GuardLimits, skipped: Arc<Skipped>) -> Self {
        Self {
            io,
            limits,
            skipped,
            pending: [0; MAX_HEADER],
            start: 0,
            end: 0,
            out: [0; MAX_HEADER],
            phase: Phase::Header,
            text: Text::None,
        }
    }

    /// Decides what to do with the frame whose header is complete at the front of `pending`,
    /// and takes the header out of `pending`.
    fn decide(&mut self, header: Header) -> Phase {
        let Header { fin, opcode, payload, len, .. } = header;
        self.out[..len].copy_from_slice(&self.pending[self.start..self.start + len]);
        self.start += len;
        let pass = Phase::Emit { at: 0, len, payload, rest: None };
        let too_large = Phase::Failed { limit: self.limits.max_text };
        let skip = |guard: &mut Self, so_far: u64| {
            guard.text = if fin { Text::None } else { Text::Skipping(so_far) };
            Phase::Drop { left: payload }
        };
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
            (BINARY | CONTINUATION, _) if payload > self.limits.max_frame => {
                Phase::Failed { limit: self.limits.max_frame }
            }
            (BINARY | CONTINUATION, _) if payload > self.limits.piece => match header.key {
                Some(key) => self.fragment(Cut { left: payload, offset: 0, key, fin }, header.rsv | opcode),
                // The codec refuses an unmasked client frame; it is not worth cutting.
                None => pass,
            },
            // Short binary frames and control frames are the codec's to check.
            _ => pass,
        }
    }

    /// Writes the header of the next fragment of a cut frame; the first keeps the frame's own
    /// first byte, the others are continuations.
    fn fragment(&mut self, cut: Cut, first_byte: u8) -> Phase {
        let n = cut.left.min(self.limits.piece);
        let last = n == cut.left;
        let mut key = cut.key;
        // Byte `i` of the payload is masked with `key[i % 4]`: a fragment starting at `offset`
        // starts its mask there.
        key.rotate_left((cut.offset % 4) as usize);
        let len = write_header(&mut self.out, last && cut.fin, first_byte, n, key);
        let rest = (!last).then_some(Cut { left: cut.left - n, offset: cut.offset + n, ..cut });
        Phase::Emit { at: 0, len, payload: n, rest }
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
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, TooLarge { limit })));
                }
                Phase::Header => {
                    if let Some(header) = parse_header(&this.pending[this.start..this.end]) {
                        this.phase = this.decide(header);
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
                Phase::Emit { at, len, payload, rest } => {
                    let n = (len - at).min(buf.remaining());
                    buf.put_slice(&this.out[at..at + n]);
                    this.phase = if at + n == len {
                        Phase::Pass { left: payload, rest }
                    } else {
                        Phase::Emit { at: at + n, len, payload, rest }
                    };
                    return Poll::Ready(Ok(()));
                }
                Phase::Pass { left: 0, rest: Some(cut) } => this.phase = this.fragment(cut, CONTINUATION),
                Phase::Pass { left: 0, rest: None } => this.phase = Phase::Header,
                Phase::Pass { left, rest } => {
                    let wanted = usize::try_from(left).unwrap_or(usize::MAX).min(buf.remaining());
                    let n = if this.start < this.end {
                        let n = wanted.min(this.end - this.start);
                        buf.put_slice(&this.pending[this.start..this.start + n]);
                        this.start += n;
                        n
                    } else {
                        let mut limited = ReadBuf::new(buf.initialize_unfilled_to(wanted));
                        ready!(Pin::new(&mut this.io).poll_read(cx, &mut limited))?;
                        let n = limited.filled().len();
                        buf.advance(n);
                        n
                    };
                    this.phase = Phase::Pass { left: left - n as u64, rest };
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
                        let mut scratch = ReadBuf::new(buf.initialize_unfilled_to(wanted.min(buf.remaining())));
                        ready!(Pin::new(&mut this.io).poll_read(cx, &mut scratch))?;
                        let n = scratch.filled().len();
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
    use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
    use tokio_tungstenite::tungstenite::{Message, WebSocket};

    use super::*;

    /// A piece that is not a multiple of 4, so fragments start their masks mid-key.
    const LIMITS: GuardLimits = GuardLimits { max_text: 10, max_frame: 1_000, piece: 63 };
    const PING: u8 = 0x9;

    /// A masked client frame, as a browser sends it.
    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = [0u8; MAX_HEADER];
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let len = write_header(&mut out, fin, opcode, payload.len() as u64, mask);
        let mut frame = out[..len].to_vec();
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        frame
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

    /// A connection that reads `bytes` and throws away what is written to it (pongs).
    struct Wire(io::Cursor<Vec<u8>>);

    impl io::Read for Wire {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            io::Read::read(&mut self.0, buf)
        }
    }

    impl io::Write for Wire {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// The messages the codec makes of `bytes`, with the socket's limits scaled down to `LIMITS`.
    fn codec_messages(bytes: Vec<u8>) -> Vec<Message> {
        let config = WebSocketConfig::default()
            .max_frame_size(Some(LIMITS.piece as usize))
            .max_message_size(Some(LIMITS.max_frame as usize));
        let mut codec = WebSocket::from_raw_socket(Wire(io::Cursor::new(bytes)), Role::Server, Some(config));
        std::iter::from_fn(|| codec.read().ok()).filter(|m| !m.is_ping()).collect()
    }

    const SHAPES: [(usize, usize); 5] = [(1, 1), (1, 4096), (3, 5), (4096, 2), (4096, 4096)];

    #[tokio::test]
    async fn frames_within_the_limits_pass_unchanged_however_they_are_cut() {
        let input = [
            frame(true, TEXT, b"hello"),
            frame(true, PING, b""),
            frame(false, TEXT, b"split "),
            frame(true, CONTINUATION, b"text"),
            frame(true, BINARY, &[7; 63]),
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
    async fn a_long_binary_frame_reaches_the_codec_in_pieces_that_it_puts_back_together() {
        let payload: Vec<u8> = (0..=255u8).cycle().take(999).collect();
        let input = [frame(true, TEXT, b"before"), frame(true, BINARY, &payload), frame(true, TEXT, b"after")].concat();

        for (step, read) in SHAPES {
            let (out, _) = through_guard(&input, step, read).await;
            let out = out.expect("readable");

            let expected = [Message::text("before"), Message::binary(payload.clone()), Message::text("after")];
            assert_eq!(codec_messages(out), expected, "fed {step}, read {read}");
        }
    }

    #[tokio::test]
    async fn the_long_fragments_of_a_binary_message_are_cut_too() {
        let (a, b): (Vec<u8>, Vec<u8>) = ((0..150).collect(), (150..=255).collect());
        let input = [frame(false, BINARY, &a), frame(true, PING, b"hi"), frame(true, CONTINUATION, &b)].concat();

        let (out, _) = through_guard(&input, 10, 4096).await;

        assert_eq!(codec_messages(out.expect("readable")), [Message::binary([a, b].concat())]);
    }

    #[tokio::test]
    async fn a_binary_frame_over_the_frame_limit_fails_the_read_from_its_header() {
        let mut input = frame(true, BINARY, &[1; 1_001]);
        input.truncate(8);

        let (out, _) = through_guard(&input, 4096, 4096).await;

        assert!(out.is_err_and(|e| is_refusal(&e)));
    }

    #[tokio::test]
    async fn a_text_frame_over_the_frame_limit_fails_the_read() {
        let input = frame(true, TEXT, &[b'x'; 2_000]);

        let (out, _) = through_guard(&input, 4096, 4096).await;

        assert!(out.is_err_and(|e| is_refusal(&e)));
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
        let mut out = [0u8; MAX_HEADER];
        let len = write_header(&mut out, true, TEXT, 1 << 62, [0; 4]);

        let (read, _) = through_guard(&out[..len], 3, 4096).await;

        assert!(read.is_err_and(|e| is_refusal(&e)));
    }
}
