//! Ports: the traits the use cases need from storage, security, messaging infrastructure and time.

use async_trait::async_trait;
use domain::{
    ClientMsgId, DirectPair, FileId, FileMeta, Message, MessageBody, MessageId, Password, ReadMarker, Room, RoomId,
    SearchQuery, Sender, Seq, Timestamp, User, UserId, Username,
};
use futures::future::BoxFuture;
use futures::stream::BoxStream;

#[cfg(any(test, feature = "mocks"))]
use mockall::automock;

/// A user together with the credential only the accounts use case may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredUser {
    pub user: User,
    pub password_hash: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateUserError {
    #[error("username is already taken")]
    Duplicate,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

#[cfg_attr(any(test, feature = "mocks"), automock)]
#[async_trait]
pub trait UserRepository: Send + Sync + 'static {
    /// Stores a new user.
    ///
    /// # Errors
    /// MUST return `Duplicate` when a user with the same username exists (the check is atomic with
    /// the insert, e.g. a unique index); `Unknown` for any other failure.
    async fn create(&self, user: &StoredUser) -> Result<(), CreateUserError>;

    /// # Errors
    /// Only storage failures; an unknown username is `Ok(None)`.
    async fn by_username(&self, username: &Username) -> anyhow::Result<Option<StoredUser>>;

    /// # Errors
    /// Only storage failures; an unknown id is `Ok(None)`.
    async fn by_id(&self, id: UserId) -> anyhow::Result<Option<User>>;

    /// The users among `ids` that exist, in any order.
    ///
    /// # Errors
    /// Only storage failures; unknown ids are simply absent from the result.
    async fn by_ids(&self, ids: &[UserId]) -> anyhow::Result<Vec<User>>;

    /// The user's settings; the defaults for a user who never changed them.
    ///
    /// # Errors
    /// Only storage failures; an unknown user has the defaults.
    async fn settings(&self, id: UserId) -> anyhow::Result<UserSettings>;

    /// Replaces the user's settings; true when the user exists.
    ///
    /// # Errors
    /// Only storage failures.
    async fn update_settings(&self, id: UserId, settings: &UserSettings) -> anyhow::Result<bool>;
}

/// What a user chose about how the service treats them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserSettings {
    /// Whether the other members of a room are told how far this user has read it.
    pub send_read_receipts: bool,
}

impl Default for UserSettings {
    fn default() -> Self {
        Self { send_read_receipts: true }
    }
}

/// Identifies one login session: the family of refresh tokens that descend from one login.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId(pub uuid::Uuid);

/// A refresh token is stored only as this hash, never in the clear.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenHash(pub String);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshRecord {
    pub hash: TokenHash,
    pub user_id: UserId,
    pub session: SessionId,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// What consuming a refresh token found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Consumed {
    /// The token was live and is now used; this answer is given at most once per token.
    Fresh(RefreshRecord),
    /// The token had already been used: a sign that it was stolen.
    Reused(RefreshRecord),
    /// Never issued, or its session was revoked.
    Invalid,
}

#[cfg_attr(any(test, feature = "mocks"), automock)]
#[async_trait]
pub trait RefreshTokenStore: Send + Sync + 'static {
    /// # Errors
    /// Only storage failures.
    async fn insert(&self, record: &RefreshRecord) -> anyhow::Result<()>;

    /// Marks the token used and says what it was.
    ///
    /// # Errors
    /// Only storage failures. MUST be atomic: of concurrent calls with the same hash, exactly one
    /// gets `Fresh`; the others get `Reused`. A token of a revoked session is `Invalid`.
    async fn consume(&self, hash: &TokenHash) -> anyhow::Result<Consumed>;

    /// Revokes every token of the session, used or not, including tokens inserted into it later,
    /// until `revocation.expires_at`. Revoking a session twice keeps the first record.
    ///
    /// # Errors
    /// Only storage failures; revoking an unknown session succeeds.
    async fn revoke_session(&self, revocation: &Revocation) -> anyhow::Result<()>;

    /// Sessions revoked at or after `since`, oldest first: what a node's cache must know of.
    ///
    /// # Errors
    /// Only storage failures.
    async fn revoked_since(&self, since: Timestamp) -> anyhow::Result<Vec<Revocation>>;

    /// Deletes refresh tokens and revocations whose `expires_at` is at or before `now`; returns
    /// how many went. A token never outlives its revocation, so no revoked token comes back.
    ///
    /// # Errors
    /// Only storage failures.
    async fn purge_expired(&self, now: Timestamp) -> anyhow::Result<u64>;
}

/// A revoked session: its access tokens are refused on every node from `revoked_at` on, and
/// its refresh tokens until `expires_at`, after which every one of them has expired anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revocation {
    pub session: SessionId,
    pub revoked_at: Timestamp,
    pub expires_at: Timestamp,
}

/// Why a password could not be hashed or checked.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Every hashing slot is taken and the waiting queue is full: retry in a moment.
    #[error("the server is busy checking passwords; retry in a moment")]
    Busy,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

#[cfg_attr(any(test, feature = "mocks"), automock)]
#[async_trait]
pub trait PasswordHasher: Send + Sync + 'static {
    /// Hashes a password that passed the policy. Runs off the async runtime, on threads of its
    /// own, and MUST bound both its concurrency and its memory whatever the number of callers.
    ///
    /// # Errors
    /// `Busy` when the waiting queue is full; otherwise only hashing failures.
    async fn hash(&self, password: &Password) -> Result<String, HashError>;

    /// Checks `candidate` against `hash`. With `None`, does the work of a check anyway and
    /// returns false, so an unknown user costs as much time as a wrong password.
    ///
    /// # Errors
    /// `Busy` as for `hash`; a malformed stored hash is an error, a mismatch is `Ok(false)`.
    async fn verify(&self, candidate: &str, hash: Option<String>) -> Result<bool, HashError>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessClaims {
    pub user_id: UserId,
    pub session: SessionId,
    pub expires_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedAccess {
    pub token: String,
    pub expires_in_secs: u64,
    pub expires_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the access token has expired")]
    Expired,
    #[error("the access token is invalid: {0}")]
    Invalid(String),
}

#[cfg_attr(any(test, feature = "mocks"), automock)]
pub trait TokenService: Send + Sync + 'static {
    /// # Errors
    /// Only signing failures.
    fn issue_access(&self, user: UserId, session: SessionId, now: Timestamp) -> anyhow::Result<IssuedAccess>;

    /// # Errors
    /// MUST return `Expired` for a well-signed token past its `exp`, and `Invalid` for anything
    /// else that fails: signature, algorithm, issuer, audience, missing claims, not yet valid.
    fn verify_access(&self, token: &str) -> Result<AccessClaims, TokenError>;

    /// A new opaque refresh token and the hash to store for it.
    fn new_refresh(&self) -> (secrecy::SecretString, TokenHash);

    /// The hash under which `token` would have been stored.
    fn hash_refresh(&self, token: &str) -> TokenHash;

    /// How long a refresh token lives.
    fn refresh_ttl(&self) -> chrono::Duration;

    /// How long an access token lives: how long a revoked session's tokens must be refused.
    fn access_ttl(&self) -> chrono::Duration;
}

#[derive(Debug, thiserror::Error)]
pub enum UpdateRoomError {
    #[error("the room changed since it was read")]
    Conflict,
    #[error("the room no longer exists")]
    NotFound,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum MemberAddError {
    #[error("the room no longer exists")]
    NotFound,
    #[error("the user is already a member")]
    AlreadyMember,
    #[error("the room is full ({0} members)")]
    Full(u32),
    /// A direct room never takes anyone in.
    #[error("the room is a direct conversation")]
    Direct,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum MemberRemoveError {
    #[error("the room no longer exists")]
    NotFound,
    #[error("the user is not a member")]
    NotMember,
    /// The owner leaves through `update`, which hands the room on.
    #[error("the user owns the room")]
    Owner,
    /// A direct room never lets anyone out.
    #[error("the room is a direct conversation")]
    Direct,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum InsertDirectError {
    #[error("the two users already have a direct room")]
    Duplicate,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum MarkReadError {
    /// Not a member (or no such room): a marker belongs to a membership.
    #[error("the user is not a member of the room")]
    NotMember,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

/// Where a member's read marker stands after a `mark_read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarkedRead {
    pub marker: ReadMarker,
    /// False when the marker already stood there or further: nothing was written.
    pub moved: bool,
}

/// Keyset pagination over rooms ordered by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomPage {
    pub after: Option<RoomId>,
    pub limit: u32,
}

#[cfg_attr(any(test, feature = "mocks"), automock)]
#[async_trait]
pub trait RoomRepository: Send + Sync + 'static {
    /// # Errors
    /// Only storage failures.
    async fn insert(&self, room: &Room) -> anyhow::Result<()>;

    /// # Errors
    /// Only storage failures; an unknown id is `Ok(None)`.
    async fn get(&self, id: RoomId) -> anyhow::Result<Option<Room>>;

    /// Replaces the stored room (owner and members) and bumps its version. Costs a write per
    /// member: for changes of owner; one member comes and goes through `add_member` and
    /// `remove_member`.
    ///
    /// # Errors
    /// MUST return `Conflict` when the stored version differs from `room.version()` (someone else
    /// changed it first) and `NotFound` when the room is gone; nothing is written in either case.
    async fn update(&self, room: &Room) -> Result<(), UpdateRoomError>;

    /// Adds `user` as a plain member who joined at `joined_at`, and bumps the room's version, so
    /// an `update` made from a copy read before is a `Conflict` and cannot undo it.
    ///
    /// # Errors
    /// MUST be atomic against every other change of the room's members, on every node: however
    /// many run in parallel, the room never holds more members than its limit. MUST return
    /// `NotFound` when the room is gone, `Direct` when it is a direct room, `AlreadyMember` when
    /// `user` is a member, and `Full` with the limit when the room holds that many; nothing is
    /// written then. `Unknown` for storage failures.
    async fn add_member(&self, room: RoomId, user: UserId, joined_at: Timestamp) -> Result<(), MemberAddError>;

    /// Removes `user`, who is not the owner, and bumps the room's version.
    ///
    /// # Errors
    /// MUST be atomic as `add_member` is, and MUST return `NotFound` when the room is gone,
    /// `Direct` when it is a direct room, `NotMember` when `user` is not a member and `Owner` when
    /// `user` owns the room; nothing is written then. `Unknown` for storage failures.
    async fn remove_member(&self, room: RoomId, user: UserId) -> Result<(), MemberRemoveError>;

    /// How many members the room has, its owner included.
    ///
    /// # Errors
    /// Only storage failures; an unknown room has 0.
    async fn count_members(&self, room: RoomId) -> anyhow::Result<u32>;

    /// Deletes the room and its memberships; true when it existed. MUST remember the deleted
    /// room until `content_cleared`, so its messages and files can be deleted later even after
    /// a crash.
    ///
    /// # Errors
    /// Only storage failures.
    async fn delete(&self, id: RoomId) -> anyhow::Result<bool>;

    /// Up to `limit` deleted rooms whose content is still to be cleared, oldest deletion first.
    ///
    /// # Errors
    /// Only storage failures.
    async fn deleted_rooms(&self, limit: u32) -> anyhow::Result<Vec<RoomId>>;

    /// The deleted room's messages and files are gone: forget it.
    ///
    /// # Errors
    /// Only storage failures; forgetting an unknown room succeeds.
    async fn content_cleared(&self, id: RoomId) -> anyhow::Result<()>;

    /// The rooms `user` belongs to, ordered by id, after the page's cursor.
    ///
    /// # Errors
    /// Only storage failures.
    async fn list_for_member(&self, user: UserId, page: RoomPage) -> anyhow::Result<Vec<Room>>;

    /// Public rooms ordered by id, after the page's cursor.
    ///
    /// # Errors
    /// Only storage failures.
    async fn list_public(&self, page: RoomPage) -> anyhow::Result<Vec<Room>>;

    /// Every room id `user` belongs to, for subscribing a live connection.
    ///
    /// # Errors
    /// Only storage failures.
    async fn room_ids_for_member(&self, user: UserId) -> anyhow::Result<Vec<RoomId>>;

    /// # Errors
    /// Only storage failures; an unknown room is `Ok(false)`.
    async fn is_member(&self, room: RoomId, user: UserId) -> anyhow::Result<bool>;

    /// Stores a new direct room (`room.direct_pair()` is `Some`) with its two memberships.
    ///
    /// # Errors
    /// MUST return `Duplicate` when a direct room of the same pair is stored, whichever of the two
    /// opened it, and store nothing then; the check MUST be atomic with the insert (a unique key
    /// on the pair), so of concurrent inserts for one pair exactly one succeeds.
    async fn insert_direct(&self, room: &Room) -> Result<(), InsertDirectError>;

    /// The direct room of `pair`, if one is stored.
    ///
    /// # Errors
    /// Only storage failures.
    async fn find_direct(&self, pair: DirectPair) -> anyhow::Result<Option<Room>>;

    /// Moves `user`'s read marker in `room` to `marker`, unless it already stands there or
    /// further: an atomic max, so of concurrent calls the highest wins whatever their order.
    /// A marker starts at 0 when a membership begins, survives `update`, and goes with it.
    ///
    /// # Errors
    /// MUST return `NotMember` when `user` is not a member of `room` (or the room is gone),
    /// writing nothing.
    async fn mark_read(&self, room: RoomId, user: UserId, marker: ReadMarker) -> Result<MarkedRead, MarkReadError>;

    /// `user`'s read marker in each of `rooms` they belong to, in any order; rooms they do not
    /// belong to are absent. One store query whatever the number of rooms.
    ///
    /// # Errors
    /// Only storage failures.
    async fn read_markers(&self, user: UserId, rooms: &[RoomId]) -> anyhow::Result<Vec<(RoomId, ReadMarker)>>;
}

/// A message before the log gives it its sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub id: MessageId,
    pub room_id: RoomId,
    pub sender: Sender,
    pub body: MessageBody,
    pub sent_at: Timestamp,
}

/// Makes a resend of the same client message id by the same user a no-op.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DedupeKey {
    pub user: UserId,
    pub client_msg_id: ClientMsgId,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    Created(Message),
    /// The key was seen before; this is the message it created then.
    Duplicate(Message),
}

/// Which messages of a room a fetch may return: exclusive bounds on seq, and the retention cutoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SeqRange {
    pub after: Option<Seq>,
    pub before: Option<Seq>,
    /// Only messages sent at or after this instant: older ones have expired, even while a purge
    /// has not deleted them yet. A bound of the fetch itself, not a filter of its answer, so a
    /// page taken from a room whose oldest messages expired is still full.
    pub not_before: Option<Timestamp>,
    /// Only text, image and file messages (deleted ones too, as tombstones), not the change
    /// entries: what history shows. A bound of the fetch, as `not_before` is. Without it every
    /// entry comes, as `sync` replays them.
    pub content_only: bool,
}

impl SeqRange {
    /// Whether `seq` lies between the seq bounds.
    pub fn contains(&self, seq: Seq) -> bool {
        self.after.is_none_or(|a| seq > a) && self.before.is_none_or(|b| seq < b)
    }

    /// Whether a fetch of this range may return `message` (its room aside).
    pub fn admits(&self, message: &Message) -> bool {
        self.contains(message.seq)
            && self.not_before.is_none_or(|t| message.sent_at >= t)
            && (!self.content_only || message.body.kind().is_content())
    }

    /// Exactly the one entry with seq `seq`.
    pub fn only(seq: Seq) -> Self {
        Self { after: Seq::new(seq.get() - 1), before: Some(seq.next()), ..Self::default() }
    }
}

/// Which end of a range to read from. Results are always in ascending seq.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    Oldest(usize),
    Newest(usize),
}

/// What the room list asks the log of one room: how much is unread past `read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TailQuery {
    pub room: RoomId,
    pub read: ReadMarker,
}

/// What the log knows of the end of one room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomTail {
    pub room: RoomId,
    /// The highest seq given out.
    pub last_seq: Option<Seq>,
    /// The log holds every message of the room from this seq on (up to `last_seq`); older ones
    /// are only in the archive. `Some(Seq::FIRST)` when it holds them all, as a log that is the
    /// archive does, for a room without messages too; `None` when it may hold none of them.
    pub holds_from: Option<Seq>,
    /// The newest message the log holds, sent at or after `not_before`.
    pub newest: Option<Message>,
    /// How many messages the log holds past the marker, at most the cap asked for.
    pub unread: u64,
}

/// A search of the archive: every word in the text, in one of `rooms`, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageSearch {
    pub query: SearchQuery,
    /// Only these rooms: the caller's, never empty.
    pub rooms: Vec<RoomId>,
    /// Only messages sent at or after this instant: older ones expired.
    pub not_before: Option<Timestamp>,
    /// Only messages whose id is lower: the last id of the previous page.
    pub before: Option<MessageId>,
    pub limit: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveSearchError {
    /// The store cannot search text (no full-text index on this server); never a scan instead.
    #[error("the message store has no full-text index")]
    Unavailable,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

/// A message handed to an archiver, with the receipt that acknowledges it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    pub receipt: String,
    pub message: Message,
}

#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The log lost its data (e.g. Redis restarted without it), so it no longer knows which seqs
    /// it gave out. Nothing was stored.
    #[error("the message log lost its seq counters; they must be recovered from the archive")]
    CountersLost,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

#[cfg_attr(any(test, feature = "mocks"), automock)]
#[async_trait]
pub trait MessageLog: Send + Sync + 'static {
    /// Gives the message the room's next seq and stores it in the hot cache and the archive
    /// queue, all or nothing. A change entry (`MessageBody::Change`) is stored the same way, and
    /// in the same step applied (`Message::apply`) to its target in the hot cache when the target
    /// is there, so that a fetch never returns the target without a change it returns.
    ///
    /// # Errors
    /// With a `dedupe` key seen before, MUST store nothing and return `Duplicate` with the original
    /// message. A log that can lose its counters MUST return `CountersLost`, storing nothing, from
    /// the moment it lost them until `counters_recovered` is called, so a seq is never given twice;
    /// the caller raises every room's counter from the archive, calls `counters_recovered`, and
    /// appends again. `Unknown` for storage failures.
    async fn append(&self, message: NewMessage, dedupe: Option<DedupeKey>) -> Result<Appended, AppendError>;

    /// Says that every room's counter has been raised from the archive, so appends may go on.
    ///
    /// # Errors
    /// Only storage failures.
    async fn counters_recovered(&self) -> anyhow::Result<()>;

    /// Cached messages of `room` within `range`, ascending by seq: the oldest or newest that
    /// `take` asks for among those `range` admits. Each message as its cached changes left it.
    ///
    /// MUST apply every bound of `range`, `not_before` included, before `take` counts: with
    /// messages sent before `not_before` at the start of the room, `Take::Oldest(n)` still
    /// returns the first `n` messages sent at or after it, so a page is never cut short by
    /// messages it may not return.
    ///
    /// # Errors
    /// Only storage failures.
    async fn fetch(&self, room: RoomId, range: SeqRange, take: Take) -> anyhow::Result<Vec<Message>>;

    /// The highest seq given out in `room`, if any.
    ///
    /// # Errors
    /// Only storage failures.
    async fn last_seq(&self, room: RoomId) -> anyhow::Result<Option<Seq>>;

    /// Drops what the log keeps of a deleted room (hot cache, counters); entries still queued
    /// for the archive stay queued.
    ///
    /// # Errors
    /// Only storage failures; forgetting an unknown room succeeds.
    async fn forget_room(&self, room: RoomId) -> anyhow::Result<()>;

    /// Makes the room's next seq greater than `seq` (after a restart lost the counters).
    ///
    /// # Errors
    /// Only storage failures.
    async fn raise_seq(&self, room: RoomId, seq: Seq) -> anyhow::Result<()>;

    /// Up to `max` queued messages not yet archived, for `consumer`. Its own unacknowledged
    /// entries come first, then entries abandoned by others, then new ones. Each room's come in
    /// append order; different rooms' may interleave in any order (a log may queue them apart).
    ///
    /// # Errors
    /// Only storage failures.
    async fn claim_batch(&self, consumer: &str, max: usize) -> anyhow::Result<Vec<Queued>>;

    /// Marks messages archived; only then may they leave the queue and be trimmed from the cache.
    ///
    /// # Errors
    /// Only storage failures; unknown receipts are ignored.
    async fn ack(&self, receipts: &[String]) -> anyhow::Result<()>;

    /// When the oldest message not yet archived was appended, for the archive-lag metric.
    ///
    /// # Errors
    /// Only storage failures; an empty queue is `Ok(None)`.
    async fn oldest_unarchived(&self) -> anyhow::Result<Option<Timestamp>>;

    /// How many messages were set aside because archiving them kept failing (the dead letters).
    ///
    /// # Errors
    /// Only storage failures; a log that never sets messages aside answers 0.
    async fn dead_lettered(&self) -> anyhow::Result<u64>;

    /// The end of each room in `rooms`, in the same order: for the room list, without a round
    /// trip per room (one query, or one pipelined round trip).
    ///
    /// `unread` counts the messages the log holds past each marker, up to `cap`; `newest` and
    /// `unread` leave out messages sent before `not_before` where the log can tell them apart
    /// cheaply (a log that cannot MUST say so in its docs; `newest` never breaks this).
    ///
    /// # Errors
    /// Only storage failures.
    async fn tails(
        &self,
        rooms: &[TailQuery],
        not_before: Option<Timestamp>,
        cap: u64,
    ) -> anyhow::Result<Vec<RoomTail>>;
}

#[cfg_attr(any(test, feature = "mocks"), automock)]
#[async_trait]
pub trait MessageArchive: Send + Sync + 'static {
    /// Stores the messages; ones whose id is already stored are skipped. Returns how many were new.
    ///
    /// A change entry is stored like any other, and applied (`Message::apply`) to its target
    /// when the archive holds it, whether the entry is new or was stored before (a crash may
    /// have come between the two). A message stored after changes to it were archived gets them
    /// applied as it is stored. So the archive shows each message with every archived change
    /// to it, whatever order, batches and repeats the entries came in.
    ///
    /// # Errors
    /// Only storage failures. MUST be idempotent: a retried batch stores nothing twice, and
    /// applies nothing twice.
    async fn insert_batch(&self, messages: &[Message]) -> anyhow::Result<u64>;

    /// Applies the change entry `change` (`MessageBody::Change`) to its target, when the archive
    /// holds the target, without storing the entry itself; true when the target changed. The use
    /// case calls it right after appending a change, so that history reading an archived target
    /// shows the change at once rather than once the entry is archived.
    ///
    /// # Errors
    /// Only storage failures. MUST be idempotent and atomic against every other change of the
    /// same target, on every node: `insert_batch` applies the entry again later, changing
    /// nothing.
    async fn apply_change(&self, change: &Message) -> anyhow::Result<bool>;

    /// Archived messages of `room` within `range`, ascending by seq: the oldest or newest that
    /// `take` asks for among those `range` admits.
    ///
    /// MUST apply every bound of `range`, `not_before` included, in the query itself, before
    /// `take` counts: expired messages the purge has not deleted yet never take the place of
    /// live ones in the answer.
    ///
    /// # Errors
    /// Only storage failures.
    async fn fetch(&self, room: RoomId, range: SeqRange, take: Take) -> anyhow::Result<Vec<Message>>;

    /// The highest archived seq of every room.
    ///
    /// # Errors
    /// Only storage failures.
    async fn last_seqs(&self) -> anyhow::Result<Vec<(RoomId, Seq)>>;

    /// Deletes up to `limit` messages sent before `cutoff`; returns how many.
    ///
    /// # Errors
    /// Only storage failures.
    async fn delete_sent_before(&self, cutoff: Timestamp, limit: u32) -> anyhow::Result<u64>;

    /// Deletes up to `limit` messages of `room`; returns how many. MUST touch no other room.
    ///
    /// # Errors
    /// Only storage failures.
    async fn delete_room(&self, room: RoomId, limit: u32) -> anyhow::Result<u64>;

    /// For each `(room, range)`, in the same order, how many archived messages of the room the
    /// range admits (`not_before` included), at most `cap`. Each room at most once. One query for
    /// all of them, never one per room.
    ///
    /// # Errors
    /// Only storage failures.
    async fn count_in(&self, ranges: &[(RoomId, SeqRange)], cap: u64) -> anyhow::Result<Vec<u64>>;

    /// For each `(room, range)`, in the same order, the newest archived message of the room the
    /// range admits (`not_before` included). Each room at most once. One query for all of them.
    ///
    /// # Errors
    /// Only storage failures.
    async fn newest_in(&self, ranges: &[(RoomId, SeqRange)]) -> anyhow::Result<Vec<Option<Message>>>;

    /// Archived messages of `search.rooms` whose text holds every word of the query, newest
    /// first, at most `search.limit`: by id (UUIDv7, creation time), or in the order the store
    /// took them in where that is how it keeps them (the embedded log commits in append order),
    /// with `search.before` ending a page at the cursor message. MUST use the store's full-text index, not a
    /// scan, and MUST apply every bound of `search` in the query itself.
    ///
    /// # Errors
    /// `Unavailable` when the store has no full-text index to use (a server that does not
    /// support one); only storage failures otherwise.
    async fn search(&self, search: &MessageSearch) -> Result<Vec<Message>, ArchiveSearchError>;
}

/// A stream of byte chunks, for uploads and downloads that are never held whole in memory.
pub type ByteStream = BoxStream<'static, std::io::Result<Vec<u8>>>;

#[derive(Debug, thiserror::Error)]
pub enum PutFileError {
    #[error("the file is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

#[cfg_attr(any(test, feature = "mocks"), automock)]
#[async_trait]
pub trait FileStore: Send + Sync + 'static {
    /// Streams `data` into storage under `id`; returns the size written.
    ///
    /// # Errors
    /// MUST return `TooLarge` as soon as more than `max_bytes` arrive, leaving nothing stored.
    async fn put(&self, id: FileId, data: ByteStream, max_bytes: u64) -> Result<u64, PutFileError>;

    /// The stored bytes from `offset` on, or `None` when nothing is stored under `id`.
    ///
    /// # Errors
    /// Only storage failures.
    async fn open(&self, id: FileId, offset: u64) -> anyhow::Result<Option<ByteStream>>;

    /// # Errors
    /// Only storage failures; deleting a missing file succeeds.
    async fn delete(&self, id: FileId) -> anyhow::Result<()>;
}

/// Catalog entry for stored bytes: what they are, whose, and in which room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    pub meta: FileMeta,
    pub room_id: RoomId,
    pub owner: UserId,
    pub created_at: Timestamp,
    /// Set once the purge deleted the bytes. The entry stays as a tombstone while messages may
    /// still point at the file, so they keep its metadata and a download answers 410, not 404.
    pub purged_at: Option<Timestamp>,
}

/// Part of a user's quota held while one upload streams, before its size is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaHold {
    /// The upload's file id: one hold per upload.
    pub id: FileId,
    pub owner: UserId,
    /// The hold lapses then, so an upload that never ends (a crash, a lost client) does not keep
    /// its bytes from the quota forever.
    pub expires_at: Timestamp,
}

#[cfg_attr(any(test, feature = "mocks"), automock)]
#[async_trait]
pub trait FileCatalog: Send + Sync + 'static {
    /// # Errors
    /// Only storage failures.
    async fn insert(&self, file: &StoredFile) -> anyhow::Result<()>;

    /// The entry of `id`, live or purged.
    ///
    /// # Errors
    /// Only storage failures; an unknown id is `Ok(None)`. MUST return a purged entry, with its
    /// `purged_at`, until `delete_purged_before` or `delete` removes it.
    async fn get(&self, id: FileId) -> anyhow::Result<Option<StoredFile>>;

    /// Bytes stored by `user` in files not yet purged.
    ///
    /// # Errors
    /// Only storage failures. MUST NOT count purged entries: their bytes no longer use the quota.
    async fn usage_of(&self, user: UserId) -> anyhow::Result<u64>;

    /// Holds up to `wanted` bytes of `hold.owner`'s `quota` for an upload in progress, and returns
    /// how many it holds: `wanted`, or what is left of the quota when that is less, or 0.
    ///
    /// # Errors
    /// Only storage failures. MUST be atomic against every other `reserve` of the same owner, on
    /// every node: the owner's live files plus the holds not lapsed at `now` never exceed `quota`
    /// through a grant, however many run in parallel. A hold whose `expires_at` is at or before
    /// `now` counts for nothing, so a crash mid-upload frees its bytes on its own. MUST hold
    /// nothing when it grants 0.
    async fn reserve(&self, hold: QuotaHold, wanted: u64, quota: u64, now: Timestamp) -> anyhow::Result<u64>;

    /// Lets go of a hold: its upload is catalogued, or failed.
    ///
    /// # Errors
    /// Only storage failures; releasing an unknown or lapsed hold succeeds.
    async fn release(&self, hold: QuotaHold) -> anyhow::Result<()>;

    /// Gives a live file (not purged, expiring after `now`) the expiry `expires_at`, as when a
    /// message starts referring to it; true when it was live. MUST leave a purged or expired file
    /// as it is.
    ///
    /// # Errors
    /// Only storage failures.
    async fn attach(&self, id: FileId, expires_at: Timestamp, now: Timestamp) -> anyhow::Result<bool>;

    /// Makes the file expire at `now`, if it is live, so the purge deletes its bytes and
    /// downloads answer `Gone`, as when the message that shared it is deleted; true when it was
    /// live. MUST leave a purged or already expired file as it is.
    ///
    /// # Errors
    /// Only storage failures.
    async fn expire(&self, id: FileId, now: Timestamp) -> anyhow::Result<bool>;

    /// Makes every live file of `room` expire at `now`, so the purge deletes its bytes and
    /// downloads answer `Gone`; returns how many. MUST touch no other room.
    ///
    /// # Errors
    /// Only storage failures.
    async fn expire_room(&self, room: RoomId, now: Timestamp) -> anyhow::Result<u64>;

    /// Up to `limit` files not yet purged whose expiry is at or before `now`.
    ///
    /// # Errors
    /// Only storage failures. MUST skip purged entries, or the purge would visit them forever.
    async fn expired(&self, now: Timestamp, limit: u32) -> anyhow::Result<Vec<FileId>>;

    /// Marks the entry purged at `at`: its bytes are gone, its metadata stays as a tombstone.
    ///
    /// # Errors
    /// Only storage failures. Marking an unknown id succeeds and stores nothing; marking an entry
    /// that is already purged keeps its first `purged_at`, so a retried purge changes nothing.
    async fn mark_purged(&self, id: FileId, at: Timestamp) -> anyhow::Result<()>;

    /// Deletes up to `limit` entries purged strictly before `cutoff`; returns how many.
    ///
    /// # Errors
    /// Only storage failures. MUST NOT delete an entry that is not purged, whatever its expiry.
    async fn delete_purged_before(&self, cutoff: Timestamp, limit: u32) -> anyhow::Result<u64>;

    /// Removes the entry for good, purged or not; for an upload that is discarded.
    ///
    /// # Errors
    /// Only storage failures; deleting an unknown id succeeds.
    async fn delete(&self, id: FileId) -> anyhow::Result<()>;
}

/// Who did something, as live clients render it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSummary {
    pub id: UserId,
    pub username: Username,
}

impl From<&User> for UserSummary {
    fn from(user: &User) -> Self {
        Self { id: user.id, username: user.username.clone() }
    }
}

/// Why a session's live connections are closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEndReason {
    LoggedOut,
    /// A used refresh token was presented again: the session was stolen or replayed.
    TokenReused,
}

impl SessionEndReason {
    /// The snake_case name clients see in the close reason and nodes send each other.
    pub fn code(self) -> &'static str {
        match self {
            Self::LoggedOut => "logged_out",
            Self::TokenReused => "token_reused",
        }
    }

    /// The reason `code` names, if any.
    pub fn from_code(code: &str) -> Option<Self> {
        [Self::LoggedOut, Self::TokenReused].into_iter().find(|reason| reason.code() == code)
    }
}

/// What live connections on every node hear about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomEvent {
    Message(Message),
    MemberJoined {
        room_id: RoomId,
        user: UserSummary,
    },
    MemberLeft {
        room_id: RoomId,
        user: UserSummary,
    },
    RoomDeleted {
        room_id: RoomId,
    },
    /// A member's read marker moved forward; only for users who send read receipts.
    Read {
        room_id: RoomId,
        user: UserSummary,
        seq: Seq,
    },
    Typing {
        room_id: RoomId,
        user: UserSummary,
    },
    Presence {
        user_id: UserId,
        online: bool,
        rooms: Vec<RoomId>,
    },
    /// One session of the user ended; its sockets close, the user's other devices stay.
    SessionEnded {
        user_id: UserId,
        session: SessionId,
        reason: SessionEndReason,
    },
}

/// Who a copy of an event is for, which decides where a distributed bus carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Audience {
    /// The sockets in one room: only subscriptions that follow the room hear it, so a node's
    /// event work grows with its own sockets' rooms.
    Room(RoomId),
    /// Every subscription on every node: the few events that node-wide caches follow
    /// (membership, sessions) or that concern a user's sockets wherever they are.
    Everyone,
}

impl RoomEvent {
    /// The copies of this event a bus carries, each with who it is for. The one place routing is
    /// decided: a new variant picks its audience here. Presence, which names several rooms,
    /// becomes one copy per room naming only that room, so each room's copies stay in order.
    pub fn addressed(self) -> Vec<(Audience, RoomEvent)> {
        match self {
            Self::Message(ref message) => vec![(Audience::Room(message.room_id), self)],
            Self::Typing { room_id, .. } | Self::Read { room_id, .. } => vec![(Audience::Room(room_id), self)],
            Self::Presence { user_id, online, rooms } => {
                let mut seen = std::collections::HashSet::new();
                rooms
                    .into_iter()
                    .filter(|r| seen.insert(*r))
                    .map(|r| (Audience::Room(r), Self::Presence { user_id, online, rooms: vec![r] }))
                    .collect()
            }
            // The joined user's sockets may be on nodes that do not follow the room yet; the
            // membership cache must hear every removal; sessions end wherever their sockets are.
            Self::MemberJoined { .. }
            | Self::MemberLeft { .. }
            | Self::RoomDeleted { .. }
            | Self::SessionEnded { .. } => {
                vec![(Audience::Everyone, self)]
            }
        }
    }
}

/// Who is online, across every socket node: each node says which of its users came online or
/// went, and anyone can ask which of some users are online anywhere.
#[cfg_attr(any(test, feature = "mocks"), automock)]
#[async_trait]
pub trait PresenceRegistry: Send + Sync + 'static {
    /// `user` has a socket on this node now. Returns true when they were online on no node before.
    ///
    /// # Errors
    /// Only storage failures.
    async fn came_online(&self, user: UserId) -> anyhow::Result<bool>;

    /// `user`'s last socket on this node closed. Returns true when they are online on no node now.
    ///
    /// # Errors
    /// Only storage failures.
    async fn went_offline(&self, user: UserId) -> anyhow::Result<bool>;

    /// This node still holds sockets of `users`. A node that stops saying so (it crashed) MUST
    /// stop counting for them within a bounded time, documented by the adapter.
    ///
    /// # Errors
    /// Only storage failures.
    async fn still_online(&self, users: &[UserId]) -> anyhow::Result<()>;

    /// Those of `users` online on at least one node, in the order given.
    ///
    /// # Errors
    /// Only storage failures.
    async fn online_among(&self, users: &[UserId]) -> anyhow::Result<Vec<UserId>>;
}

/// What a bus subscription yields.
// Boxing the event would cost an allocation per delivered event to save bytes only on the rare
// `Gap`; deliveries are moved one at a time through a stream, never stored in bulk.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Event(RoomEvent),
    /// Events may have been lost just before this: whatever a subscriber derived from them
    /// (who follows which room, which sessions are revoked) must be read again from the stores.
    Gap,
}

/// One subscription to the bus: the events it hears, and the rooms it follows.
pub struct Subscription {
    /// Events for `Audience::Everyone`, and those of the rooms followed, as they come.
    pub events: BoxStream<'static, Delivery>,
    /// Which rooms' events `events` lets through; starts with none.
    pub rooms: std::sync::Arc<dyn FollowedRooms>,
}

/// The rooms one subscription follows: a set, changed in the order of the calls.
#[cfg_attr(any(test, feature = "mocks"), automock)]
pub trait FollowedRooms: Send + Sync + 'static {
    /// Follows `room` (again: a no-op) from this call on. The returned future resolves once the
    /// bus hears the room: every event of it published after that reaches the subscription, as
    /// long as it still follows the room. Dropping the future does not undo the follow.
    ///
    /// # Errors
    /// When the room was unfollowed before the bus heard it, or the bus is gone. While the
    /// transport is down the future waits for it, so a caller bounds the wait.
    fn follow(&self, room: RoomId) -> BoxFuture<'static, anyhow::Result<()>>;

    /// Stops letting `room`'s events through, from this call on.
    fn unfollow(&self, room: RoomId);
}

#[cfg_attr(any(test, feature = "mocks"), automock)]
#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// Delivers each copy of `event.addressed()` to every current subscription on every node
    /// that it is for, at most once each: `Everyone` copies to all, a room's copies to those
    /// that follow the room.
    ///
    /// # Errors
    /// Only transport failures.
    async fn publish(&self, event: RoomEvent) -> anyhow::Result<()>;

    /// Events published from now on, on any node, for `Everyone` or for a room the subscription
    /// follows while it follows it (see `FollowedRooms`). A distributed bus MUST carry a room's
    /// events only to nodes where some subscription follows it. Where events may have been lost
    /// (a subscriber that fell behind, a reconnect), it MUST yield `Delivery::Gap` before the
    /// events that follow, and by then be hearing every room still followed again.
    ///
    /// # Errors
    /// Only transport failures.
    async fn subscribe(&self) -> anyhow::Result<Subscription>;
}

#[cfg_attr(any(test, feature = "mocks"), automock)]
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

#[cfg_attr(any(test, feature = "mocks"), automock)]
pub trait IdGenerator: Send + Sync + 'static {
    /// A new time-ordered id (UUIDv7).
    fn new_id(&self) -> uuid::Uuid;
}

/// Reports whether an adapter can serve, for readiness checks.
#[cfg_attr(any(test, feature = "mocks"), automock)]
#[async_trait]
pub trait HealthCheck: Send + Sync + 'static {
    /// A short name for the adapter, e.g. `sqlite`.
    fn name(&self) -> &'static str;

    /// # Errors
    /// When the adapter cannot currently serve.
    async fn check(&self) -> anyhow::Result<()>;
}
