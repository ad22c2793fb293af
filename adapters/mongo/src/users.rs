//! `UserRepository` on MongoDB: usernames are unique regardless of case through a lowercased key.

use anyhow::Context;
use application::ports::{CreateUserError, StoredUser, UserRepository, UserSettings};
use async_trait::async_trait;
use bson::doc;
use futures::TryStreamExt;
use mongodb::Collection;
use serde::{Deserialize, Serialize};

use crate::codec::{date, id_text, is_duplicate_key, parse_id, timestamp};
use crate::schema::USERS;
use crate::MongoStore;
use domain::{User, UserId, Username};

#[derive(Serialize, Deserialize)]
struct UserDoc {
    #[serde(rename = "_id")]
    id: String,
    /// The spelling the user chose, returned as stored.
    username: String,
    /// What the unique index is on: names that differ only in case must collide.
    username_key: String,
    password_hash: String,
    created_at: bson::DateTime,
    /// Absent until the user first changes their settings: the default then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    send_read_receipts: Option<bool>,
}

fn username_key(username: &Username) -> String {
    username.as_str().to_lowercase()
}

impl UserDoc {
    fn of(stored: &StoredUser) -> Self {
        Self {
            id: id_text(stored.user.id.as_uuid()),
            username: stored.user.username.as_str().to_owned(),
            username_key: username_key(&stored.user.username),
            password_hash: stored.password_hash.clone(),
            created_at: date(stored.user.created_at),
            send_read_receipts: None,
        }
    }

    fn into_stored(self) -> anyhow::Result<StoredUser> {
        let user = User {
            id: parse_id(&self.id)?,
            username: Username::new(&self.username)
                .with_context(|| format!("user {} has an invalid username {:?}", self.id, self.username))?,
            created_at: timestamp(self.created_at),
        };
        Ok(StoredUser { user, password_hash: self.password_hash })
    }
}

impl MongoStore {
    fn users(&self) -> Collection<UserDoc> {
        self.db().collection(USERS)
    }
}

/// The most ids one `$in` query names.
const IN_CHUNK: usize = 50;

#[async_trait]
impl UserRepository for MongoStore {
    async fn create(&self, user: &StoredUser) -> Result<(), CreateUserError> {
        match self.users().insert_one(UserDoc::of(user)).await {
            Ok(_) => Ok(()),
            Err(e) if is_duplicate_key(&e) => Err(CreateUserError::Duplicate),
            Err(e) => Err(anyhow::Error::new(e).context("inserting a user").into()),
        }
    }

    async fn by_username(&self, username: &Username) -> anyhow::Result<Option<StoredUser>> {
        let found = self.users().find_one(doc! { "username_key": username_key(username) }).await?;
        found.map(UserDoc::into_stored).transpose()
    }

    async fn by_id(&self, id: UserId) -> anyhow::Result<Option<User>> {
        let found = self.users().find_one(doc! { "_id": id_text(id.as_uuid()) }).await?;
        Ok(found.map(UserDoc::into_stored).transpose()?.map(|stored| stored.user))
    }

    async fn by_ids(&self, ids: &[UserId]) -> anyhow::Result<Vec<User>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut users = Vec::with_capacity(ids.len());
        // SecantusDB matches `$in` in time quadratic in the list: a room of 1000 members took
        // half a second in one query, a twentieth in chunks. MongoDB does not mind either way.
        for chunk in ids.chunks(IN_CHUNK) {
            let chunk: Vec<String> = chunk.iter().map(|id| id_text(id.as_uuid())).collect();
            let docs: Vec<UserDoc> = self.users().find(doc! { "_id": { "$in": chunk } }).await?.try_collect().await?;
            for doc in docs {
                users.push(doc.into_stored()?.user);
            }
        }
        Ok(users)
    }

    async fn settings(&self, id: UserId) -> anyhow::Result<UserSettings> {
        let found = self
            .users()
            .clone_with_type::<bson::Document>()
            .find_one(doc! { "_id": id_text(id.as_uuid()) })
            .projection(doc! { "send_read_receipts": 1 })
            .await?;
        let defaults = UserSettings::default();
        let receipts = found.and_then(|d| d.get_bool("send_read_receipts").ok());
        Ok(UserSettings { send_read_receipts: receipts.unwrap_or(defaults.send_read_receipts) })
    }

    async fn update_settings(&self, id: UserId, settings: &UserSettings) -> anyhow::Result<bool> {
        let updated = self
            .users()
            .update_one(
                doc! { "_id": id_text(id.as_uuid()) },
                doc! { "$set": { "send_read_receipts": settings.send_read_receipts } },
            )
            .await?;
        Ok(updated.matched_count > 0)
    }
}
