//! `FileCatalog` on SQLite: what stored bytes are, whose they are, when they expire, and when they were purged.

use anyhow::Context;
use application::ports::{FileCatalog, QuotaHold, StoredFile};
use async_trait::async_trait;
use domain::{FileId, FileKind, FileMeta, FileName, RoomId, Timestamp, UserId};
use rusqlite::{params, Connection, Row, TransactionBehavior};

use crate::codec::{delete_oldest_before, id_text, millis, parse_id, timestamp, to_i64, to_u64};
use crate::SqliteStore;

fn file_from_row(row: &Row<'_>) -> anyhow::Result<StoredFile> {
    let id: String = row.get("id")?;
    let room_id: String = row.get("room_id")?;
    let owner: String = row.get("owner_id")?;
    let name: String = row.get("name")?;
    let kind: String = row.get("kind")?;
    Ok(StoredFile {
        meta: FileMeta {
            id: parse_id(&id)?,
            name: FileName::sanitize(&name),
            size: to_u64(row.get("size")?)?,
            content_type: row.get("content_type")?,
            kind: FileKind::parse(&kind).with_context(|| format!("file {id} has an unknown kind {kind:?}"))?,
            expires_at: timestamp(row.get("expires_at")?)?,
        },
        room_id: parse_id(&room_id)?,
        owner: parse_id(&owner)?,
        created_at: timestamp(row.get("created_at")?)?,
        purged_at: row.get::<_, Option<i64>>("purged_at")?.map(timestamp).transpose()?,
    })
}

/// Bytes of `owner`'s live files plus holds not lapsed at `now` (in milliseconds).
fn used_by(conn: &Connection, owner: &str, now: i64) -> anyhow::Result<u64> {
    let files: i64 = conn
        .prepare_cached("SELECT COALESCE(SUM(size), 0) FROM files WHERE owner_id = ?1 AND purged_at IS NULL")?
        .query_row([owner], |row| row.get(0))?;
    let held: i64 = conn
        .prepare_cached("SELECT COALESCE(SUM(bytes), 0) FROM quota_holds WHERE owner_id = ?1 AND expires_at > ?2")?
        .query_row(params![owner, now], |row| row.get(0))?;
    Ok(to_u64(files)?.saturating_add(to_u64(held)?))
}

#[async_trait]
impl FileCatalog for SqliteStore {
    async fn insert(&self, file: &StoredFile) -> anyhow::Result<()> {
        let file = file.clone();
        self.run(move |conn| {
            conn.execute(
                "INSERT INTO files
                     (id, room_id, owner_id, name, size, content_type, kind, expires_at, created_at, purged_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    id_text(file.meta.id.as_uuid()),
                    id_text(file.room_id.as_uuid()),
                    id_text(file.owner.as_uuid()),
                    file.meta.name.as_str(),
                    to_i64(file.meta.size)?,
                    file.meta.content_type,
                    file.meta.kind.as_str(),
                    millis(file.meta.expires_at),
                    millis(file.created_at),
                    file.purged_at.map(millis),
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn get(&self, id: FileId) -> anyhow::Result<Option<StoredFile>> {
        self.run(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, room_id, owner_id, name, size, content_type, kind, expires_at, created_at, purged_at
                 FROM files WHERE id = ?1",
            )?;
            let mut rows = stmt.query([id_text(id.as_uuid())])?;
            rows.next()?.map(file_from_row).transpose()
        })
        .await
    }

    async fn usage_of(&self, user: UserId) -> anyhow::Result<u64> {
        self.run(move |conn| {
            let mut stmt = conn
                .prepare_cached("SELECT COALESCE(SUM(size), 0) FROM files WHERE owner_id = ?1 AND purged_at IS NULL")?;
            let total: i64 = stmt.query_row([id_text(user.as_uuid())], |row| row.get(0))?;
            to_u64(total)
        })
        .await
    }

    async fn reserve(&self, hold: QuotaHold, wanted: u64, quota: u64, now: Timestamp) -> anyhow::Result<u64> {
        self.run(move |conn| {
            // IMMEDIATE takes the write lock before the sums are read, so no other writer, in this
            // process or another, can grant between this read and this grant.
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let owner = id_text(hold.owner.as_uuid());
            let now = millis(now);
            tx.execute("DELETE FROM quota_holds WHERE expires_at <= ?1", [now])?;
            let granted = wanted.min(quota.saturating_sub(used_by(&tx, &owner, now)?));
            if granted > 0 {
                tx.execute(
                    "INSERT INTO quota_holds (id, owner_id, bytes, expires_at) VALUES (?1, ?2, ?3, ?4)",
                    params![id_text(hold.id.as_uuid()), owner, to_i64(granted)?, millis(hold.expires_at)],
                )?;
            }
            tx.commit()?;
            Ok(granted)
        })
        .await
    }

    async fn release(&self, hold: QuotaHold) -> anyhow::Result<()> {
        self.run(move |conn| {
            conn.execute(
                "DELETE FROM quota_holds WHERE id = ?1 AND owner_id = ?2",
                params![id_text(hold.id.as_uuid()), id_text(hold.owner.as_uuid())],
            )?;
            Ok(())
        })
        .await
    }

    async fn attach(&self, id: FileId, expires_at: Timestamp, now: Timestamp) -> anyhow::Result<bool> {
        self.run(move |conn| {
            let changed = conn.execute(
                "UPDATE files SET expires_at = ?2 WHERE id = ?1 AND purged_at IS NULL AND expires_at > ?3",
                params![id_text(id.as_uuid()), millis(expires_at), millis(now)],
            )?;
            Ok(changed > 0)
        })
        .await
    }

    async fn expire(&self, id: FileId, now: Timestamp) -> anyhow::Result<bool> {
        self.run(move |conn| {
            let expired = conn.execute(
                "UPDATE files SET expires_at = ?2 WHERE id = ?1 AND purged_at IS NULL AND expires_at > ?2",
                params![id_text(id.as_uuid()), millis(now)],
            )?;
            Ok(expired > 0)
        })
        .await
    }

    async fn expire_room(&self, room: RoomId, now: Timestamp) -> anyhow::Result<u64> {
        self.run(move |conn| {
            let expired = conn.execute(
                "UPDATE files SET expires_at = ?2 WHERE room_id = ?1 AND purged_at IS NULL AND expires_at > ?2",
                params![id_text(room.as_uuid()), millis(now)],
            )?;
            Ok(expired as u64)
        })
        .await
    }

    async fn expired(&self, now: Timestamp, limit: u32) -> anyhow::Result<Vec<FileId>> {
        self.run(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id FROM files WHERE purged_at IS NULL AND expires_at <= ?1 ORDER BY expires_at, id LIMIT ?2",
            )?;
            let mut rows = stmt.query(params![millis(now), limit])?;
            let mut ids = Vec::new();
            while let Some(row) = rows.next()? {
                ids.push(parse_id(&row.get::<_, String>(0)?)?);
            }
            Ok(ids)
        })
        .await
    }

    async fn mark_purged(&self, id: FileId, at: Timestamp) -> anyhow::Result<()> {
        self.run(move |conn| {
            // Only the first purge counts, so a retried one leaves the tombstone as it was.
            conn.execute(
                "UPDATE files SET purged_at = ?2 WHERE id = ?1 AND purged_at IS NULL",
                params![id_text(id.as_uuid()), millis(at)],
            )?;
            Ok(())
        })
        .await
    }

    async fn delete_purged_before(&self, cutoff: Timestamp, limit: u32) -> anyhow::Result<u64> {
        self.run(move |conn| delete_oldest_before(conn, "files", "purged_at", cutoff, limit)).await
    }

    async fn delete(&self, id: FileId) -> anyhow::Result<()> {
        self.run(move |conn| {
            conn.execute("DELETE FROM files WHERE id = ?1", [id_text(id.as_uuid())])?;
            Ok(())
        })
        .await
    }
}
