//! File use cases: streamed upload with sniffing, limits and quota; access-checked download.

use std::sync::Arc;

use domain::{sniff_image, FileId, FileKind, FileMeta, FileName, RetentionPolicy, RoomId, User, SNIFF_BYTES};
use futures::{stream, StreamExt};

use crate::ports::{ByteStream, Clock, FileCatalog, FileStore, IdGenerator, PutFileError, RoomRepository, StoredFile};

/// Size limits and the per-user quota, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileLimits {
    pub image_max: u64,
    pub file_max: u64,
    pub user_quota: u64,
}

impl Default for FileLimits {
    /// Images 5 MiB, other files 30 MiB, 1 GiB per user.
    fn default() -> Self {
        Self { image_max: 5 << 20, file_max: 30 << 20, user_quota: 1 << 30 }
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
    ///
    /// # Errors
    /// `NotFound` unless `actor` is a member, `TooLarge` past the kind's limit, `QuotaExceeded`
    /// past the user's quota; nothing stays stored after an error.
    pub async fn upload(
        &self,
        actor: &User,
        room_id: RoomId,
        name: FileName,
        data: ByteStream,
    ) -> Result<StoredFile, UploadError> {
        if !self.rooms.is_member(room_id, actor.id).await? {
            return Err(UploadError::NotFound);
        }
        let (head, rest) = read_head(data, SNIFF_BYTES).await.map_err(|e| UploadError::Unknown(e.into()))?;
        let sniffed = sniff_image(&head);
        let kind = if sniffed.is_some() { FileKind::Image } else { FileKind::File };
        let content_type = sniffed.unwrap_or("application/octet-stream").to_owned();

        let quota = self.limits.user_quota;
        let quota_left = quota.saturating_sub(self.catalog.usage_of(actor.id).await?);
        let kind_limit = self.limits.for_kind(kind);
        let max = kind_limit.min(quota_left);
        let id = FileId::from_uuid(self.ids.new_id());
        let joined: ByteStream = stream::iter([Ok(head)]).chain(rest).boxed();
        let size = match self.store.put(id, joined, max).await {
            Ok(size) => size,
            Err(PutFileError::TooLarge { .. }) if max < kind_limit => return Err(UploadError::QuotaExceeded { quota }),
            Err(PutFileError::TooLarge { .. }) => return Err(UploadError::TooLarge { limit: kind_limit }),
            Err(PutFileError::Unknown(e)) => return Err(UploadError::Unknown(e)),
        };
        let now = self.clock.now();
        let file = StoredFile {
            meta: FileMeta { id, name, size, content_type, kind, expires_at: self.retention.file_expiry(kind, now) },
            room_id,
            owner: actor.id,
            created_at: now,
            purged_at: None,
        };
        if let Err(e) = self.catalog.insert(&file).await {
            self.discard(id).await;
            return Err(UploadError::Unknown(e));
        }
        Ok(file)
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

/// Reads at least `n` bytes (fewer only if the stream ends), returning them and the rest.
async fn read_head(mut data: ByteStream, n: usize) -> std::io::Result<(Vec<u8>, ByteStream)> {
    let mut head = Vec::new();
    while head.len() < n {
        match data.next().await {
            Some(chunk) => head.extend_from_slice(&chunk?),
            None => break,
        }
    }
    Ok((head, data))
}
