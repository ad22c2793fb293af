//! The app under test: the real routes and use cases over mocks of every port, plus test data.

use std::sync::Arc;

use application::files::FileLimits;
use application::ports::{
    AccessClaims, MemberAddError, MemberRemoveError, MockClock, MockEventBus, MockFileCatalog, MockFileStore,
    MockHealthCheck, MockIdGenerator, MockMessageArchive, MockMessageLog, MockPasswordHasher, MockPresenceRegistry,
    MockRefreshTokenStore, MockRoomRepository, MockTokenService, MockUserRepository, RoomTail, SessionId,
};
use application::{Accounts, Files, Messaging, Presence, Rooms, Search};
use chrono::{Duration, TimeZone, Utc};
use domain::{
    MemberLimit, Message, MessageBody, MessageId, MessageText, RetentionPolicy, Room, RoomError, RoomId, RoomName,
    Sender, Seq, Timestamp, User, UserId, Username, Visibility,
};
use poem::endpoint::BoxEndpoint;
use poem::http::{HeaderMap, StatusCode};
use poem::test::{TestClient, TestRequestBuilder};
use poem::Response;
use serde_json::Value;
use uuid::Uuid;

use crate::limiter::{LimiterConfig, LoginLimiter};
use crate::state::AppState;
use crate::ws::{SocketApp, WsConfig};
use crate::{app, HttpConfig, InternalFiles};
use application::metrics::Metrics;

/// Cause text a failing port reports; it must never reach a response body.
pub const SECRET_CAUSE: &str = "disk I/O error at /var/lib/chat/chat.db";

/// The id every generated id is, so tests can predict it.
pub const GENERATED: Uuid = Uuid::from_u128(0x1d_0001);

/// The instant every test runs at.
pub fn now() -> Timestamp {
    Utc.timestamp_opt(1_700_000_000, 0).single().expect("a valid instant")
}

pub fn user(n: u128, name: &str) -> User {
    User {
        id: UserId::from_uuid(Uuid::from_u128(n)),
        username: Username::new(name).expect("a valid username"),
        created_at: now() - Duration::days(1),
    }
}

pub fn ada() -> User {
    user(1, "ada")
}

pub fn grace() -> User {
    user(2, "grace")
}

pub fn eve() -> User {
    user(3, "eve")
}

pub fn room_id(n: u128) -> RoomId {
    RoomId::from_uuid(Uuid::from_u128(0x100 + n))
}

/// A room owned by `owner` whose other members joined a minute apart, in the order given.
pub fn room(id: RoomId, visibility: Visibility, owner: &User, others: &[&User]) -> Room {
    room_with_limit(id, visibility, owner, others, MemberLimit::DEFAULT)
}

pub fn room_with_limit(id: RoomId, visibility: Visibility, owner: &User, others: &[&User], limit: MemberLimit) -> Room {
    let name = RoomName::new("general").expect("a valid room name");
    let mut room = Room::create(id, name, visibility, owner.id, limit, now() - Duration::days(2));
    for (minutes, member) in (0i64..).zip(others) {
        room.add_member(member.id, now() - Duration::days(1) + Duration::minutes(minutes)).expect("within its limit");
    }
    room
}

/// Text message `seq` of `room`, sent by ada.
pub fn message(room: RoomId, seq: u64) -> Message {
    let sender = ada();
    Message {
        id: MessageId::from_uuid(Uuid::from_u128(0x5e_0000 + u128::from(seq))),
        room_id: room,
        seq: Seq::new(seq).expect("seqs start at 1"),
        sender: Sender { id: sender.id, username: sender.username },
        body: MessageBody::Text(MessageText::new(&format!("message {seq}")).expect("valid text")),
        sent_at: now() - Duration::minutes(100) + Duration::minutes(i64::try_from(seq).expect("small seq")),
        state: Default::default(),
    }
}

/// Every port as a mock; set expectations, then `client()` wires them into the real app.
pub struct Ports {
    pub users: MockUserRepository,
    pub refresh: MockRefreshTokenStore,
    pub hasher: MockPasswordHasher,
    pub tokens: MockTokenService,
    pub rooms: MockRoomRepository,
    pub log: MockMessageLog,
    pub archive: MockMessageArchive,
    pub bus: MockEventBus,
    pub presence: MockPresenceRegistry,
    pub file_store: MockFileStore,
    pub catalog: MockFileCatalog,
    pub health: Vec<MockHealthCheck>,
    pub member_limit: MemberLimit,
    pub limiter: Arc<LoginLimiter>,
}

impl Default for Ports {
    fn default() -> Self {
        Self {
            users: MockUserRepository::new(),
            refresh: MockRefreshTokenStore::new(),
            hasher: MockPasswordHasher::new(),
            tokens: MockTokenService::new(),
            rooms: MockRoomRepository::new(),
            log: MockMessageLog::new(),
            archive: MockMessageArchive::new(),
            bus: MockEventBus::new(),
            presence: MockPresenceRegistry::new(),
            file_store: MockFileStore::new(),
            catalog: MockFileCatalog::new(),
            health: Vec::new(),
            member_limit: MemberLimit::DEFAULT,
            limiter: Arc::new(LoginLimiter::new(LimiterConfig::default())),
        }
    }
}

impl Ports {
    /// Lets `user`'s token through: the token service vouches for it and the user exists.
    /// Returns the `Authorization` header value to send.
    pub fn sign_in(&mut self, user: &User) -> String {
        let token = format!("token-of-{}", user.username);
        let claims = claims_of(user);
        let expected = token.clone();
        self.tokens.expect_verify_access().withf(move |t| t == expected).returning(move |_| Ok(claims.clone()));
        self.user_exists(user);
        format!("Bearer {token}")
    }

    /// Lookups of `user` by id find them, however often they are made.
    pub fn user_exists(&mut self, user: &User) {
        let (id, found) = (user.id, user.clone());
        self.users.expect_by_id().withf(move |asked| *asked == id).returning(move |_| Ok(Some(found.clone())));
    }

    /// `room` is stored, and reading it finds it, however often.
    /// `room` in a store that keeps one member change at a time, as the real ones do: reads see
    /// the members added and removed since. A test that wants one of these calls to fail sets
    /// its own expectation first (mockall takes the first that matches).
    pub fn room_stored(&mut self, room: &Room) {
        let id = room.id();
        let stored = Arc::new(parking_lot::Mutex::new(room.clone()));
        let read = stored.clone();
        self.rooms.expect_get().withf(move |asked| *asked == id).returning(move |_| Ok(Some(read.lock().clone())));
        let read = stored.clone();
        self.rooms
            .expect_is_member()
            .withf(move |asked, _| *asked == id)
            .returning(move |_, u| Ok(read.lock().is_member(u)));
        let added = stored.clone();
        self.rooms.expect_add_member().withf(move |asked, _, _| *asked == id).returning(move |_, user, at| {
            added.lock().add_member(user, at).map_err(|e| match e {
                RoomError::Full(limit) => MemberAddError::Full(limit),
                RoomError::Direct => MemberAddError::Direct,
                _ => MemberAddError::AlreadyMember,
            })
        });
        self.rooms.expect_remove_member().withf(move |asked, _| *asked == id).returning(move |_, user| {
            let mut room = stored.lock();
            if room.is_direct() {
                return Err(MemberRemoveError::Direct);
            }
            if !room.is_member(user) {
                return Err(MemberRemoveError::NotMember);
            }
            room.remove_member(user).map_err(|_| MemberRemoveError::Owner)
        });
    }

    /// What the API needs to show rooms: member names for any ids, and no messages yet.
    pub fn room_details_known(&mut self, users: &[User]) {
        let known = users.to_vec();
        self.users
            .expect_by_ids()
            .returning(move |ids| Ok(known.iter().filter(|u| ids.contains(&u.id)).cloned().collect()));
        self.log.expect_last_seq().returning(|_| Ok(None));
        // The room list: no markers, no messages.
        self.rooms.expect_read_markers().returning(|_, _| Ok(Vec::new()));
        self.log.expect_tails().returning(|queries, _, _| {
            Ok(queries
                .iter()
                .map(|q| RoomTail { room: q.room, last_seq: None, holds_from: None, newest: None, unread: 0 })
                .collect())
        });
    }

    pub fn client(self) -> TestClient<BoxEndpoint<'static, Response>> {
        let mut clock = MockClock::new();
        clock.expect_now().returning(now);
        let mut ids = MockIdGenerator::new();
        ids.expect_new_id().returning(|| GENERATED);
        let clock: Arc<MockClock> = Arc::new(clock);
        let ids: Arc<MockIdGenerator> = Arc::new(ids);
        let users = Arc::new(self.users);
        let rooms = Arc::new(self.rooms);
        let log = Arc::new(self.log);
        let bus = Arc::new(self.bus);
        let file_store = Arc::new(self.file_store);
        let retention = RetentionPolicy::new(Duration::days(30), Duration::days(14), Duration::days(28))
            .expect("a valid retention policy");
        let accounts = Accounts::new(
            users.clone(),
            Arc::new(self.refresh),
            Arc::new(self.hasher),
            Arc::new(self.tokens),
            bus.clone(),
            clock.clone(),
            ids.clone(),
        );
        let room_uses =
            Rooms::new(rooms.clone(), users, log.clone(), bus.clone(), clock.clone(), ids.clone(), self.member_limit);
        let files = Files::new(
            file_store.clone(),
            Arc::new(self.catalog),
            rooms.clone(),
            clock.clone(),
            ids.clone(),
            FileLimits::default(),
            retention,
        );
        let presence = Presence::new(rooms.clone(), Arc::new(self.presence), bus.clone());
        let archive = Arc::new(self.archive);
        let search = Search::new(rooms.clone(), archive.clone(), clock.clone());
        let messaging = Messaging::new(rooms, log, archive, bus.clone(), files.clone(), clock, ids);
        let health = self.health.into_iter().map(|h| Arc::new(h) as Arc<dyn application::ports::HealthCheck>).collect();
        let state = AppState {
            accounts,
            rooms: room_uses,
            messaging,
            presence,
            files,
            search,
            health: Arc::new(health),
            limiter: self.limiter,
            metrics: Arc::new(Metrics::default()),
            metrics_token: None,
        };
        let internal_files = InternalFiles { store: file_store, token: None };
        TestClient::new(app(state, SocketApp::new(WsConfig::default()), internal_files, &HttpConfig::default()))
    }
}

pub fn claims_of(user: &User) -> AccessClaims {
    AccessClaims {
        user_id: user.id,
        session: SessionId(Uuid::from_u128(0x5e55_0000 + user.id.as_uuid().as_u128())),
        expires_at: now() + Duration::minutes(15),
    }
}

/// A whole answer: status, headers, and the body as JSON (a JSON string when it is not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the uniform error shape with this status and code, and returns the message.
    pub fn assert_error(&self, status: StatusCode, code: &str) -> &str {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(self.body["code"], code, "{self:?}");
        let message = self.body["message"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "{self:?}");
        message
    }

    /// Asserts a 500 whose body says nothing of the cause.
    pub fn assert_generic_500(&self) {
        self.assert_error(StatusCode::INTERNAL_SERVER_ERROR, "internal");
        let text = self.body.to_string();
        assert!(!text.contains("disk") && !text.contains("chat.db"), "the cause leaked: {text}");
    }
}

pub async fn send(request: TestRequestBuilder<'_, BoxEndpoint<'static, Response>>) -> Reply {
    let resp = request.send().await.0;
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.into_body().into_string().await.expect("a UTF-8 body");
    let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
    Reply { status, headers, body }
}

/// A storage failure with a cause that must stay in the logs.
pub fn failure() -> anyhow::Error {
    anyhow::anyhow!(SECRET_CAUSE)
}
