//! A socket's writer: every frame queued for it goes out in one batch, with one write to the connection per flush.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use application::metrics::Metrics;
use bytes::Bytes;
use domain::UserId;
use futures::{Sink, SinkExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::hub::close;
use super::outbox::{Closing, Outbox};

/// Most bytes gathered before they are written out even without a flush, so a large batch
/// never doubles its size in memory.
const MAX_GATHER: usize = 256 << 10;
/// A buffer that grew past this for a burst is freed once written, so an idle socket keeps none.
const KEEP_CAPACITY: usize = 16 << 10;

/// Gathers what the codec writes, frame by frame, and hands it to the connection in one write
/// when the codec flushes: one syscall for a whole batch instead of one per frame.
pub struct Gather<T> {
    io: T,
    buf: Vec<u8>,
    /// How much of `buf` the connection has taken.
    sent: usize,
}

impl<T> Gather<T> {
    pub fn new(io: T) -> Self {
        Self { io, buf: Vec::new(), sent: 0 }
    }
}

impl<T: AsyncWrite + Unpin> Gather<T> {
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.buf.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.buf[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.sent = 0;
        if self.buf.capacity() > KEEP_CAPACITY {
            self.buf = Vec::new();
        } else {
            self.buf.clear();
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Gather<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Gather<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        if self.buf.len() >= MAX_GATHER {
            ready!(self.poll_drain(cx))?;
        }
        self.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// What the writer needs to know of its socket.
pub struct Writer {
    pub outbox: Arc<Outbox>,
    pub closing: watch::Receiver<Option<Closing>>,
    pub user: UserId,
    pub ping_interval: Duration,
    /// A write that cannot finish this long means the peer stopped reading.
    pub write_timeout: Duration,
    /// Frames delivered and the queue each batch drained.
    pub metrics: Arc<Metrics>,
}

impl Writer {
    /// Writes the outbox's frames, a batch at a time, and pings, until the socket is asked to
    /// close; then the close frame, if the server ends it. Returns the sink, so the connection
    /// stays open while the reader waits for the peer's answer to the close.
    pub async fn run<S>(mut self, mut sink: S) -> S
    where
        S: Sink<Message, Error = WsError> + Unpin,
    {
        let mut ping = tokio::time::interval(self.ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.tick().await;
        loop {
            if self.outbox.is_closing() {
                break;
            }
            let (frames, bytes) = self.outbox.take();
            if !frames.is_empty() {
                let count = frames.len();
                let batch = async {
                    for frame in frames {
                        sink.feed(Message::Text(frame)).await?;
                    }
                    sink.flush().await
                };
                match tokio::time::timeout(self.write_timeout, batch).await {
                    Ok(Ok(())) => {
                        self.outbox.written(bytes);
                        self.metrics.frames_written(count as u64, bytes);
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "socket write failed");
                        self.outbox.close(Closing::Gone);
                    }
                    Err(_) => self.stalled(count),
                }
                continue;
            }
            tokio::select! {
                biased;
                changed = self.closing.changed() => if changed.is_err() { break },
                () = self.outbox.wait() => {}
                _ = ping.tick() => match tokio::time::timeout(self.write_timeout, sink.send(Message::Ping(Bytes::new()))).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => { self.outbox.close(Closing::Gone); }
                    Err(_) => self.stalled(0),
                },
            }
        }
        let closing = *self.closing.borrow();
        // Bounded like any write: a peer that never reads again cannot hold the socket.
        let farewell = async {
            match closing {
                Some(Closing::Frame(code, reason)) => {
                    let frame = CloseFrame { code: CloseCode::from(code), reason: reason.into() };
                    sink.send(Message::Close(Some(frame))).await
                }
                // Flushes the codec's answer to the peer's own close, if it sent one.
                Some(Closing::Gone) | None => sink.close().await,
            }
        };
        let _ = tokio::time::timeout(self.write_timeout, farewell).await;
        sink
    }

    /// A write waited the whole write timeout: the peer stopped reading.
    fn stalled(&self, frames: usize) {
        let queued_bytes = self.outbox.bytes();
        if self.outbox.close(Closing::Frame(close::TRY_AGAIN_LATER, "too_slow")) {
            tracing::info!(
                user = %self.user,
                queued_bytes,
                frames,
                "closing a socket with 1013 too_slow: a write waited {:?}",
                self.write_timeout
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::protocol::Role;
    use tokio_tungstenite::WebSocketStream;

    use super::*;

    /// One end of an in-memory connection that counts the writes made to it.
    struct Counted {
        io: tokio::io::DuplexStream,
        writes: Arc<AtomicUsize>,
    }

    impl AsyncRead for Counted {
        fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.io).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Counted {
        fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
            self.writes.fetch_add(1, Ordering::Relaxed);
            Pin::new(&mut self.io).poll_write(cx, data)
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.io).poll_flush(cx)
        }

        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.io).poll_shutdown(cx)
        }
    }

    struct Pair {
        server: WebSocketStream<Gather<Counted>>,
        client: WebSocketStream<tokio::io::DuplexStream>,
        writes: Arc<AtomicUsize>,
    }

    async fn pair(buffer: usize) -> Pair {
        let (a, b) = tokio::io::duplex(buffer);
        let writes = Arc::new(AtomicUsize::new(0));
        let io = Gather::new(Counted { io: a, writes: writes.clone() });
        // The production codec settings: it hands every frame on at once, and only `Gather` batches.
        let config = super::super::codec_config(&super::super::WsConfig::default());
        let server = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
        let client = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
        Pair { server, client, writes }
    }

    fn writer(outbox: &Arc<Outbox>, write_timeout: Duration) -> Writer {
        Writer {
            outbox: outbox.clone(),
            closing: outbox.closing(),
            user: UserId::from_uuid(uuid::Uuid::from_u128(1)),
            ping_interval: Duration::from_secs(3600),
            write_timeout,
            metrics: Arc::new(Metrics::default()),
        }
    }

    async fn texts(client: &mut WebSocketStream<tokio::io::DuplexStream>, n: usize) -> Vec<String> {
        let mut texts = Vec::new();
        while texts.len() < n {
            match client.next().await.expect("a frame").expect("read") {
                Message::Text(text) => texts.push(text.to_string()),
                other => panic!("unexpected {other:?}"),
            }
        }
        texts
    }

    #[tokio::test]
    async fn every_frame_already_queued_goes_out_in_one_write() {
        // Arrange: 50 frames wait before the writer starts.
        let Pair { server, mut client, writes } = pair(1 << 20).await;
        let outbox = Arc::new(Outbox::new(1 << 20));
        for i in 0..50 {
            outbox.push(format!("frame {i}").into());
        }

        // Act
        let task = tokio::spawn(writer(&outbox, Duration::from_secs(5)).run(server));
        let received = texts(&mut client, 50).await;

        // Assert: all of them, in order, in a single write to the connection.
        assert_eq!(received, (0..50).map(|i| format!("frame {i}")).collect::<Vec<_>>());
        assert_eq!(writes.load(Ordering::Relaxed), 1);
        assert_eq!(outbox.bytes(), 0, "flushed bytes leave the bound");
        outbox.close(Closing::Gone);
        task.await.expect("writer ends");
    }

    #[tokio::test]
    async fn frames_queued_while_a_batch_is_written_go_out_in_the_next() {
        let Pair { server, mut client, writes } = pair(1 << 20).await;
        let outbox = Arc::new(Outbox::new(1 << 20));
        let task = tokio::spawn(writer(&outbox, Duration::from_secs(5)).run(server));
        outbox.push("first".into());
        texts(&mut client, 1).await;

        for i in 0..20 {
            outbox.push(format!("then {i}").into());
        }
        let received = texts(&mut client, 20).await;

        assert_eq!(received.len(), 20);
        assert!(writes.load(Ordering::Relaxed) <= 3, "{} writes for 21 frames", writes.load(Ordering::Relaxed));
        outbox.close(Closing::Gone);
        task.await.expect("writer ends");
    }

    #[tokio::test]
    async fn a_socket_asked_to_close_sends_its_close_frame_instead_of_what_was_queued() {
        let Pair { server, mut client, .. } = pair(1 << 20).await;
        let outbox = Arc::new(Outbox::new(1 << 20));
        outbox.close(Closing::Frame(close::TRY_AGAIN_LATER, "too_slow"));
        outbox.push("never sent".into());

        let _sink = writer(&outbox, Duration::from_secs(5)).run(server).await;

        match client.next().await.expect("a frame").expect("read") {
            Message::Close(Some(frame)) => {
                assert_eq!((u16::from(frame.code), frame.reason.as_str()), (1013, "too_slow"))
            }
            other => panic!("expected the close frame, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_write_that_waits_past_the_timeout_closes_the_socket_with_1013_too_slow() {
        // Arrange: a connection that holds 1 KiB, and a peer that never reads.
        let Pair { server, client: _client, .. } = pair(1024).await;
        let outbox = Arc::new(Outbox::new(1 << 20));
        outbox.push("x".repeat(64 << 10).into());

        // Act
        let _sink = writer(&outbox, Duration::from_millis(100)).run(server).await;

        // Assert
        assert_eq!(*outbox.closing().borrow(), Some(Closing::Frame(close::TRY_AGAIN_LATER, "too_slow")));
    }
}
