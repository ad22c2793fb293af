//! Shared test data: a fixed clock, sequential ids, a few users, rooms, messages and byte streams.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use domain::{
    MemberLimit, Message, MessageBody, MessageId, MessageText, Room, RoomId, RoomName, Sender, Seq, Timestamp, User,
    UserId, Username, Visibility,
};
use futures::StreamExt;
use uuid::Uuid;

use crate::ports::{ByteStream, MockClock, MockIdGenerator, UserSummary};

/// Generated ids start here, far from the hand-picked ids of users and rooms.
const GENERATED_BASE: u128 = 0x1d_0000;

/// The instant every test runs at.
pub fn now() -> Timestamp {
    Utc.timestamp_opt(1_700_000_000, 0).single().expect("a valid instant")
}

pub fn minutes(n: i64) -> Duration {
    Duration::minutes(n)
}

pub fn days(n: i64) -> Duration {
    Duration::days(n)
}

/// A clock that is read exactly `reads` times and always says `now()`.
pub fn fixed_clock(reads: usize) -> MockClock {
    let mut clock = MockClock::new();
    clock.expect_now().times(reads).returning(now);
    clock
}

/// An id generator asked exactly `count` times, answering `generated_id(1)`, `generated_id(2)`, ...
pub fn sequential_ids(count: usize) -> MockIdGenerator {
    let next = AtomicU64::new(1);
    let mut ids = MockIdGenerator::new();
    ids.expect_new_id().times(count).returning(move || generated_id(u128::from(next.fetch_add(1, Ordering::Relaxed))));
    ids
}

/// The `n`th id (from 1) that `sequential_ids` hands out.
pub fn generated_id(n: u128) -> Uuid {
    Uuid::from_u128(GENERATED_BASE + n)
}

pub fn user_id(n: u128) -> UserId {
    UserId::from_uuid(Uuid::from_u128(n))
}

pub fn room_id(n: u128) -> RoomId {
    RoomId::from_uuid(Uuid::from_u128(0x100 + n))
}

pub fn user(n: u128, name: &str) -> User {
    User { id: user_id(n), username: Username::new(name).expect("a valid username"), created_at: now() - days(1) }
}

pub fn alice() -> User {
    user(1, "alice")
}

pub fn bob() -> User {
    user(2, "bob")
}

pub fn carol() -> User {
    user(3, "carol")
}

pub fn dave() -> User {
    user(4, "dave")
}

pub fn summary(user: &User) -> UserSummary {
    UserSummary::from(user)
}

/// A room owned by `owner`, whose other members joined in the order given.
pub fn room(id: RoomId, visibility: Visibility, owner: &User, others: &[&User]) -> Room {
    room_with_limit(id, visibility, owner, others, MemberLimit::DEFAULT)
}

pub fn room_with_limit(id: RoomId, visibility: Visibility, owner: &User, others: &[&User], limit: MemberLimit) -> Room {
    let name = RoomName::new("general").expect("a valid room name");
    let mut room = Room::create(id, name, visibility, owner.id, limit, now() - days(2));
    for (i, member) in others.iter().enumerate() {
        let joined_at = now() - days(1) + minutes(i64::try_from(i).expect("few members"));
        room.add_member(member.id, joined_at).expect("room fixture within its limit");
    }
    room
}

/// The same room as storage returns it after one more successful update.
pub fn next_version(room: &Room) -> Room {
    Room::restore(
        room.id(),
        room.name().clone(),
        room.visibility(),
        room.kind(),
        room.owner(),
        room.members().to_vec(),
        room.member_limit(),
        room.created_at(),
        room.version() + 1,
    )
}

/// The member ids of `room`, sorted, for order-independent comparisons.
pub fn member_ids(room: &Room) -> Vec<UserId> {
    let mut ids: Vec<UserId> = room.members().iter().map(|m| m.user_id).collect();
    ids.sort();
    ids
}

pub fn seq(n: u64) -> Seq {
    Seq::new(n).expect("seqs start at 1")
}

/// The text message with sequence number `n` in `room`, sent by alice.
pub fn message(room: RoomId, n: u64) -> Message {
    let sender = alice();
    Message {
        id: MessageId::from_uuid(Uuid::from_u128(0x5e_0000 + u128::from(n))),
        room_id: room,
        seq: seq(n),
        sender: Sender { id: sender.id, username: sender.username },
        body: MessageBody::Text(MessageText::new(&format!("message {n}")).expect("valid text")),
        sent_at: now() - minutes(10) + minutes(i64::try_from(n).expect("small seq")),
        state: Default::default(),
    }
}

/// An upload or download delivered in the given chunks.
pub fn byte_stream(chunks: Vec<Vec<u8>>) -> ByteStream {
    futures::stream::iter(chunks.into_iter().map(Ok)).boxed()
}

/// Reads a whole byte stream; only for streams that never wait, such as `byte_stream`'s.
pub fn read_all(stream: ByteStream) -> std::io::Result<Vec<u8>> {
    futures::executor::block_on(async move {
        let mut stream = stream;
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            bytes.extend_from_slice(&chunk?);
        }
        Ok(bytes)
    })
}

/// Keeps what a mock received so the test can look at it afterwards.
pub type Recorded<T> = Arc<std::sync::Mutex<Vec<T>>>;

pub fn recorder<T>() -> Recorded<T> {
    Arc::new(std::sync::Mutex::new(Vec::new()))
}
