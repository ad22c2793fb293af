//! `RefreshTokenStore` on MongoDB: single-use tokens with reuse detection and session revocation.

use application::ports::{Consumed, RefreshRecord, RefreshTokenStore, Revocation, SessionId, TokenHash};
use async_trait::async_trait;
use bson::doc;
use domain::Timestamp;
use futures::TryStreamExt;
use mongodb::Collection;
use serde::{Deserialize, Serialize};

use crate::codec::{date, id_text, is_duplicate_key, parse_id, timestamp};
use crate::schema::{REFRESH_TOKENS, REVOKED_SESSIONS};
use crate::MongoStore;

#[derive(Serialize, Deserialize)]
struct TokenDoc {
    /// The token hash: looked up by it, and unique through it.
    #[serde(rename = "_id")]
    hash: String,
    user_id: String,
    session_id: String,
    created_at: bson::DateTime,
    expires_at: bson::DateTime,
    /// Null until the token is consumed; set once, by whichever consume claims it first.
    used_at: Option<bson::DateTime>,
}

impl TokenDoc {
    fn into_record(self) -> anyhow::Result<RefreshRecord> {
        Ok(RefreshRecord {
            user_id: parse_id(&self.user_id)?,
            session: SessionId(parse_id(&self.session_id)?),
            created_at: timestamp(self.created_at),
            expires_at: timestamp(self.expires_at),
            hash: TokenHash(self.hash),
        })
    }
}

#[derive(Serialize, Deserialize)]
struct RevocationDoc {
    /// The session id: one revocation per session.
    #[serde(rename = "_id")]
    session_id: String,
    revoked_at: bson::DateTime,
    /// Missing on revocations written before expiry existed; those are never purged.
    expires_at: Option<bson::DateTime>,
}

impl RevocationDoc {
    fn into_revocation(self) -> anyhow::Result<Revocation> {
        let revoked_at = timestamp(self.revoked_at);
        Ok(Revocation {
            session: SessionId(parse_id(&self.session_id)?),
            revoked_at,
            expires_at: self.expires_at.map_or(Timestamp::MAX_UTC, timestamp),
        })
    }
}

impl MongoStore {
    fn tokens(&self) -> Collection<TokenDoc> {
        self.db().collection(REFRESH_TOKENS)
    }

    fn revocations(&self) -> Collection<RevocationDoc> {
        self.db().collection(REVOKED_SESSIONS)
    }

    /// A revoked session stays revoked, and covers tokens inserted into it later too.
    async fn is_revoked(&self, session: SessionId) -> anyhow::Result<bool> {
        let found = self
            .db()
            .collection::<bson::Document>(REVOKED_SESSIONS)
            .find_one(doc! { "_id": id_text(session.0) })
            .projection(doc! { "_id": 1 })
            .await?;
        Ok(found.is_some())
    }
}

#[async_trait]
impl RefreshTokenStore for MongoStore {
    async fn insert(&self, record: &RefreshRecord) -> anyhow::Result<()> {
        let doc = TokenDoc {
            hash: record.hash.0.clone(),
            user_id: id_text(record.user_id.as_uuid()),
            session_id: id_text(record.session.0),
            created_at: date(record.created_at),
            expires_at: date(record.expires_at),
            used_at: None,
        };
        self.tokens().insert_one(doc).await?;
        Ok(())
    }

    async fn consume(&self, hash: &TokenHash) -> anyhow::Result<Consumed> {
        // The port has no clock; `used_at` is bookkeeping for operators, not part of any decision.
        let now = bson::DateTime::now();
        // One atomic update on one document: of concurrent consumes, exactly one matches `used_at: null`.
        let claimed = self
            .tokens()
            .find_one_and_update(doc! { "_id": &hash.0, "used_at": null }, doc! { "$set": { "used_at": now } })
            .await?;
        let (record, fresh) = match claimed {
            Some(doc) => (doc, true),
            // Nothing was claimable: the token is unknown, used, or was inserted just after the claim
            // looked (then this consume came first, when it did not exist yet).
            None => match self.tokens().find_one(doc! { "_id": &hash.0 }).await? {
                Some(doc) if doc.used_at.is_some() => (doc, false),
                _ => return Ok(Consumed::Invalid),
            },
        };
        let record = record.into_record()?;
        // Checked after the claim, so a revocation that finished before this check always wins. A
        // token of a revoked session may end up marked used, which nothing can observe: it is
        // `Invalid` from now on either way.
        if self.is_revoked(record.session).await? {
            return Ok(Consumed::Invalid);
        }
        Ok(if fresh { Consumed::Fresh(record) } else { Consumed::Reused(record) })
    }

    async fn revoke_session(&self, revocation: &Revocation) -> anyhow::Result<()> {
        let outcome = self
            .revocations()
            .update_one(
                doc! { "_id": id_text(revocation.session.0) },
                doc! { "$setOnInsert": {
                    "revoked_at": date(revocation.revoked_at),
                    "expires_at": date(revocation.expires_at),
                } },
            )
            .upsert(true)
            .await;
        match outcome {
            // Two revocations racing to insert the same session: the other one did it.
            Err(e) if is_duplicate_key(&e) => Ok(()),
            other => other.map(drop).map_err(Into::into),
        }
    }

    async fn revoked_since(&self, since: Timestamp) -> anyhow::Result<Vec<Revocation>> {
        let mut cursor = self
            .revocations()
            .find(doc! { "revoked_at": { "$gte": date(since) } })
            .sort(doc! { "revoked_at": 1 })
            .await?;
        let mut revocations = Vec::new();
        while let Some(doc) = cursor.try_next().await? {
            revocations.push(doc.into_revocation()?);
        }
        Ok(revocations)
    }

    async fn purge_expired(&self, now: Timestamp) -> anyhow::Result<u64> {
        // The TTL indexes do this too, within a minute or so; this makes the purge exact and
        // covers servers whose TTL monitor is off.
        let expired = doc! { "expires_at": { "$lte": date(now) } };
        let tokens = self.tokens().delete_many(expired.clone()).await?.deleted_count;
        let revocations = self.revocations().delete_many(expired).await?.deleted_count;
        Ok(tokens + revocations)
    }
}
