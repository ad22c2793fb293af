//! `UserRepository` on SQLite: usernames are unique regardless of case through a lowercased key.

use anyhow::Context;
use application::ports::{CreateUserError, StoredUser, UserRepository, UserSettings};
use async_trait::async_trait;
use domain::{User, UserId, Username};
use rusqlite::{params, ErrorCode, OptionalExtension, Row};

use crate::codec::{id_text, json_id_list, millis, parse_id, timestamp};
use crate::SqliteStore;

/// The column the unique index is on: names that differ only in case must collide.
fn username_key(username: &Username) -> String {
    username.as_str().to_lowercase()
}

fn is_unique_violation(error: &rusqlite::Error) -> bool {
    matches!(
        error,
        rusqlite::Error::SqliteFailure(e, _)
            if e.code == ErrorCode::ConstraintViolation && e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
    )
}

fn user_from_row(row: &Row<'_>) -> anyhow::Result<User> {
    let id: String = row.get("id")?;
    let username: String = row.get("username")?;
    Ok(User {
        id: parse_id(&id)?,
        username: Username::new(&username).with_context(|| format!("stored username {username:?} is invalid"))?,
        created_at: timestamp(row.get("created_at")?)?,
    })
}

#[async_trait]
impl UserRepository for SqliteStore {
    async fn create(&self, user: &StoredUser) -> Result<(), CreateUserError> {
        let user = user.clone();
        self.run(move |conn| {
            conn.execute(
                "INSERT INTO users (id, username, username_key, password_hash, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    id_text(user.user.id.as_uuid()),
                    user.user.username.as_str(),
                    username_key(&user.user.username),
                    user.password_hash,
                    millis(user.user.created_at),
                ],
            )
            .map(drop)
            .map_err(|e| {
                if is_unique_violation(&e) {
                    CreateUserError::Duplicate
                } else {
                    anyhow::Error::new(e).into()
                }
            })
        })
        .await
    }

    async fn by_username(&self, username: &Username) -> anyhow::Result<Option<StoredUser>> {
        let key = username_key(username);
        self.run(move |conn| {
            let mut stmt = conn
                .prepare_cached("SELECT id, username, password_hash, created_at FROM users WHERE username_key = ?1")?;
            let mut rows = stmt.query([key])?;
            rows.next()?
                .map(|row| Ok(StoredUser { user: user_from_row(row)?, password_hash: row.get("password_hash")? }))
                .transpose()
        })
        .await
    }

    async fn by_id(&self, id: UserId) -> anyhow::Result<Option<User>> {
        self.run(move |conn| {
            let mut stmt = conn.prepare_cached("SELECT id, username, created_at FROM users WHERE id = ?1")?;
            let mut rows = stmt.query([id_text(id.as_uuid())])?;
            rows.next()?.map(user_from_row).transpose()
        })
        .await
    }

    async fn by_ids(&self, ids: &[UserId]) -> anyhow::Result<Vec<User>> {
        let list = json_id_list(ids.iter().map(UserId::as_uuid));
        self.run(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, username, created_at FROM users WHERE id IN (SELECT value FROM json_each(?1))",
            )?;
            let mut rows = stmt.query([list])?;
            let mut users = Vec::new();
            while let Some(row) = rows.next()? {
                users.push(user_from_row(row)?);
            }
            Ok(users)
        })
        .await
    }

    async fn settings(&self, id: UserId) -> anyhow::Result<UserSettings> {
        self.run(move |conn| {
            let receipts: Option<bool> = conn
                .prepare_cached("SELECT send_read_receipts FROM users WHERE id = ?1")?
                .query_row([id_text(id.as_uuid())], |row| row.get(0))
                .optional()?;
            Ok(receipts.map_or_else(UserSettings::default, |send_read_receipts| UserSettings { send_read_receipts }))
        })
        .await
    }

    async fn update_settings(&self, id: UserId, settings: &UserSettings) -> anyhow::Result<bool> {
        let settings = *settings;
        self.run(move |conn| {
            let updated = conn
                .prepare_cached("UPDATE users SET send_read_receipts = ?2 WHERE id = ?1")?
                .execute(params![id_text(id.as_uuid()), settings.send_read_receipts])?;
            Ok(updated > 0)
        })
        .await
    }
}
