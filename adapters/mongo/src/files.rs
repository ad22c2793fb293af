//! `FileCatalog` on MongoDB: what stored bytes are, whose they are, when they expire, and when they were purged.

use anyhow::Context;
use application::ports::{FileCatalog, QuotaHold, StoredFile};
use async_trait::async_trait;
use bson::{doc, Document};
use domain::{FileId, FileKind, FileMeta, FileName, RoomId, Timestamp, UserId};
use futures::TryStreamExt;
use mongodb::Collection;
use serde::{Deserialize, Serialize};

use crate::codec::{date, delete_oldest, id_text, is_duplicate_key, limit, parse_id, timestamp, to_i64, to_u64};
use crate::schema::{FILES, QUOTA_HOLDS};
use crate::MongoStore;

#[derive(Serialize, Deserialize)]
struct FileDoc {
    #[serde(rename = "_id")]
    id: String,
    room_id: String,
    owner_id: String,
    name: String,
    size: i64,
    content_type: String,
    kind: String,
    expires_at: bson::DateTime,
    created_at: bson::DateTime,
    /// `null` while the bytes are stored; absent in documents written before tombstones existed.
    #[serde(default)]
    purged_at: Option<bson::DateTime>,
}

impl FileDoc {
    fn of(file: &StoredFile) -> anyhow::Result<Self> {
        Ok(Self {
            id: id_text(file.meta.id.as_uuid()),
            room_id: id_text(file.room_id.as_uuid()),
            owner_id: id_text(file.owner.as_uuid()),
            name: file.meta.name.as_str().to_owned(),
            size: to_i64(file.meta.size)?,
            content_type: file.meta.content_type.clone(),
            kind: file.meta.kind.as_str().to_owned(),
            expires_at: date(file.meta.expires_at),
            created_at: date(file.created_at),
            purged_at: file.purged_at.map(date),
        })
    }

    fn into_stored(self) -> anyhow::Result<StoredFile> {
        Ok(StoredFile {
            meta: FileMeta {
                id: parse_id(&self.id)?,
                name: FileName::sanitize(&self.name),
                size: to_u64(self.size)?,
                kind: FileKind::parse(&self.kind)
                    .with_context(|| format!("file {} has an unknown kind {:?}", self.id, self.kind))?,
                content_type: self.content_type,
                expires_at: timestamp(self.expires_at),
            },
            room_id: parse_id(&self.room_id)?,
            owner: parse_id(&self.owner_id)?,
            created_at: timestamp(self.created_at),
            purged_at: self.purged_at.map(timestamp),
        })
    }
}

/// A user's quota holds. Every change rewrites `holds` and bumps `version` in one conditional
/// update, so a grant computed from a stale read never lands.
#[derive(Serialize, Deserialize)]
struct HoldsDoc {
    /// The owner's id.
    #[serde(rename = "_id")]
    id: String,
    version: i64,
    holds: Vec<HoldDoc>,
}

#[derive(Clone, Serialize, Deserialize)]
struct HoldDoc {
    id: String,
    bytes: i64,
    expires_at: bson::DateTime,
}

/// Grants that lost a race are retried; each loss means another grant or release landed, so this
/// many in a row only happens under an unreasonable number of parallel uploads of one user.
const MAX_RESERVE_ATTEMPTS: usize = 1_000;

impl MongoStore {
    fn files(&self) -> Collection<FileDoc> {
        self.db().collection(FILES)
    }

    fn quota_holds(&self) -> Collection<HoldsDoc> {
        self.db().collection(QUOTA_HOLDS)
    }

    /// Tries one grant against the ledger as read now; `None` when another change landed first.
    async fn try_reserve(
        &self,
        hold: QuotaHold,
        wanted: u64,
        quota: u64,
        now: Timestamp,
    ) -> anyhow::Result<Option<u64>> {
        let owner = id_text(hold.owner.as_uuid());
        // The ledger is read before the files. An upload catalogues its file before it releases
        // its hold, so a file missing from the sum below is still counted by its hold here, and
        // the release after it changes the version and fails this grant.
        let ledger = self.quota_holds().find_one(doc! { "_id": &owner }).await?;
        let version = ledger.as_ref().map(|l| l.version);
        let mut holds: Vec<HoldDoc> =
            ledger.map(|l| l.holds).unwrap_or_default().into_iter().filter(|h| h.expires_at > date(now)).collect();
        let held =
            holds.iter().try_fold(0u64, |sum, h| Ok::<_, anyhow::Error>(sum.saturating_add(to_u64(h.bytes)?)))?;
        let used = self.usage_of(hold.owner).await?.saturating_add(held);
        let granted = wanted.min(quota.saturating_sub(used));
        if granted == 0 {
            return Ok(Some(0));
        }
        holds.push(HoldDoc {
            id: id_text(hold.id.as_uuid()),
            bytes: to_i64(granted)?,
            expires_at: date(hold.expires_at),
        });
        let landed = match version {
            None => match self.quota_holds().insert_one(HoldsDoc { id: owner, version: 1, holds }).await {
                Ok(_) => true,
                Err(e) if is_duplicate_key(&e) => false,
                Err(e) => return Err(e.into()),
            },
            Some(version) => {
                let holds = bson::to_bson(&holds)?;
                self.quota_holds()
                    .update_one(
                        doc! { "_id": &owner, "version": version },
                        doc! { "$set": { "holds": holds, "version": version + 1 } },
                    )
                    .await?
                    .matched_count
                    == 1
            }
        };
        Ok(landed.then_some(granted))
    }
}

#[async_trait]
impl FileCatalog for MongoStore {
    async fn insert(&self, file: &StoredFile) -> anyhow::Result<()> {
        self.files().insert_one(FileDoc::of(file)?).await?;
        Ok(())
    }

    async fn get(&self, id: FileId) -> anyhow::Result<Option<StoredFile>> {
        let found = self.files().find_one(doc! { "_id": id_text(id.as_uuid()) }).await?;
        found.map(FileDoc::into_stored).transpose()
    }

    async fn usage_of(&self, user: UserId) -> anyhow::Result<u64> {
        let pipeline = [
            doc! { "$match": { "owner_id": id_text(user.as_uuid()), "purged_at": null } },
            doc! { "$group": { "_id": null, "total": { "$sum": "$size" } } },
        ];
        let totals: Vec<Document> = self.files().aggregate(pipeline).await?.try_collect().await?;
        let Some(total) = totals.first() else {
            return Ok(0);
        };
        // `$sum` answers in the narrowest type that holds the sum.
        let total = match total.get("total") {
            Some(bson::Bson::Int64(n)) => *n,
            Some(bson::Bson::Int32(n)) => i64::from(*n),
            other => anyhow::bail!("the usage of user {user} is not an integer: {other:?}"),
        };
        to_u64(total)
    }

    async fn reserve(&self, hold: QuotaHold, wanted: u64, quota: u64, now: Timestamp) -> anyhow::Result<u64> {
        for _ in 0..MAX_RESERVE_ATTEMPTS {
            if let Some(granted) = self.try_reserve(hold, wanted, quota, now).await? {
                return Ok(granted);
            }
        }
        anyhow::bail!(
            "could not hold quota for user {}: {MAX_RESERVE_ATTEMPTS} grants in a row lost a race",
            hold.owner
        )
    }

    async fn release(&self, hold: QuotaHold) -> anyhow::Result<()> {
        // The version changes too, so a grant computed while this hold still counted is retried.
        self.quota_holds()
            .update_one(
                doc! { "_id": id_text(hold.owner.as_uuid()) },
                doc! { "$pull": { "holds": { "id": id_text(hold.id.as_uuid()) } }, "$inc": { "version": 1 } },
            )
            .await?;
        Ok(())
    }

    async fn attach(&self, id: FileId, expires_at: Timestamp, now: Timestamp) -> anyhow::Result<bool> {
        let attached = self
            .files()
            .update_one(
                doc! { "_id": id_text(id.as_uuid()), "purged_at": null, "expires_at": { "$gt": date(now) } },
                doc! { "$set": { "expires_at": date(expires_at) } },
            )
            .await?;
        Ok(attached.matched_count > 0)
    }

    async fn expire(&self, id: FileId, now: Timestamp) -> anyhow::Result<bool> {
        let expired = self
            .files()
            .update_one(
                doc! { "_id": id_text(id.as_uuid()), "purged_at": null, "expires_at": { "$gt": date(now) } },
                doc! { "$set": { "expires_at": date(now) } },
            )
            .await?;
        Ok(expired.modified_count > 0)
    }

    async fn expire_room(&self, room: RoomId, now: Timestamp) -> anyhow::Result<u64> {
        let expired = self
            .files()
            .update_many(
                doc! { "room_id": id_text(room.as_uuid()), "purged_at": null, "expires_at": { "$gt": date(now) } },
                doc! { "$set": { "expires_at": date(now) } },
            )
            .await?;
        Ok(expired.modified_count)
    }

    async fn expired(&self, now: Timestamp, limit_to: u32) -> anyhow::Result<Vec<FileId>> {
        if limit_to == 0 {
            return Ok(Vec::new());
        }
        let due: Vec<Document> = self
            .files()
            .clone_with_type::<Document>()
            .find(doc! { "purged_at": null, "expires_at": { "$lte": date(now) } })
            .sort(doc! { "expires_at": 1, "_id": 1 })
            .limit(limit(limit_to))
            .projection(doc! { "_id": 1 })
            .await?
            .try_collect()
            .await?;
        due.iter().map(|d| parse_id(d.get_str("_id").context("a file has no string id")?)).collect()
    }

    async fn mark_purged(&self, id: FileId, at: Timestamp) -> anyhow::Result<()> {
        // Only the first purge counts, so a retried one leaves the tombstone as it was.
        self.files()
            .update_one(
                doc! { "_id": id_text(id.as_uuid()), "purged_at": null },
                doc! { "$set": { "purged_at": date(at) } },
            )
            .await?;
        Ok(())
    }

    async fn delete_purged_before(&self, cutoff: Timestamp, limit_to: u32) -> anyhow::Result<u64> {
        // `$lt` a date never matches `null`: live entries are not candidates.
        delete_oldest(&self.files(), doc! { "purged_at": { "$lt": date(cutoff) } }, "purged_at", limit_to).await
    }

    async fn delete(&self, id: FileId) -> anyhow::Result<()> {
        self.files().delete_one(doc! { "_id": id_text(id.as_uuid()) }).await?;
        Ok(())
    }
}
