//! The bare relay: the floor of what the WebSocket layer costs on this machine, for chat-bench to
//! measure next to the chat server. tokio-tungstenite accept plus one tokio broadcast channel; no
//! auth, no storage, no protocol: every text frame any socket sends goes to every socket (the
//! sender's too). Sockets use the chat server's settings: a 4 KiB read buffer and a write per
//! frame.
//!
//! ```text
//! cargo run --release -p chat-bench --example relay -- [--addr 127.0.0.1:18091] [--nagle]
//! ```
//!
//! Sockets set `TCP_NODELAY`; `--nagle` leaves Nagle's algorithm on, as a server that never sets
//! the option does, to measure what it costs.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// Frames a socket may fall behind before it misses some (the chat server closes a socket 256
/// frames behind; a broadcast channel can only skip).
const BACKLOG: usize = 4096;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut addr: SocketAddr = "127.0.0.1:18091".parse()?;
    let mut nodelay = true;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--addr" => {
                let value = args.next().ok_or_else(|| anyhow::anyhow!("--addr: missing value"))?;
                addr = value.parse().map_err(|e| anyhow::anyhow!("--addr {value}: {e}"))?;
            }
            "--nagle" => nodelay = false,
            other => anyhow::bail!("unknown argument {other}; usage: relay [--addr 127.0.0.1:18091] [--nagle]"),
        }
    }
    let listener = TcpListener::bind(addr).await?;
    println!("relay listening on ws://{} (TCP_NODELAY {})", listener.local_addr()?, if nodelay { "on" } else { "off" });
    let (tx, _) = broadcast::channel::<Utf8Bytes>(BACKLOG);
    let skipped = Arc::new(AtomicU64::new(0));
    let mut report = tokio::time::interval(Duration::from_secs(10));
    let mut reported = 0;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(serve(stream, nodelay, tx.clone(), skipped.clone()));
                }
                // Out of file descriptors, typically: wait and keep serving the sockets we have.
                Err(e) => {
                    eprintln!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = report.tick() => {
                let now = skipped.load(Ordering::Relaxed);
                if now != reported {
                    eprintln!("frames skipped by lagging sockets so far: {now}");
                    reported = now;
                }
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    eprintln!("frames skipped by lagging sockets: {}", skipped.load(Ordering::Relaxed));
    Ok(())
}

async fn serve(stream: TcpStream, nodelay: bool, tx: broadcast::Sender<Utf8Bytes>, skipped: Arc<AtomicU64>) {
    let _ = stream.set_nodelay(nodelay);
    let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
    let Ok(ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await else { return };
    let (mut sink, mut source) = ws.split();
    let mut rx = tx.subscribe();
    loop {
        tokio::select! {
            incoming = source.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    let _ = tx.send(text);
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                // Pings are answered by tungstenite itself.
                Some(Ok(_)) => {}
            },
            out = rx.recv() => match out {
                Ok(text) => {
                    if sink.send(Message::Text(text)).await.is_err() {
                        break;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    skipped.fetch_add(n, Ordering::Relaxed);
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
        }
    }
}
