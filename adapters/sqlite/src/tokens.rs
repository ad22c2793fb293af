//! `RefreshTokenStore` on SQLite: single-use tokens with reuse detection and session revocation.

use application::ports::{Consumed, RefreshRecord, RefreshTokenStore, Revocation, SessionId, TokenHash};
use async_trait::async_trait;
use domain::Timestamp;
use rusqlite::{params, Row};

use crate::codec::{id_text, millis, parse_id, timestamp};
use crate::SqliteStore;

fn record_from_row(hash: TokenHash, row: &Row<'_>) -> anyhow::Result<RefreshRecord> {
    let user_id: String = row.get("user_id")?;
    let session: String = row.get("session_id")?;
    Ok(RefreshRecord {
        hash,
        user_id: parse_id(&user_id)?,
        session: SessionId(parse_id(&session)?),
        created_at: timestamp(row.get("created_at")?)?,
        expires_at: timestamp(row.get("expires_at")?)?,
    })
}

#[async_trait]
impl RefreshTokenStore for SqliteStore {
    async fn insert(&self, record: &RefreshRecord) -> anyhow::Result<()> {
        let record = record.clone();
        self.run(move |conn| {
            conn.execute(
                "INSERT INTO refresh_tokens (hash, user_id, session_id, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    record.hash.0,
                    id_text(record.user_id.as_uuid()),
                    id_text(record.session.0),
                    millis(record.created_at),
                    millis(record.expires_at),
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn consume(&self, hash: &TokenHash) -> anyhow::Result<Consumed> {
        let hash = hash.clone();
        // The port has no clock; `used_at` is bookkeeping for operators, not part of any decision.
        let now = chrono::Utc::now().timestamp_millis();
        self.run(move |conn| {
            // Claiming and reading in one statement is what makes exactly one caller see `Fresh`,
            // whatever else shares the database file.
            let mut claim = conn.prepare_cached(
                "UPDATE refresh_tokens SET used_at = ?1
                 WHERE hash = ?2 AND used_at IS NULL
                   AND NOT EXISTS (SELECT 1 FROM revoked_sessions r WHERE r.session_id = refresh_tokens.session_id)
                 RETURNING user_id, session_id, created_at, expires_at",
            )?;
            let mut claimed = claim.query(params![now, hash.0])?;
            if let Some(row) = claimed.next()? {
                return Ok(Consumed::Fresh(record_from_row(hash, row)?));
            }
            drop(claimed);
            // Nothing was claimable, so the token is unknown, used or revoked. Neither of the last two
            // ever becomes claimable again, so this second look only tells them apart.
            let mut look = conn.prepare_cached(
                "SELECT user_id, session_id, created_at, expires_at,
                        EXISTS (SELECT 1 FROM revoked_sessions r WHERE r.session_id = t.session_id) AS revoked
                 FROM refresh_tokens t WHERE t.hash = ?1",
            )?;
            let mut rows = look.query([hash.0.as_str()])?;
            let Some(row) = rows.next()? else {
                return Ok(Consumed::Invalid);
            };
            if row.get::<_, bool>("revoked")? {
                return Ok(Consumed::Invalid);
            }
            Ok(Consumed::Reused(record_from_row(hash, row)?))
        })
        .await
    }

    async fn revoke_session(&self, revocation: &Revocation) -> anyhow::Result<()> {
        let revocation = *revocation;
        self.run(move |conn| {
            conn.execute(
                "INSERT INTO revoked_sessions (session_id, revoked_at, expires_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (session_id) DO NOTHING",
                params![id_text(revocation.session.0), millis(revocation.revoked_at), millis(revocation.expires_at)],
            )?;
            Ok(())
        })
        .await
    }

    async fn revoked_since(&self, since: Timestamp) -> anyhow::Result<Vec<Revocation>> {
        self.run(move |conn| {
            let mut query = conn.prepare_cached(
                "SELECT session_id, revoked_at, expires_at FROM revoked_sessions
                 WHERE revoked_at >= ?1 ORDER BY revoked_at",
            )?;
            let rows = query.query_map([millis(since)], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
            })?;
            rows.map(|row| {
                let (session, revoked_at, expires_at) = row?;
                Ok(Revocation {
                    session: SessionId(parse_id(&session)?),
                    revoked_at: timestamp(revoked_at)?,
                    expires_at: timestamp(expires_at)?,
                })
            })
            .collect()
        })
        .await
    }

    async fn purge_expired(&self, now: Timestamp) -> anyhow::Result<u64> {
        self.run(move |conn| {
            let tx = conn.transaction()?;
            let tokens = tx.execute("DELETE FROM refresh_tokens WHERE expires_at <= ?1", [millis(now)])?;
            let revocations = tx.execute("DELETE FROM revoked_sessions WHERE expires_at <= ?1", [millis(now)])?;
            tx.commit()?;
            Ok((tokens + revocations) as u64)
        })
        .await
    }
}
