//! Unit tests of the files use case: sniffed, limited and quota-checked uploads, and access-checked downloads.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use domain::{FileId, FileKind, FileMeta, FileName, RetentionPolicy, RoomId};

use super::fixtures::{
    alice, byte_stream, days, fixed_clock, generated_id, minutes, now, read_all, recorder, room_id, sequential_ids,
    Recorded,
};
use crate::files::{DownloadError, FileLimits, Files, Upload, UploadError};
use crate::ports::{
    MockClock, MockFileCatalog, MockFileStore, MockIdGenerator, MockRoomRepository, PutFileError, QuotaHold, StoredFile,
};

const LIMITS: FileLimits = FileLimits {
    image_max: 1_000,
    file_max: 2_000,
    user_quota: 10_000,
    quota_hold: Duration::from_secs(15 * 60),
    unattached: Duration::from_secs(60 * 60),
};

/// Every port of `Files` as a mock without expectations: any call a test did not expect fails it.
#[derive(Default)]
struct Ports {
    store: MockFileStore,
    catalog: MockFileCatalog,
    rooms: MockRoomRepository,
    clock: MockClock,
    ids: MockIdGenerator,
}

impl Ports {
    fn files(self) -> Files {
        Files::new(
            Arc::new(self.store),
            Arc::new(self.catalog),
            Arc::new(self.rooms),
            Arc::new(self.clock),
            Arc::new(self.ids),
            LIMITS,
            RetentionPolicy::default(),
        )
    }

    fn expect_membership(&mut self, member: bool) {
        self.rooms
            .expect_is_member()
            .withf(|room, user| *room == general() && *user == alice().id)
            .times(1)
            .returning(move |_, _| Ok(member));
    }

    /// Expects one hold of `wanted` bytes for the new file, from `now()` for 15 minutes, granting `granted`.
    fn expect_reserve(&mut self, wanted: u64, granted: u64) {
        self.catalog
            .expect_reserve()
            .withf(move |hold, w, quota, at| {
                *hold == new_hold(now()) && *w == wanted && *quota == LIMITS.user_quota && *at == now()
            })
            .times(1)
            .returning(move |_, _, _, _| Ok(granted));
    }

    /// Expects the new file's hold to be let go, once.
    fn expect_release(&mut self) {
        self.catalog.expect_release().withf(|hold| hold.id == new_file_id()).times(1).returning(|_| Ok(()));
    }

    /// Expects one write under the first generated id, allowed `max` bytes, and keeps what was written.
    /// Like a real store, it refuses a stream longer than `max`.
    fn expect_put(&mut self, max: u64) -> Recorded<Vec<u8>> {
        self.ids = sequential_ids(1);
        let written = recorder();
        let record = Arc::clone(&written);
        self.store
            .expect_put()
            .withf(move |id, _, max_bytes| *id == new_file_id() && *max_bytes == max)
            .times(1)
            .returning(move |_, data, max_bytes| {
                let bytes = read_all(data).map_err(anyhow::Error::from)?;
                let size = bytes.len() as u64;
                if size > max_bytes {
                    return Err(PutFileError::TooLarge { limit: max_bytes });
                }
                record.lock().expect("not poisoned").push(bytes);
                Ok(size)
            });
        written
    }
}

fn general() -> RoomId {
    room_id(1)
}

fn new_file_id() -> FileId {
    FileId::from_uuid(generated_id(1))
}

/// The hold of the new file, taken at `from`.
fn new_hold(from: domain::Timestamp) -> QuotaHold {
    QuotaHold { id: new_file_id(), owner: alice().id, expires_at: from + minutes(15) }
}

/// A clock read first at `now()` and then, at the end of the upload, `later`.
fn clock_ending_at(later: domain::Timestamp) -> MockClock {
    let reads = AtomicUsize::new(0);
    let mut clock = MockClock::new();
    clock
        .expect_now()
        .times(2)
        .returning(move || if reads.fetch_add(1, Ordering::Relaxed) == 0 { now() } else { later });
    clock
}

fn png(len: usize) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.resize(len, 7);
    bytes
}

fn html(len: usize) -> Vec<u8> {
    let mut bytes = b"<html><script>alert(document.cookie)</script>".to_vec();
    bytes.resize(len, b' ');
    bytes
}

/// The bytes in chunks of 5, 15 and the rest, so the sniffer has to read more than one chunk.
fn chunked(bytes: &[u8]) -> Vec<Vec<u8>> {
    vec![bytes[..5].to_vec(), bytes[5..20].to_vec(), bytes[20..].to_vec()]
}

fn stored_file(expires_at: domain::Timestamp) -> StoredFile {
    StoredFile {
        meta: FileMeta {
            id: new_file_id(),
            name: FileName::sanitize("report.pdf"),
            size: 5,
            content_type: "application/octet-stream".into(),
            kind: FileKind::File,
            expires_at,
        },
        room_id: general(),
        owner: alice().id,
        created_at: now() - days(1),
        purged_at: None,
    }
}

// --- upload ---

#[tokio::test]
async fn a_png_is_stored_as_an_image_whatever_its_name_says() {
    let mut ports = Ports { clock: fixed_clock(2), ..Ports::default() };
    ports.expect_membership(true);
    ports.expect_reserve(LIMITS.image_max, LIMITS.image_max);
    let written = ports.expect_put(LIMITS.image_max);
    let expected = StoredFile {
        meta: FileMeta {
            id: new_file_id(),
            name: FileName::sanitize("notes.txt"),
            size: 300,
            content_type: "image/png".into(),
            kind: FileKind::Image,
            expires_at: now() + days(14),
        },
        room_id: general(),
        owner: alice().id,
        created_at: now(),
        purged_at: None,
    };
    let catalogued = expected.clone();
    ports.catalog.expect_insert().withf(move |file| *file == catalogued).times(1).returning(|_| Ok(()));
    ports.expect_release();

    let file = ports
        .files()
        .upload(
            &alice(),
            general(),
            FileName::sanitize("notes.txt"),
            byte_stream(chunked(&png(300))),
            None,
            Upload::WithMessage,
        )
        .await
        .expect("uploaded");

    assert_eq!(file, expected);
    assert_eq!(*written.lock().expect("not poisoned"), [png(300)]);
}

#[tokio::test]
async fn html_is_stored_as_a_plain_octet_stream_file_whatever_its_name_says() {
    let mut ports = Ports { clock: fixed_clock(2), ..Ports::default() };
    ports.expect_membership(true);
    ports.expect_reserve(LIMITS.file_max, LIMITS.file_max);
    let written = ports.expect_put(LIMITS.file_max);
    ports.catalog.expect_insert().times(1).returning(|_| Ok(()));
    ports.expect_release();

    let file = ports
        .files()
        .upload(
            &alice(),
            general(),
            FileName::sanitize("cat.png"),
            byte_stream(chunked(&html(100))),
            None,
            Upload::WithMessage,
        )
        .await
        .expect("uploaded");

    assert_eq!(file.meta.kind, FileKind::File);
    assert_eq!(file.meta.content_type, "application/octet-stream");
    assert_eq!(file.meta.name.as_str(), "cat.png");
    assert_eq!(file.meta.expires_at, now() + days(28));
    assert_eq!(*written.lock().expect("not poisoned"), [html(100)]);
}

#[tokio::test]
async fn a_declared_size_is_held_and_streamed_instead_of_the_kind_limit() {
    let mut ports = Ports { clock: fixed_clock(2), ..Ports::default() };
    ports.expect_membership(true);
    ports.expect_reserve(300, 300);
    let written = ports.expect_put(300);
    ports.catalog.expect_insert().times(1).returning(|_| Ok(()));
    ports.expect_release();

    ports
        .files()
        .upload(
            &alice(),
            general(),
            FileName::sanitize("a.png"),
            byte_stream(chunked(&png(300))),
            Some(300),
            Upload::WithMessage,
        )
        .await
        .expect("uploaded");

    assert_eq!(*written.lock().expect("not poisoned"), [png(300)]);
}

#[tokio::test]
async fn a_declared_size_over_the_kind_limit_holds_only_the_limit() {
    let mut ports = Ports { clock: fixed_clock(1), ..Ports::default() };
    ports.expect_membership(true);
    ports.expect_reserve(LIMITS.image_max, LIMITS.image_max);
    ports.expect_put(LIMITS.image_max);
    ports.catalog.expect_insert().never();
    ports.expect_release();

    let result = ports
        .files()
        .upload(
            &alice(),
            general(),
            FileName::sanitize("big.png"),
            byte_stream(chunked(&png(1_001))),
            Some(1_001),
            Upload::WithMessage,
        )
        .await;

    assert!(matches!(result, Err(UploadError::TooLarge { limit: 1_000 })), "got {result:?}");
}

#[tokio::test]
async fn an_image_over_the_image_limit_is_too_large_and_nothing_is_catalogued_or_held() {
    let mut ports = Ports { clock: fixed_clock(1), ..Ports::default() };
    ports.expect_membership(true);
    ports.expect_reserve(LIMITS.image_max, LIMITS.image_max);
    let written = ports.expect_put(LIMITS.image_max);
    ports.catalog.expect_insert().never();
    ports.expect_release();

    let result = ports
        .files()
        .upload(
            &alice(),
            general(),
            FileName::sanitize("big.png"),
            byte_stream(chunked(&png(1_001))),
            None,
            Upload::WithMessage,
        )
        .await;

    assert!(matches!(result, Err(UploadError::TooLarge { limit: 1_000 })), "got {result:?}");
    assert!(written.lock().expect("not poisoned").is_empty());
}

#[tokio::test]
async fn an_upload_beyond_what_the_hold_granted_is_refused_as_quota_exceeded_and_let_go() {
    let mut ports = Ports { clock: fixed_clock(1), ..Ports::default() };
    ports.expect_membership(true);
    ports.expect_reserve(LIMITS.file_max, 500);
    let written = ports.expect_put(500);
    ports.catalog.expect_insert().never();
    ports.expect_release();

    let result = ports
        .files()
        .upload(
            &alice(),
            general(),
            FileName::sanitize("notes.html"),
            byte_stream(chunked(&html(600))),
            None,
            Upload::WithMessage,
        )
        .await;

    assert!(matches!(result, Err(UploadError::QuotaExceeded { quota: 10_000 })), "got {result:?}");
    assert!(written.lock().expect("not poisoned").is_empty());
}

#[tokio::test]
async fn with_nothing_left_of_the_quota_no_byte_is_stored() {
    let mut ports = Ports { clock: fixed_clock(1), ids: sequential_ids(1), ..Ports::default() };
    ports.expect_membership(true);
    ports.expect_reserve(LIMITS.file_max, 0);
    ports.store.expect_put().never();
    ports.catalog.expect_insert().never();
    ports.catalog.expect_release().never();

    let result = ports
        .files()
        .upload(
            &alice(),
            general(),
            FileName::sanitize("notes.html"),
            byte_stream(chunked(&html(600))),
            None,
            Upload::WithMessage,
        )
        .await;

    assert!(matches!(result, Err(UploadError::QuotaExceeded { quota: 10_000 })), "got {result:?}");
}

#[tokio::test]
async fn an_upload_that_outlived_its_hold_holds_its_real_size_again_before_it_is_catalogued() {
    let later = now() + minutes(16);
    let mut ports = Ports { clock: clock_ending_at(later), ..Ports::default() };
    ports.expect_membership(true);
    ports.expect_reserve(LIMITS.file_max, LIMITS.file_max);
    ports.expect_put(LIMITS.file_max);
    ports
        .catalog
        .expect_reserve()
        .withf(move |hold, wanted, _, at| *hold == new_hold(later) && *wanted == 100 && *at == later)
        .times(1)
        .returning(|_, wanted, _, _| Ok(wanted));
    ports.catalog.expect_insert().withf(move |file| file.created_at == later).times(1).returning(|_| Ok(()));
    ports.expect_release();

    let result = ports
        .files()
        .upload(
            &alice(),
            general(),
            FileName::sanitize("notes.html"),
            byte_stream(chunked(&html(100))),
            None,
            Upload::WithMessage,
        )
        .await;

    assert!(result.is_ok(), "got {result:?}");
}

#[tokio::test]
async fn an_upload_that_outlived_its_hold_while_the_quota_filled_up_is_refused_and_its_bytes_deleted() {
    let later = now() + minutes(16);
    let mut ports = Ports { clock: clock_ending_at(later), ..Ports::default() };
    ports.expect_membership(true);
    ports.expect_reserve(LIMITS.file_max, LIMITS.file_max);
    ports.expect_put(LIMITS.file_max);
    ports.catalog.expect_reserve().withf(move |_, wanted, _, _| *wanted == 100).times(1).returning(|_, _, _, _| Ok(40));
    ports.catalog.expect_insert().never();
    ports.store.expect_delete().withf(|id| *id == new_file_id()).times(1).returning(|_| Ok(()));
    ports.catalog.expect_delete().withf(|id| *id == new_file_id()).times(1).returning(|_| Ok(()));
    ports.expect_release();

    let result = ports
        .files()
        .upload(
            &alice(),
            general(),
            FileName::sanitize("notes.html"),
            byte_stream(chunked(&html(100))),
            None,
            Upload::WithMessage,
        )
        .await;

    assert!(matches!(result, Err(UploadError::QuotaExceeded { quota: 10_000 })), "got {result:?}");
}

#[tokio::test]
async fn a_non_member_cannot_upload_and_nothing_is_stored() {
    let mut ports = Ports::default();
    ports.expect_membership(false);
    ports.catalog.expect_reserve().never();
    ports.store.expect_put().never();
    ports.catalog.expect_insert().never();

    let result = ports
        .files()
        .upload(
            &alice(),
            general(),
            FileName::sanitize("cat.png"),
            byte_stream(vec![png(64)]),
            None,
            Upload::WithMessage,
        )
        .await;

    assert!(matches!(result, Err(UploadError::NotFound)), "got {result:?}");
}

#[tokio::test]
async fn when_the_catalog_refuses_the_entry_the_stored_bytes_are_deleted_and_the_hold_let_go() {
    let mut ports = Ports { clock: fixed_clock(2), ..Ports::default() };
    ports.expect_membership(true);
    ports.expect_reserve(LIMITS.image_max, LIMITS.image_max);
    ports.expect_put(LIMITS.image_max);
    ports.catalog.expect_insert().times(1).returning(|_| Err(anyhow::anyhow!("disk full")));
    ports.store.expect_delete().withf(|id| *id == new_file_id()).times(1).returning(|_| Ok(()));
    ports.catalog.expect_delete().withf(|id| *id == new_file_id()).times(1).returning(|_| Ok(()));
    ports.expect_release();

    let result = ports
        .files()
        .upload(
            &alice(),
            general(),
            FileName::sanitize("cat.png"),
            byte_stream(vec![png(64)]),
            None,
            Upload::WithMessage,
        )
        .await;

    assert!(matches!(result, Err(UploadError::Unknown(_))), "got {result:?}");
}

#[tokio::test]
async fn an_upload_that_breaks_off_before_its_kind_is_known_stores_and_holds_nothing() {
    let mut ports = Ports::default();
    ports.expect_membership(true);
    ports.catalog.expect_reserve().never();
    ports.store.expect_put().never();
    let broken = futures::stream::iter([
        Ok(b"\x89PN".to_vec()),
        Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "client went away")),
    ]);

    let result = ports
        .files()
        .upload(
            &alice(),
            general(),
            FileName::sanitize("cat.png"),
            futures::StreamExt::boxed(broken),
            None,
            Upload::WithMessage,
        )
        .await;

    assert!(matches!(result, Err(UploadError::Unknown(_))), "got {result:?}");
}

// --- download ---

#[tokio::test]
async fn a_member_downloads_a_live_file_from_the_requested_offset() {
    let mut ports = Ports { clock: fixed_clock(1), ..Ports::default() };
    let file = stored_file(now() + days(1));
    let catalogued = file.clone();
    ports.catalog.expect_get().withf(|id| *id == new_file_id()).times(1).return_once(move |_| Ok(Some(catalogued)));
    ports.expect_membership(true);
    ports
        .store
        .expect_open()
        .withf(|id, offset| *id == new_file_id() && *offset == 6)
        .times(1)
        .returning(|_, _| Ok(Some(byte_stream(vec![b"wor".to_vec(), b"ld".to_vec()]))));

    let download = ports.files().download(&alice(), new_file_id(), 6).await.expect("opened");

    assert_eq!(download.file, file);
    assert_eq!(read_all(download.bytes).expect("readable"), b"world");
}

#[tokio::test]
async fn an_unknown_file_is_not_found() {
    let mut ports = Ports::default();
    ports.catalog.expect_get().times(1).returning(|_| Ok(None));
    ports.store.expect_open().never();

    let result = ports.files().download(&alice(), new_file_id(), 0).await;

    assert!(matches!(result, Err(DownloadError::NotFound)), "got {result:?}");
}

#[tokio::test]
async fn a_non_member_is_told_the_file_does_not_exist() {
    let mut ports = Ports::default();
    ports.catalog.expect_get().times(1).returning(|_| Ok(Some(stored_file(now() + days(1)))));
    ports.expect_membership(false);
    ports.store.expect_open().never();

    let result = ports.files().download(&alice(), new_file_id(), 0).await;

    assert!(matches!(result, Err(DownloadError::NotFound)), "got {result:?}");
}

#[tokio::test]
async fn a_file_past_its_expiry_is_gone() {
    let mut ports = Ports { clock: fixed_clock(1), ..Ports::default() };
    // A file is expired from its expiry instant on.
    ports.catalog.expect_get().times(1).returning(|_| Ok(Some(stored_file(now()))));
    ports.expect_membership(true);
    ports.store.expect_open().never();

    let result = ports.files().download(&alice(), new_file_id(), 0).await;

    assert!(matches!(result, Err(DownloadError::Gone)), "got {result:?}");
}

#[tokio::test]
async fn a_purged_file_is_gone_whatever_the_clock_says() {
    // The clock has no expectation: a tombstone is gone without asking it.
    let mut ports = Ports::default();
    let tombstone = StoredFile { purged_at: Some(now() - days(1)), ..stored_file(now() + days(1)) };
    ports.catalog.expect_get().times(1).return_once(move |_| Ok(Some(tombstone)));
    ports.expect_membership(true);
    ports.store.expect_open().never();

    let result = ports.files().download(&alice(), new_file_id(), 0).await;

    assert!(matches!(result, Err(DownloadError::Gone)), "got {result:?}");
}

#[tokio::test]
async fn a_non_member_is_told_a_purged_file_does_not_exist() {
    let mut ports = Ports::default();
    let tombstone = StoredFile { purged_at: Some(now() - days(1)), ..stored_file(now() - days(2)) };
    ports.catalog.expect_get().times(1).return_once(move |_| Ok(Some(tombstone)));
    ports.expect_membership(false);
    ports.store.expect_open().never();

    let result = ports.files().download(&alice(), new_file_id(), 0).await;

    assert!(matches!(result, Err(DownloadError::NotFound)), "got {result:?}");
}

#[tokio::test]
async fn a_file_whose_bytes_are_missing_is_gone() {
    let mut ports = Ports { clock: fixed_clock(1), ..Ports::default() };
    ports.catalog.expect_get().times(1).returning(|_| Ok(Some(stored_file(now() + days(1)))));
    ports.expect_membership(true);
    ports.store.expect_open().times(1).returning(|_, _| Ok(None));

    let result = ports.files().download(&alice(), new_file_id(), 0).await;

    assert!(matches!(result, Err(DownloadError::Gone)), "got {result:?}");
}

#[tokio::test]
async fn a_file_shorter_than_the_sniffed_head_is_stored_from_a_stream_that_may_not_be_polled_after_its_end() {
    let mut ports = Ports { clock: fixed_clock(2), ..Ports::default() };
    ports.expect_membership(true);
    ports.expect_reserve(LIMITS.file_max, LIMITS.file_max);
    let written = ports.expect_put(LIMITS.file_max);
    ports.catalog.expect_insert().times(1).returning(|_| Ok(()));
    ports.expect_release();
    let once = futures::stream::unfold(false, |done| async move { (!done).then(|| (Ok(b"tiny".to_vec()), true)) });

    let result = ports
        .files()
        .upload(
            &alice(),
            general(),
            FileName::sanitize("a.txt"),
            futures::StreamExt::boxed(once),
            None,
            Upload::WithMessage,
        )
        .await;

    assert!(result.is_ok(), "got {result:?}");
    assert_eq!(*written.lock().expect("not poisoned"), [b"tiny".to_vec()]);
}
