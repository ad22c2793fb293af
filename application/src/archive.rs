//! Worker use cases: move messages from the log to the archive, recover counters, purge expired data.

use std::sync::Arc;

use domain::{RetentionPolicy, RoomId, Timestamp};

use crate::ports::{Clock, FileCatalog, FileStore, MessageArchive, MessageLog, RoomRepository};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ArchiveReport {
    /// Messages handed over in this batch.
    pub claimed: usize,
    /// Of those, how many the archive did not have yet.
    pub inserted: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PurgeReport {
    pub messages: u64,
    pub files: u64,
    /// Deleted rooms whose content this purge cleared.
    pub rooms: u64,
}

/// What the purge deletes, and how many rows one step deletes, so it never holds a long lock.
#[derive(Debug, Clone, Copy)]
pub struct PurgePolicy {
    pub retention: RetentionPolicy,
    pub batch: u32,
}

/// Messages handed to one worker, kept until the archive has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    batch: Vec<crate::ports::Queued>,
}

impl Claimed {
    pub fn len(&self) -> usize {
        self.batch.len()
    }

    pub fn is_empty(&self) -> bool {
        self.batch.is_empty()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

/// Raises every room's counter in `log` to its highest archived seq, then tells the log its
/// counters are whole again. Returns how many rooms it raised.
///
/// # Errors
/// Infrastructure failures; the log stays marked as having lost its counters.
pub(crate) async fn recover_counters(log: &dyn MessageLog, archive: &dyn MessageArchive) -> anyhow::Result<usize> {
    let seqs = archive.last_seqs().await?;
    for (room, seq) in &seqs {
        log.raise_seq(*room, *seq).await?;
    }
    log.counters_recovered().await?;
    Ok(seqs.len())
}

#[derive(Clone)]
pub struct Archiver {
    log: Arc<dyn MessageLog>,
    archive: Arc<dyn MessageArchive>,
    store: Arc<dyn FileStore>,
    catalog: Arc<dyn FileCatalog>,
    rooms: Arc<dyn RoomRepository>,
    clock: Arc<dyn Clock>,
    retention: RetentionPolicy,
    /// How many rows one purge step deletes, so purging never holds a long lock.
    purge_batch: u32,
}

impl Archiver {
    pub fn new(
        log: Arc<dyn MessageLog>,
        archive: Arc<dyn MessageArchive>,
        store: Arc<dyn FileStore>,
        catalog: Arc<dyn FileCatalog>,
        rooms: Arc<dyn RoomRepository>,
        clock: Arc<dyn Clock>,
        purge: PurgePolicy,
    ) -> Self {
        let (retention, purge_batch) = (purge.retention, purge.batch.max(1));
        Self { log, archive, store, catalog, rooms, clock, retention, purge_batch }
    }

    /// Archives one batch: claim, write, and only then acknowledge. A crash between the write and
    /// the ack re-delivers the batch, and the idempotent insert stores nothing twice.
    ///
    /// # Errors
    /// Infrastructure failures; unacknowledged messages stay queued for the next attempt.
    pub async fn archive_batch(&self, consumer: &str, max: usize) -> Result<ArchiveReport, ArchiveError> {
        let claimed = self.claim(consumer, max).await?;
        self.store(&claimed).await
    }

    /// Takes up to `max` queued messages for `consumer`.
    ///
    /// # Errors
    /// Infrastructure failures.
    pub async fn claim(&self, consumer: &str, max: usize) -> Result<Claimed, ArchiveError> {
        Ok(Claimed { batch: self.log.claim_batch(consumer, max).await? })
    }

    /// Writes a claimed batch to the archive and acknowledges what was written. When the batch
    /// fails as a whole, each message is tried alone: one bad message must not hold back the
    /// rest, and stays queued until it is dead-lettered. When every message fails, the archive is
    /// down: nothing is acknowledged, and the caller should retry this same batch rather than
    /// claim again, since every claim counts towards dead-lettering.
    ///
    /// # Errors
    /// The archive refused every message, or the acknowledgement failed.
    pub async fn store(&self, claimed: &Claimed) -> Result<ArchiveReport, ArchiveError> {
        let batch = &claimed.batch;
        if batch.is_empty() {
            return Ok(ArchiveReport::default());
        }
        let messages: Vec<_> = batch.iter().map(|q| q.message.clone()).collect();
        let (inserted, receipts) = match self.archive.insert_batch(&messages).await {
            Ok(inserted) => (inserted, batch.iter().map(|q| q.receipt.clone()).collect::<Vec<_>>()),
            Err(whole) => {
                let mut inserted = 0;
                let mut receipts = Vec::new();
                for queued in batch {
                    match self.archive.insert_batch(std::slice::from_ref(&queued.message)).await {
                        Ok(n) => {
                            inserted += n;
                            receipts.push(queued.receipt.clone());
                        }
                        Err(e) => tracing::warn!(
                            message_id = %queued.message.id, error = %e, "message could not be archived; it stays queued"
                        ),
                    }
                }
                if receipts.is_empty() {
                    return Err(whole.into());
                }
                (inserted, receipts)
            }
        };
        self.log.ack(&receipts).await?;
        Ok(ArchiveReport { claimed: batch.len(), inserted })
    }

    /// Archives until the log has nothing left for `consumer`; used at shutdown.
    ///
    /// # Errors
    /// The first failing batch's error.
    pub async fn drain(&self, consumer: &str, batch: usize) -> Result<u64, ArchiveError> {
        let mut total = 0;
        loop {
            let report = self.archive_batch(consumer, batch).await?;
            if report.claimed == 0 {
                return Ok(total);
            }
            total += report.claimed as u64;
        }
    }

    /// How long the oldest message not yet archived has waited; zero when nothing waits.
    ///
    /// # Errors
    /// Infrastructure failures.
    pub async fn lag(&self) -> Result<chrono::Duration, ArchiveError> {
        let oldest = self.log.oldest_unarchived().await?;
        Ok(oldest.map_or_else(chrono::Duration::zero, |t| (self.clock.now() - t).max(chrono::Duration::zero())))
    }

    /// How many messages the log set aside as dead letters.
    ///
    /// # Errors
    /// Infrastructure failures.
    pub async fn dead_lettered(&self) -> Result<u64, ArchiveError> {
        Ok(self.log.dead_lettered().await?)
    }

    /// Makes every room's next seq follow its highest archived one, after the log lost its counters.
    ///
    /// # Errors
    /// Infrastructure failures.
    pub async fn recover_sequences(&self) -> Result<usize, ArchiveError> {
        Ok(recover_counters(self.log.as_ref(), self.archive.as_ref()).await?)
    }

    /// Deletes the content of deleted rooms, archived messages past retention and expired files'
    /// bytes. A purged file's catalog entry stays as a tombstone, so messages keep its metadata and
    /// its download answers 410, until no message can point at it any more: it was purged before
    /// the message cutoff.
    ///
    /// # Errors
    /// Infrastructure failures; what was purged before the failure stays purged.
    pub async fn purge(&self) -> Result<PurgeReport, ArchiveError> {
        let now = self.clock.now();
        let cutoff = self.retention.message_cutoff(now);
        let batch = u64::from(self.purge_batch);
        let mut report = PurgeReport::default();
        // First, so the expired files of deleted rooms go with this purge's files.
        loop {
            let deleted_rooms = self.rooms.deleted_rooms(self.purge_batch).await?;
            for room in &deleted_rooms {
                report.messages += self.clear_room(*room, now).await?;
                report.rooms += 1;
            }
            if (deleted_rooms.len() as u64) < batch {
                break;
            }
        }
        loop {
            let deleted = self.archive.delete_sent_before(cutoff, self.purge_batch).await?;
            report.messages += deleted;
            if deleted < batch {
                break;
            }
        }
        loop {
            let expired = self.catalog.expired(now, self.purge_batch).await?;
            for id in &expired {
                // Bytes first: a tombstone without bytes answers 410, bytes without a live entry would leak.
                self.store.delete(*id).await?;
                self.catalog.mark_purged(*id, now).await?;
                report.files += 1;
            }
            if (expired.len() as u64) < batch {
                break;
            }
        }
        // A message is sent with a live file, so before the file's purge: a file purged before the
        // message cutoff has no message left to point at it. The purge instant, never earlier than
        // the expiry, keeps a tombstone at least as long whatever the stored expiry says.
        let mut tombstones = 0;
        loop {
            let deleted = self.catalog.delete_purged_before(cutoff, self.purge_batch).await?;
            tombstones += deleted;
            if deleted < batch {
                break;
            }
        }
        if tombstones > 0 {
            tracing::info!(tombstones, "removed the catalog entries of files purged before the message cutoff");
        }
        Ok(report)
    }

    /// Deletes a deleted room's messages, expires its files and drops what the log keeps of it,
    /// then forgets the room; returns how many messages went. Run again after a crash, it
    /// finishes the job.
    async fn clear_room(&self, room: RoomId, now: Timestamp) -> anyhow::Result<u64> {
        let batch = u64::from(self.purge_batch);
        let mut messages = 0;
        loop {
            let deleted = self.archive.delete_room(room, self.purge_batch).await?;
            messages += deleted;
            if deleted < batch {
                break;
            }
        }
        self.catalog.expire_room(room, now).await?;
        self.log.forget_room(room).await?;
        self.rooms.content_cleared(room).await?;
        Ok(messages)
    }
}
