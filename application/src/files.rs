//! File use cases: streamed upload with sniffing, limits and quota; access-checked download.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use domain::{
    sniff_document, sniff_image, FileId, FileKind, FileMeta, FileName, RetentionPolicy, RoomId, Timestamp, User,
    UserId, SNIFF_BYTES,
};
use futures::{stream, StreamExt};

use crate::ports::{
    ByteStream, Clock, FileCatalog, FileStore, IdGenerator, PutFileError, QuotaHold, RoomRepository, StoredFile,
};

/// Size limits and the per-user quota, in bytes, and how long an upload holds its share of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileLimits {
    pub image_max: u64,
    pub file_max: u64,
    pub user_quota: u64,
    /// How long an upload's quota hold lasts. A crash mid-upload frees the held bytes after this;
    /// an upload that takes longer is checked against the quota again at its end.
    pub quota_hold: Duration,
    /// How long a file uploaded on its own (`POST /files`) waits for a message to refer to it
    /// before the purge deletes it.
    pub unattached: Duration,
}

impl Default for FileLimits {
    /// Images 5 MiB, other files 30 MiB, 1 GiB per user, holds of 15 minutes, an hour to attach.
    fn default() -> Self {
        Self {
            image_max: 5 << 20,
            file_max: 30 << 20,
            user_quota: 1 << 30,
            quota_hold: Duration::from_secs(15 * 60),
            unattached: Duration::from_secs(60 * 60),
        }
    }
}

impl FileLimits {
    pub fn for_kind(&self, kind: FileKind) -> u64 {
        match kind {
            FileKind::Image => self.image_max,
            FileKind::File => self.file_max,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("room not found")]
    NotFound,
    #[error("the file is larger than the {limit}-byte limit for its kind")]
    TooLarge { limit: u64 },
    #[error("the upload would exceed your storage quota of {quota} bytes")]
    QuotaExceeded { quota: u64 },
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// No live file of the sender's in that room: unknown, someone else's, another room's, expired.
    #[error("no such file of yours in this room")]
    NotFound,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

/// Whether an upload comes with its message (over the socket) or waits for one (`POST /files`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upload {
    WithMessage,
    Unattached,
}

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("file not found")]
    NotFound,
    #[error("the file has expired")]
    Gone,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

/// An opened download.
pub struct Download {
    pub file: StoredFile,
    pub bytes: ByteStream,
}

impl std::fmt::Debug for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Download").field("file", &self.file).finish_non_exhaustive()
    }
}

#[derive(Clone)]
pub struct Files {
    store: Arc<dyn FileStore>,
    catalog: Arc<dyn FileCatalog>,
    rooms: Arc<dyn RoomRepository>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGenerator>,
    limits: FileLimits,
    retention: RetentionPolicy,
}

impl Files {
    pub fn new(
        store: Arc<dyn FileStore>,
        catalog: Arc<dyn FileCatalog>,
        rooms: Arc<dyn RoomRepository>,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdGenerator>,
        limits: FileLimits,
        retention: RetentionPolicy,
    ) -> Self {
        Self { store, catalog, rooms, clock, ids, limits, retention }
    }

    pub fn limits(&self) -> FileLimits {
        self.limits
    }

    /// Stores an upload of a room member. The kind comes from the bytes, never from the client.
    /// `declared_size` is the size the client announced, when it did: the quota hold is no larger.
    ///
    /// # Errors
    /// `NotFound` unless `actor` is a member, `TooLarge` past the kind's limit, `QuotaExceeded`
    /// past the user's quota; nothing stays stored or held after an error.
    pub async fn upload(
        &self,
        actor: &User,
        room_id: RoomId,
        name: FileName,
        data: ByteStream,
        declared_size: Option<u64>,
        upload: Upload,
    ) -> Result<StoredFile, UploadError> {
        if !self.rooms.is_member(room_id, actor.id).await? {
            return Err(UploadError::NotFound);
        }
        let (head, rest) = read_head(data, SNIFF_BYTES).await.map_err(|e| UploadError::Unknown(e.into()))?;
        let sniffed = sniff_image(&head);
        let kind = if sniffed.is_some() { FileKind::Image } else { FileKind::File };
        let content_type =
            sniffed.or_else(|| sniff_document(&head, &name)).unwrap_or("application/octet-stream").to_owned();

        // The bytes are held before any is stored, so parallel uploads cannot all pass a check
        // against the same usage. Without a declared size the hold is the most the kind allows.
        let kind_limit = self.limits.for_kind(kind);
        let wanted = declared_size.map_or(kind_limit, |size| size.min(kind_limit));
        let id = FileId::from_uuid(self.ids.new_id());
        let started = self.clock.now();
        let hold = self.hold(id, actor.id, started);
        let granted = self.catalog.reserve(hold, wanted, self.limits.user_quota, started).await?;
        if granted == 0 && wanted > 0 {
            return Err(UploadError::QuotaExceeded { quota: self.limits.user_quota });
        }
        let draft = Draft { name, content_type, kind, room_id, owner: actor.id, upload };
        let joined: ByteStream = stream::iter([Ok(head)]).chain(rest).boxed();
        let limits = Granted { granted, wanted, kind_limit };
        let result = self.store_held(hold, joined, limits, draft).await;
        if let Err(e) = self.catalog.release(hold).await {
            // It lapses on its own at `expires_at`.
            tracing::warn!(file_id = %id, error = %e, "could not release a quota hold");
        }
        result
    }

    /// Streams the bytes within the hold, then catalogues them.
    async fn store_held(
        &self,
        hold: QuotaHold,
        data: ByteStream,
        limits: Granted,
        draft: Draft,
    ) -> Result<StoredFile, UploadError> {
        let quota = self.limits.user_quota;
        let size = match self.store.put(hold.id, data, limits.granted).await {
            Ok(size) => size,
            Err(PutFileError::TooLarge { .. }) if limits.granted < limits.wanted => {
                return Err(UploadError::QuotaExceeded { quota })
            }
            Err(PutFileError::TooLarge { .. }) => return Err(UploadError::TooLarge { limit: limits.kind_limit }),
            Err(PutFileError::Unknown(e)) => return Err(UploadError::Unknown(e)),
        };
        let now = self.clock.now();
        if now >= hold.expires_at {
            // The hold lapsed while the bytes streamed and others may have taken its share since:
            // hold the real size again, or give the bytes up.
            let renewed = self.hold(hold.id, hold.owner, now);
            match self.catalog.reserve(renewed, size, quota, now).await {
                Ok(granted) if granted == size => {}
                other => {
                    self.discard(hold.id).await;
                    return Err(other.map_or_else(UploadError::Unknown, |_| UploadError::QuotaExceeded { quota }));
                }
            }
        }
        let file = StoredFile {
            meta: FileMeta {
                id: hold.id,
                name: draft.name,
                size,
                content_type: draft.content_type,
                kind: draft.kind,
                expires_at: self.expiry(draft.kind, draft.upload, now),
            },
            room_id: draft.room_id,
            owner: draft.owner,
            created_at: now,
            purged_at: None,
        };
        if let Err(e) = self.catalog.insert(&file).await {
            self.discard(hold.id).await;
            return Err(UploadError::Unknown(e));
        }
        Ok(file)
    }

    /// When a file stored at `now` expires: with retention once a message refers to it, within
    /// the attach window until then.
    fn expiry(&self, kind: FileKind, upload: Upload, now: Timestamp) -> Timestamp {
        let kept = self.retention.file_expiry(kind, now);
        match upload {
            Upload::WithMessage => kept,
            Upload::Unattached => {
                let window = chrono::Duration::from_std(self.limits.unattached).unwrap_or(chrono::Duration::MAX);
                now.checked_add_signed(window).unwrap_or(kept).min(kept)
            }
        }
    }

    /// Makes `actor`'s file `file_id`, uploaded on its own to `room_id`, the content of a message:
    /// it expires with retention from now on, like a file sent with its message.
    ///
    /// # Errors
    /// `NotFound` unless it is a live file of `actor`'s in `room_id`.
    pub async fn attach(&self, actor: &User, room_id: RoomId, file_id: FileId) -> Result<FileMeta, AttachError> {
        let file = self.catalog.get(file_id).await?.ok_or(AttachError::NotFound)?;
        if file.owner != actor.id || file.room_id != room_id || file.purged_at.is_some() {
            return Err(AttachError::NotFound);
        }
        let now = self.clock.now();
        let expires_at = self.expiry(file.meta.kind, Upload::WithMessage, now);
        if !self.catalog.attach(file_id, expires_at, now).await? {
            return Err(AttachError::NotFound);
        }
        Ok(FileMeta { expires_at, ..file.meta })
    }

    /// A hold of the upload `id`, from `now` for the configured span.
    fn hold(&self, id: FileId, owner: UserId, now: Timestamp) -> QuotaHold {
        let span = chrono::Duration::from_std(self.limits.quota_hold).unwrap_or(chrono::Duration::MAX);
        QuotaHold { id, owner, expires_at: now.checked_add_signed(span).unwrap_or(DateTime::<Utc>::MAX_UTC) }
    }

    /// Opens a file for a member of its room, from `offset` on.
    ///
    /// # Errors
    /// `NotFound` for unknown files and non-members, `Gone` once expired or purged.
    pub async fn download(&self, actor: &User, file_id: FileId, offset: u64) -> Result<Download, DownloadError> {
        let file = self.catalog.get(file_id).await?.ok_or(DownloadError::NotFound)?;
        if !self.rooms.is_member(file.room_id, actor.id).await? {
            return Err(DownloadError::NotFound);
        }
        // A purged entry is gone whatever the clock says; bytes missing from the store are gone too.
        if file.purged_at.is_some() || RetentionPolicy::is_file_expired(file.meta.expires_at, self.clock.now()) {
            return Err(DownloadError::Gone);
        }
        let bytes = self.store.open(file_id, offset).await?.ok_or(DownloadError::Gone)?;
        Ok(Download { file, bytes })
    }

    /// Makes a file expire now, as when the message that shared it is deleted: downloads answer
    /// `Gone` from here on, and the next purge deletes its bytes. True when it was live.
    ///
    /// # Errors
    /// Storage failures.
    pub(crate) async fn expire(&self, id: FileId) -> anyhow::Result<bool> {
        self.catalog.expire(id, self.clock.now()).await
    }

    /// Removes bytes and catalog entry of a file that will not be used after all.
    pub(crate) async fn discard(&self, id: FileId) {
        if let Err(e) = self.catalog.delete(id).await {
            tracing::warn!(file_id = %id, error = %e, "could not remove catalog entry of discarded file");
        }
        if let Err(e) = self.store.delete(id).await {
            tracing::warn!(file_id = %id, error = %e, "could not remove bytes of discarded file");
        }
    }
}

/// What an upload is, before its size is known.
struct Draft {
    name: FileName,
    content_type: String,
    kind: FileKind,
    room_id: RoomId,
    owner: UserId,
    upload: Upload,
}

/// How many bytes an upload may store, and why no more.
#[derive(Clone, Copy)]
struct Granted {
    /// What the quota hold granted: the most the store may take.
    granted: u64,
    /// What was asked for; a grant below it means the quota ran short.
    wanted: u64,
    kind_limit: u64,
}

/// Reads at least `n` bytes (fewer only if the stream ends), returning them and the rest.
async fn read_head(mut data: ByteStream, n: usize) -> std::io::Result<(Vec<u8>, ByteStream)> {
    let mut head = Vec::new();
    while head.len() < n {
        match data.next().await {
            Some(chunk) => head.extend_from_slice(&chunk?),
            // A stream may not be polled again once it has ended.
            None => return Ok((head, stream::empty().boxed())),
        }
    }
    Ok((head, data))
}
