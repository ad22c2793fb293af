//! Stores each file at `<root>/<first two hex chars of its id>/<id>`, staging uploads under `<root>/tmp`.

use std::io::{ErrorKind, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use application::ports::{ByteStream, FileStore, HealthCheck, PutFileError};
use async_trait::async_trait;
use domain::FileId;
use futures::StreamExt;
use tokio::io::{AsyncSeekExt, AsyncWriteExt};
use tokio_util::io::ReaderStream;

/// Keeps file bytes on the local disk. Paths come only from `FileId`s, so a client-chosen name can
/// never steer a write outside the root.
pub struct LocalFileStore {
    root: PathBuf,
    /// Uploads are written here first and renamed into place whole, so readers never see a partial file.
    staging: PathBuf,
    /// Makes staging and probe names unique within this process, even for two uploads of one id.
    next_scratch: AtomicU64,
}

impl LocalFileStore {
    /// Size of the chunks `open` streams out.
    pub const CHUNK_BYTES: usize = 64 * 1024;

    /// Uses `root` as the storage root, creating it if needed.
    ///
    /// # Errors
    /// When the root or its staging directory cannot be created.
    pub fn new(root: PathBuf) -> anyhow::Result<Self> {
        let staging = root.join("tmp");
        std::fs::create_dir_all(&staging)
            .with_context(|| format!("creating the file storage directory {}", staging.display()))?;
        Ok(Self { root, staging, next_scratch: AtomicU64::new(0) })
    }

    fn path_for(&self, id: FileId) -> PathBuf {
        let name = id.to_string();
        // Spreads files over 256 directories so none grows huge; a UUID's text starts with two hex digits.
        let shard: String = name.chars().take(2).collect();
        self.root.join(shard).join(name)
    }

    /// A fresh name in the staging directory; the process id keeps nodes sharing a volume apart.
    fn scratch_path(&self, stem: &str, extension: &str) -> PathBuf {
        let n = self.next_scratch.fetch_add(1, Ordering::Relaxed);
        self.staging.join(format!("{stem}.{}.{n}.{extension}", std::process::id()))
    }
}

/// Deletes a staging file when dropped, unless disarmed: covers errors, refusals and a cancelled upload.
struct Staged {
    path: PathBuf,
    armed: bool,
}

impl Staged {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        // Drop cannot await; unlinking one file is quick enough to do in place.
        if let Err(error) = std::fs::remove_file(&self.path) {
            if error.kind() != ErrorKind::NotFound {
                tracing::warn!(path = %self.path.display(), %error, "could not remove a partial upload");
            }
        }
    }
}

/// Makes a rename in `dir` survive a crash. Best effort: some platforms cannot open directories.
async fn sync_dir(dir: &Path) {
    let synced = async { tokio::fs::File::open(dir).await?.sync_all().await }.await;
    if let Err(error) = synced {
        tracing::debug!(dir = %dir.display(), %error, "could not fsync the directory");
    }
}

#[async_trait]
impl FileStore for LocalFileStore {
    async fn put(&self, id: FileId, mut data: ByteStream, max_bytes: u64) -> Result<u64, PutFileError> {
        let stage = self.scratch_path(&id.to_string(), "part");
        let mut file = tokio::fs::File::create(&stage)
            .await
            .with_context(|| format!("creating the staging file {}", stage.display()))?;
        // Declared after `file`, so it is dropped after it: the handle closes before the unlink.
        let staged = Staged { path: stage.clone(), armed: true };

        let mut written: u64 = 0;
        while let Some(chunk) = data.next().await {
            let chunk = chunk.context("reading the upload")?;
            written = written.saturating_add(chunk.len() as u64);
            if written > max_bytes {
                return Err(PutFileError::TooLarge { limit: max_bytes });
            }
            file.write_all(&chunk).await.context("writing the staging file")?;
        }
        file.flush().await.context("flushing the staging file")?;
        file.sync_all().await.context("syncing the staging file")?;
        drop(file);

        let target = self.path_for(id);
        let shard = target.parent().unwrap_or(&self.root);
        tokio::fs::create_dir_all(shard).await.context("creating the shard directory")?;
        tokio::fs::rename(&stage, &target).await.context("moving the upload into place")?;
        staged.disarm();
        sync_dir(shard).await;
        Ok(written)
    }

    async fn open(&self, id: FileId, offset: u64) -> anyhow::Result<Option<ByteStream>> {
        let path = self.path_for(id);
        let mut file = match tokio::fs::File::open(&path).await {
            Ok(file) => file,
            Err(error) if error.kind() == ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error).with_context(|| format!("opening {}", path.display())),
        };
        if offset > 0 {
            file.seek(SeekFrom::Start(offset)).await.with_context(|| format!("seeking in {}", path.display()))?;
        }
        let chunks = ReaderStream::with_capacity(file, Self::CHUNK_BYTES).map(|chunk| chunk.map(Vec::from));
        Ok(Some(chunks.boxed()))
    }

    async fn delete(&self, id: FileId) -> anyhow::Result<()> {
        let path = self.path_for(id);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == ErrorKind::NotFound => Ok(()),
            Err(error) => Err(error).with_context(|| format!("deleting {}", path.display())),
        }
    }
}

#[async_trait]
impl HealthCheck for LocalFileStore {
    fn name(&self) -> &'static str {
        "files"
    }

    async fn check(&self) -> anyhow::Result<()> {
        let probe = self.scratch_path(".health", "probe");
        let written = async {
            let mut file = tokio::fs::File::create(&probe).await?;
            file.write_all(b"ok").await?;
            file.flush().await?;
            file.sync_all().await
        }
        .await;
        let removed = tokio::fs::remove_file(&probe).await;
        written.with_context(|| format!("writing the probe file {}", probe.display()))?;
        removed.with_context(|| format!("deleting the probe file {}", probe.display()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::stream;
    use std::sync::Arc;
    use std::time::Duration;

    fn file_id(n: u128) -> FileId {
        FileId::from_uuid(uuid::Uuid::from_u128(n))
    }

    fn store() -> (tempfile::TempDir, LocalFileStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalFileStore::new(dir.path().join("files")).unwrap();
        (dir, store)
    }

    fn chunks(parts: Vec<Vec<u8>>) -> ByteStream {
        stream::iter(parts.into_iter().map(Ok)).boxed()
    }

    /// Bytes whose value depends on their position, so a wrong offset shows.
    fn patterned(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    async fn read_all(store: &LocalFileStore, id: FileId, offset: u64) -> Vec<Vec<u8>> {
        let stream = store.open(id, offset).await.unwrap().expect("the file should exist");
        stream.map(|chunk| chunk.unwrap()).collect().await
    }

    fn files_under(dir: &Path) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                found.extend(files_under(&path));
            } else {
                found.push(path);
            }
        }
        found
    }

    #[tokio::test]
    async fn a_stored_file_reads_back_byte_for_byte() {
        // Arrange
        let (_dir, store) = store();
        let data = patterned(150_000);

        // Act
        let size = store.put(file_id(1), chunks(vec![data[..1000].to_vec(), data[1000..].to_vec()]), 1 << 20).await;

        // Assert
        assert_eq!(size.unwrap(), 150_000);
        let read = read_all(&store, file_id(1), 0).await;
        assert!(read.iter().all(|chunk| chunk.len() <= LocalFileStore::CHUNK_BYTES));
        assert_eq!(read.concat(), data);
    }

    #[tokio::test]
    async fn bytes_live_at_a_path_derived_only_from_the_id() {
        let (dir, store) = store();
        let id = FileId::from_uuid(uuid::Uuid::parse_str("ab12cd34-0000-7000-8000-000000000001").unwrap());

        store.put(id, chunks(vec![b"hello".to_vec()]), 100).await.unwrap();

        let expected = dir.path().join("files").join("ab").join("ab12cd34-0000-7000-8000-000000000001");
        assert_eq!(files_under(dir.path()), [expected]);
    }

    #[tokio::test]
    async fn an_oversize_upload_is_refused_and_leaves_nothing_on_disk() {
        // Arrange
        let (dir, store) = store();
        let parts = vec![vec![1u8; 60], vec![2u8; 60]];

        // Act
        let result = store.put(file_id(1), chunks(parts), 100).await;

        // Assert
        assert!(matches!(result, Err(PutFileError::TooLarge { limit: 100 })), "got {result:?}");
        assert!(files_under(dir.path()).is_empty());
        assert!(store.open(file_id(1), 0).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn an_endless_upload_is_refused_once_it_passes_the_limit() {
        let (dir, store) = store();
        let endless = stream::repeat_with(|| Ok(vec![0u8; 4096])).boxed();

        let result = store.put(file_id(1), endless, 1 << 20).await;

        assert!(matches!(result, Err(PutFileError::TooLarge { limit: 1_048_576 })), "got {result:?}");
        assert!(files_under(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn an_upload_of_exactly_the_limit_is_accepted() {
        let (_dir, store) = store();

        let size = store.put(file_id(1), chunks(vec![vec![7u8; 50], vec![8u8; 50]]), 100).await;

        assert_eq!(size.unwrap(), 100);
    }

    #[tokio::test]
    async fn open_from_an_offset_returns_exactly_the_remaining_bytes() {
        // Arrange
        let (_dir, store) = store();
        let data = patterned(200_000);
        store.put(file_id(1), chunks(vec![data.clone()]), 1 << 20).await.unwrap();

        // Act
        let rest = read_all(&store, file_id(1), 70_001).await;

        // Assert
        assert_eq!(rest.concat(), data[70_001..]);
    }

    #[tokio::test]
    async fn open_at_or_past_the_end_returns_no_bytes() {
        let (_dir, store) = store();
        store.put(file_id(1), chunks(vec![vec![1u8; 10]]), 100).await.unwrap();

        let at_end = read_all(&store, file_id(1), 10).await;
        let past_end = read_all(&store, file_id(1), 1000).await;

        assert!(at_end.concat().is_empty());
        assert!(past_end.concat().is_empty());
    }

    #[tokio::test]
    async fn open_of_a_missing_file_is_none() {
        let (_dir, store) = store();

        let opened = store.open(file_id(404), 0).await.unwrap();

        assert!(opened.is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_puts_do_not_interfere() {
        // Arrange
        let (_dir, store) = store();
        let store = Arc::new(store);
        let content = |n: u8| -> Vec<Vec<u8>> { (0..20).map(|part| vec![n.wrapping_add(part); 3000]).collect() };

        // Act
        let uploads: Vec<_> = (0..16u8)
            .map(|n| {
                let store = Arc::clone(&store);
                tokio::spawn(async move { store.put(file_id(u128::from(n)), chunks(content(n)), 1 << 20).await })
            })
            .collect();
        for upload in uploads {
            assert_eq!(upload.await.unwrap().unwrap(), 60_000);
        }

        // Assert
        for n in 0..16u8 {
            assert_eq!(read_all(&store, file_id(u128::from(n)), 0).await.concat(), content(n).concat());
        }
    }

    #[tokio::test]
    async fn a_failed_stream_leaves_nothing_on_disk() {
        // Arrange
        let (dir, store) = store();
        let failing = stream::iter(vec![Ok(vec![1u8; 100]), Err(std::io::Error::other("client went away"))]).boxed();

        // Act
        let result = store.put(file_id(1), failing, 1 << 20).await;

        // Assert
        assert!(matches!(result, Err(PutFileError::Unknown(_))), "got {result:?}");
        assert!(files_under(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn a_cancelled_upload_leaves_nothing_on_disk() {
        // Arrange
        let (dir, store) = store();
        let stalled = stream::iter(vec![Ok(vec![1u8; 100])]).chain(stream::pending()).boxed();

        // Act: the upload is abandoned mid-stream, as when a client disconnects
        let result = tokio::time::timeout(Duration::from_millis(50), store.put(file_id(1), stalled, 1 << 20)).await;

        // Assert
        assert!(result.is_err(), "the upload should still have been waiting");
        assert!(files_under(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn delete_removes_the_bytes() {
        let (dir, store) = store();
        store.put(file_id(1), chunks(vec![vec![1u8; 10]]), 100).await.unwrap();

        store.delete(file_id(1)).await.unwrap();

        assert!(store.open(file_id(1), 0).await.unwrap().is_none());
        assert!(files_under(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn delete_of_a_missing_file_succeeds() {
        let (_dir, store) = store();

        let deleted = store.delete(file_id(404)).await;

        assert!(deleted.is_ok());
    }

    #[tokio::test]
    async fn the_health_check_passes_and_leaves_no_probe_behind() {
        let (dir, store) = store();

        let checked = store.check().await;

        assert!(checked.is_ok(), "got {checked:?}");
        assert_eq!(store.name(), "files");
        assert!(files_under(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn the_health_check_fails_when_the_storage_is_gone() {
        let (dir, store) = store();
        std::fs::remove_dir_all(dir.path().join("files")).unwrap();

        let checked = store.check().await;

        assert!(checked.is_err());
    }
}
