//! The REST calls chat-bench needs: sign-up and login, rooms and members, history pages and `/metrics`.

use std::time::Duration;

use anyhow::Context;
use futures::{StreamExt, TryStreamExt};
use indicatif::ProgressBar;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// Every bench user's password: long enough and not on the common list.
pub const PASSWORD: &str = "correct horse battery staple";

/// Members a room may be created with in one call; the rest are invited one by one.
const CREATE_MEMBERS_MAX: usize = 50;

/// How often a call is retried after `429 Retry-After` or a connection error.
const ATTEMPTS: u32 = 5;

#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    metrics_base: String,
}

/// A signed-in bench user.
#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub username: String,
    pub token: String,
}

/// The answer to one request sent once, for callers that count 503s and 429s themselves.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    /// `Retry-After` in seconds, when the server sent it as a number.
    pub retry_after: Option<u64>,
    pub body: String,
}

impl Api {
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(base: &str, metrics_base: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .build()?;
        Ok(Self { http, base: base.to_owned(), metrics_base: metrics_base.to_owned() })
    }

    /// Sends a JSON request, retrying on `429` (after `Retry-After`) and on connection errors.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = self.http.request(method.clone(), format!("{}{path}", self.base));
            if let Some(token) = token {
                req = req.bearer_auth(token);
            }
            if let Some(body) = body {
                req = req.json(body);
            }
            match req.send().await {
                Ok(resp) if resp.status() == StatusCode::TOO_MANY_REQUESTS && attempt < ATTEMPTS => {
                    let wait = resp
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                        .unwrap_or(1);
                    tokio::time::sleep(Duration::from_secs(wait.min(30))).await;
                }
                Ok(resp) => {
                    let status = resp.status();
                    let text = resp.text().await?;
                    let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text)? };
                    return Ok((status, body));
                }
                Err(e) if attempt < ATTEMPTS && (e.is_connect() || e.is_timeout()) => {
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                }
                Err(e) => return Err(e).with_context(|| format!("{method} {path}")),
            }
        }
    }

    /// Registers `username` and logs in.
    ///
    /// # Errors
    /// When either call does not succeed, e.g. the name is taken.
    pub async fn signup(&self, username: &str) -> anyhow::Result<User> {
        let creds = json!({"username": username, "password": PASSWORD});
        let (status, user) = self.call(reqwest::Method::POST, "/auth/register", None, Some(&creds)).await?;
        anyhow::ensure!(status == StatusCode::CREATED, "register {username}: {status} {user}");
        Ok(User { id: str_field(&user, "id")?, username: username.to_owned(), token: self.login(username).await? })
    }

    /// Logs `username` in; returns a fresh access token.
    ///
    /// # Errors
    /// When the login does not succeed.
    pub async fn login(&self, username: &str) -> anyhow::Result<String> {
        let creds = json!({"username": username, "password": PASSWORD});
        let (status, tokens) = self.call(reqwest::Method::POST, "/auth/login", None, Some(&creds)).await?;
        anyhow::ensure!(status == StatusCode::OK, "login {username}: {status} {tokens}");
        str_field(&tokens, "access_token")
    }

    /// Sends `POST /auth/register` for `username` once: no retry, whatever the answer.
    ///
    /// # Errors
    /// When the request fails below HTTP.
    pub async fn register_once(&self, username: &str) -> anyhow::Result<Answer> {
        self.credentials_once("/auth/register", username).await
    }

    /// Sends `POST /auth/login` for `username` once: no retry, whatever the answer.
    ///
    /// # Errors
    /// When the request fails below HTTP.
    pub async fn login_once(&self, username: &str) -> anyhow::Result<Answer> {
        self.credentials_once("/auth/login", username).await
    }

    async fn credentials_once(&self, path: &str, username: &str) -> anyhow::Result<Answer> {
        let creds = json!({"username": username, "password": PASSWORD});
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&creds)
            .send()
            .await
            .with_context(|| format!("POST {path}"))?;
        let status = resp.status();
        let retry_after = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse().ok());
        let body = resp.text().await.with_context(|| format!("POST {path}: reading the answer"))?;
        Ok(Answer { status, retry_after, body })
    }

    /// Creates a private room owned by `owner` with the first members, then invites the rest.
    ///
    /// # Errors
    /// When the room cannot be created or a member cannot be added (e.g. `room_full`: raise
    /// `CHAT_ROOM_MEMBER_LIMIT` on the server).
    pub async fn create_room(
        &self,
        owner: &User,
        name: &str,
        members: &[&User],
        concurrency: usize,
    ) -> anyhow::Result<String> {
        let others: Vec<&str> = members.iter().filter(|m| m.id != owner.id).map(|m| m.id.as_str()).collect();
        let (first, rest) = others.split_at(others.len().min(CREATE_MEMBERS_MAX));
        let body = json!({"name": name, "visibility": "private", "member_ids": first});
        let (status, room) = self.call(reqwest::Method::POST, "/rooms", Some(&owner.token), Some(&body)).await?;
        anyhow::ensure!(status == StatusCode::CREATED, "create room: {status} {room}");
        let room_id = str_field(&room, "id")?;
        let path = format!("/rooms/{room_id}/members");
        let (path, room) = (path.as_str(), room_id.as_str());
        futures::stream::iter(rest.iter().map(|user_id| async move {
            let body = json!({"user_id": user_id});
            let (status, reply) = self.call(reqwest::Method::POST, path, Some(&owner.token), Some(&body)).await?;
            anyhow::ensure!(
                status.is_success() || reply["code"] == "already_member",
                "add member to {room}: {status} {reply} (is CHAT_ROOM_MEMBER_LIMIT high enough?)"
            );
            Ok(())
        }))
        .buffer_unordered(concurrency.max(1))
        .try_collect::<Vec<()>>()
        .await?;
        Ok(room_id)
    }

    /// One page of a room's history; the raw answer, for the caller to time and check.
    ///
    /// # Errors
    /// When the request fails below HTTP.
    pub async fn history(&self, token: &str, room_id: &str, query: &str) -> anyhow::Result<(StatusCode, Value)> {
        self.call(reqwest::Method::GET, &format!("/rooms/{room_id}/messages{query}"), Some(token), None).await
    }

    /// The value of an unlabelled metric of the node at `--metrics-url`.
    ///
    /// # Errors
    /// When `/metrics` cannot be read.
    pub async fn metric(&self, name: &str) -> anyhow::Result<Option<f64>> {
        let text = self.http.get(format!("{}/metrics", self.metrics_base)).send().await?.text().await?;
        Ok(text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok()))
    }

    /// Signs up `count` users named `b<run>u<i>`, `concurrency` at a time.
    ///
    /// # Errors
    /// The first sign-up that fails.
    pub async fn signup_many(
        &self,
        run_id: &str,
        count: usize,
        concurrency: usize,
        bar: &ProgressBar,
    ) -> anyhow::Result<Vec<User>> {
        futures::stream::iter(0..count)
            .map(|i| async move {
                let user = self.signup(&format!("b{run_id}u{i}")).await;
                bar.inc(1);
                user
            })
            .buffered(concurrency.max(1))
            .try_collect()
            .await
    }

    /// Creates one room per entry of `layout` (user indices, the first one owning the room).
    ///
    /// # Errors
    /// The first room that cannot be set up.
    pub async fn create_rooms(
        &self,
        users: &[User],
        layout: &[Vec<usize>],
        concurrency: usize,
        bar: &ProgressBar,
    ) -> anyhow::Result<Vec<String>> {
        // Invites to one room go one at a time: the server rewrites the whole room per change and
        // answers 500 after 8 optimistic-concurrency conflicts, which parallel invites cause.
        futures::stream::iter(layout.iter().enumerate())
            .map(|(r, members)| async move {
                let owner = members.first().and_then(|&i| users.get(i)).context("a room needs an owner")?;
                let member_users: Vec<&User> = members.iter().filter_map(|&i| users.get(i)).collect();
                let id = self.create_room(owner, &format!("bench {r}"), &member_users, 1).await;
                bar.inc(1);
                id
            })
            .buffered(concurrency.max(1))
            .try_collect()
            .await
    }
}

fn str_field(value: &Value, name: &str) -> anyhow::Result<String> {
    value[name].as_str().map(str::to_owned).with_context(|| format!("no {name} in {value}"))
}
