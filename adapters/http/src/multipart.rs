//! Bounded multipart reading for `POST /files`: the whole body, each part's headers, the room id.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use memchr::memmem::Finder;
use parking_lot::Mutex;

/// Most bytes a `room_id` part may carry; a room id has 36.
pub const ROOM_ID_MAX_BYTES: u64 = 64;
/// Most bytes of one part's headers, from its boundary to the blank line (and of the preamble).
pub const PART_HEADERS_MAX_BYTES: u64 = 8 << 10;
/// Room for everything around the file in a form: boundaries, part headers, the room id.
pub const FORM_OVERHEAD_BYTES: u64 = 16 << 10;

/// Why a form was refused, in the words the client gets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    #[error("the request body is larger than {limit} bytes")]
    BodyTooLarge { limit: u64 },
    #[error("multipart: the headers of a part are larger than {limit} bytes")]
    PartHeadersTooLarge { limit: u64 },
    #[error("room_id: at most {limit} bytes")]
    RoomIdTooLong { limit: u64 },
    #[error("room_id: not a room id")]
    InvalidRoomId,
    #[error("room_id: required before the file field")]
    RoomIdMissing,
    #[error("file: a multipart field named file is required")]
    FileMissing,
    #[error("multipart: {0}")]
    Malformed(String),
}

/// The first refusal of a guarded body. The parser wraps the guard's error in its own, and the
/// upload turns it into a storage failure; the handler reads the real reason here instead.
#[derive(Debug, Clone, Default)]
pub struct Refusal(Arc<Mutex<Option<FormError>>>);

impl Refusal {
    pub fn get(&self) -> Option<FormError> {
        self.0.lock().clone()
    }

    fn set(&self, error: FormError) -> FormError {
        self.0.lock().get_or_insert(error).clone()
    }
}

/// A request body that fails, without buffering anything, once it passes `max_body` bytes or
/// once a part's headers pass `max_headers`. The multipart parser buffers a part's headers until
/// their blank line, and the preamble until the first boundary, so it must never see more.
pub struct FormGuard<S> {
    inner: S,
    max_body: u64,
    seen: u64,
    scanner: PartScanner,
    refusal: Refusal,
    failed: bool,
}

impl<S> FormGuard<S> {
    pub fn new(inner: S, boundary: &str, max_body: u64, max_headers: u64, refusal: Refusal) -> Self {
        Self { inner, max_body, seen: 0, scanner: PartScanner::new(boundary, max_headers), refusal, failed: false }
    }
}

impl<S> Stream for FormGuard<S>
where
    S: Stream<Item = std::io::Result<Bytes>> + Unpin,
{
    type Item = Result<Bytes, FormError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.failed {
            return Poll::Ready(None);
        }
        let chunk = match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => chunk,
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(FormError::Malformed(e.to_string())))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => return Poll::Pending,
        };
        self.seen = self.seen.saturating_add(chunk.len() as u64);
        let verdict = if self.seen > self.max_body {
            Err(FormError::BodyTooLarge { limit: self.max_body })
        } else {
            self.scanner.feed(&chunk)
        };
        match verdict {
            Ok(()) => Poll::Ready(Some(Ok(chunk))),
            Err(error) => {
                self.failed = true;
                Poll::Ready(Some(Err(self.refusal.set(error))))
            }
        }
    }
}

/// Follows the multipart framing just far enough to measure each part's headers: from a
/// boundary to the blank line after its headers, the way the parser reads them.
struct PartScanner {
    state: Scan,
    /// `--boundary`: the preamble ends at the first one.
    first: Needle,
    /// `\r\n--boundary`: a part's data ends at the next one.
    next: Needle,
    /// The line break that ends a boundary's line.
    line_end: Needle,
    /// The blank line that ends a part's headers.
    headers_end: Needle,
    /// Bytes since the preamble or the current part's boundary began.
    header_bytes: u64,
    max_headers: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    Preamble,
    BoundaryLine,
    Headers,
    Data,
}

impl PartScanner {
    fn new(boundary: &str, max_headers: u64) -> Self {
        Self {
            state: Scan::Preamble,
            first: Needle::new(format!("--{boundary}").into_bytes()),
            next: Needle::new(format!("\r\n--{boundary}").into_bytes()),
            line_end: Needle::new(b"\r\n".to_vec()),
            headers_end: Needle::new(b"\r\n\r\n".to_vec()),
            header_bytes: 0,
            max_headers,
        }
    }

    fn feed(&mut self, mut chunk: &[u8]) -> Result<(), FormError> {
        while !chunk.is_empty() {
            let needle = match self.state {
                Scan::Preamble => &mut self.first,
                Scan::BoundaryLine => &mut self.line_end,
                Scan::Headers => &mut self.headers_end,
                Scan::Data => &mut self.next,
            };
            let found = needle.find_end(chunk);
            if self.state != Scan::Data {
                let used = found.unwrap_or(chunk.len()) as u64;
                self.header_bytes = self.header_bytes.saturating_add(used);
                if self.header_bytes > self.max_headers {
                    return Err(FormError::PartHeadersTooLarge { limit: self.max_headers });
                }
            }
            let Some(end) = found else { return Ok(()) };
            chunk = &chunk[end..];
            self.state = match self.state {
                Scan::Preamble | Scan::Data => {
                    self.header_bytes = 0;
                    Scan::BoundaryLine
                }
                Scan::BoundaryLine => Scan::Headers,
                Scan::Headers => Scan::Data,
            };
            match self.state {
                Scan::Preamble => self.first.reset(),
                Scan::BoundaryLine => self.line_end.reset(),
                Scan::Headers => self.headers_end.reset(),
                Scan::Data => self.next.reset(),
            }
        }
        Ok(())
    }
}

/// A pattern searched for in a stream that arrives in pieces, so a match may span two of them.
struct Needle {
    finder: Finder<'static>,
    /// The last `len - 1` bytes searched, where a match cut by the piece boundary begins.
    tail: Vec<u8>,
}

impl Needle {
    fn new(pattern: Vec<u8>) -> Self {
        Self { finder: Finder::new(&pattern).into_owned(), tail: Vec::new() }
    }

    fn reset(&mut self) {
        self.tail.clear();
    }

    /// Where in `chunk` the first match ends, counting what earlier chunks left in the tail.
    fn find_end(&mut self, chunk: &[u8]) -> Option<usize> {
        let n = self.finder.needle().len();
        let carried = self.tail.len();
        if carried > 0 {
            // Only a match that starts in the tail can be found here: one within the head of
            // `chunk` would need `n` bytes of it, and the head has `n - 1`.
            let mut window = self.tail.clone();
            window.extend_from_slice(&chunk[..chunk.len().min(n - 1)]);
            if let Some(start) = self.finder.find(&window) {
                self.tail.clear();
                return Some(start + n - carried);
            }
        }
        if let Some(start) = self.finder.find(chunk) {
            self.tail.clear();
            return Some(start + n);
        }
        let keep = n - 1;
        if chunk.len() >= keep {
            self.tail.clear();
            self.tail.extend_from_slice(&chunk[chunk.len() - keep..]);
        } else {
            self.tail.extend_from_slice(chunk);
            let excess = self.tail.len().saturating_sub(keep);
            self.tail.drain(..excess);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    const BOUNDARY: &str = "XyZ";

    fn form(parts: &[(&str, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (headers, data) in parts {
            body.extend_from_slice(format!("--{BOUNDARY}\r\n{headers}\r\n\r\n").as_bytes());
            body.extend_from_slice(data);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
        body
    }

    /// Feeds `body` to a scanner in pieces of `piece` bytes.
    fn scan(body: &[u8], piece: usize, max_headers: u64) -> Result<(), FormError> {
        let mut scanner = PartScanner::new(BOUNDARY, max_headers);
        body.chunks(piece).try_for_each(|chunk| scanner.feed(chunk))
    }

    fn headers_of(len: usize) -> String {
        format!("Content-Disposition: form-data; name=\"file\"; filename=\"{}\"", "a".repeat(len))
    }

    #[test]
    fn a_form_with_short_headers_passes_in_pieces_of_any_size() {
        let body = form(&[("Content-Disposition: form-data; name=\"room_id\"", b"r1"), (&headers_of(10), &[7; 5000])]);

        for piece in [1, 2, 3, 7, 64, 4096, body.len()] {
            assert_eq!(scan(&body, piece, 200), Ok(()), "pieces of {piece}");
        }
    }

    #[test]
    fn headers_over_the_limit_are_refused_in_pieces_of_any_size() {
        let body = form(&[(&headers_of(300), b"data")]);

        for piece in [1, 2, 5, 64, body.len()] {
            assert_eq!(
                scan(&body, piece, 200),
                Err(FormError::PartHeadersTooLarge { limit: 200 }),
                "pieces of {piece}"
            );
        }
    }

    #[test]
    fn headers_that_never_end_are_refused_once_past_the_limit() {
        let mut scanner = PartScanner::new(BOUNDARY, 100);
        scanner.feed(format!("--{BOUNDARY}\r\nX-Long: ").as_bytes()).expect("still short");

        let refused = (0..10).try_for_each(|_| scanner.feed(&[b'a'; 50]));

        assert_eq!(refused, Err(FormError::PartHeadersTooLarge { limit: 100 }));
    }

    #[test]
    fn a_preamble_that_never_reaches_a_boundary_is_refused() {
        let refused = scan(&[b'x'; 1000], 64, 100);

        assert_eq!(refused, Err(FormError::PartHeadersTooLarge { limit: 100 }));
    }

    #[test]
    fn file_data_that_looks_like_headers_is_not_measured() {
        // No blank line and no boundary in a large part: it is data, not headers.
        let body = form(&[(&headers_of(10), &b"Header: value\r\n".repeat(1000))]);

        assert_eq!(scan(&body, 100, 200), Ok(()));
    }

    #[test]
    fn every_part_gets_its_own_header_budget() {
        let parts: Vec<(String, &[u8])> = (0..20).map(|_| (headers_of(100), b"x" as &[u8])).collect();
        let parts: Vec<(&str, &[u8])> = parts.iter().map(|(h, d)| (h.as_str(), *d)).collect();

        assert_eq!(scan(&form(&parts), 33, 200), Ok(()));
    }

    #[tokio::test]
    async fn a_guarded_body_stops_after_its_limit_and_remembers_why() {
        let refusal = Refusal::default();
        let body = form(&[(&headers_of(10), &[1; 1000])]);
        let chunks: Vec<std::io::Result<Bytes>> = body.chunks(100).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        let guard = FormGuard::new(futures::stream::iter(chunks), BOUNDARY, 500, 200, refusal.clone());

        let read: Vec<Result<Bytes, FormError>> = guard.collect().await;

        assert_eq!(read.iter().filter(|r| r.is_ok()).count(), 5, "500 bytes pass, the sixth hundred does not");
        assert_eq!(read.last(), Some(&Err(FormError::BodyTooLarge { limit: 500 })));
        assert_eq!(refusal.get(), Some(FormError::BodyTooLarge { limit: 500 }));
    }
}
