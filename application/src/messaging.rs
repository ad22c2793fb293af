//! Messaging use cases: send text and files, edit, delete and react, typing, history and
//! reconnect sync.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use domain::{
    Change, ChangeRefusal, ClientMsgId, Emoji, FileId, FileName, Message, MessageBody, MessageId, MessageText,
    RetentionPolicy, RoomId, Sender, Seq, Standing, User,
};

use crate::files::{AttachError, Files, Upload, UploadError};
use crate::membership::MembershipCache;
use crate::ports::{
    AppendError, Appended, ByteStream, Clock, DedupeKey, EventBus, IdGenerator, MessageArchive, MessageLog, NewMessage,
    RoomEvent, RoomRepository, SeqRange, Take,
};
use crate::rooms::PageSize;

/// The most messages one sync answer carries.
pub const SYNC_MAX: u32 = 1000;
/// The most messages one history page carries.
pub const HISTORY_MAX: u32 = 100;

#[derive(Debug, Clone)]
pub struct SendText {
    pub room_id: RoomId,
    pub client_msg_id: Option<ClientMsgId>,
    pub text: MessageText,
}

/// A stored message, and whether this call created it or found an earlier send with the same key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub message: Message,
    pub duplicate: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("room not found")]
    NotFound,
    #[error("you are not a member of this room")]
    Forbidden,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum SendFileError {
    #[error("room not found")]
    NotFound,
    #[error("you are not a member of this room")]
    Forbidden,
    #[error("the file is larger than the {limit}-byte limit for its kind")]
    TooLarge { limit: u64 },
    #[error("the upload would exceed your storage quota of {quota} bytes")]
    QuotaExceeded { quota: u64 },
    #[error("file_id: no such file of yours in this room")]
    UnknownFile,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

/// Sending a file fails first for the reasons sending text does.
impl From<SendError> for SendFileError {
    fn from(e: SendError) -> Self {
        match e {
            SendError::NotFound => Self::NotFound,
            SendError::Forbidden => Self::Forbidden,
            SendError::Unknown(e) => Self::Unknown(e),
        }
    }
}

/// A change to the message with seq `seq` of `room_id`, by its sender (edit), its sender or the
/// room's owner (delete), or any member (reactions).
#[derive(Debug, Clone)]
pub struct ChangeRequest {
    pub room_id: RoomId,
    pub seq: u64,
    pub client_msg_id: Option<ClientMsgId>,
    pub what: Wanted,
}

/// What a `ChangeRequest` asks for.
#[derive(Debug, Clone)]
pub enum Wanted {
    Edit(MessageText),
    Delete,
    React { emoji: Emoji, added: bool },
}

/// What a change did: the message as it is now, and the change entry the log stored for it
/// (`None` when there was nothing to change: a reaction already there, or already taken back).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changed {
    pub message: Message,
    pub change: Option<Message>,
    /// The change entry was stored before, under the same client message id.
    pub duplicate: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("room not found")]
    NotFound,
    #[error("you are not a member of this room")]
    Forbidden,
    #[error("message not found")]
    MessageNotFound,
    #[error(transparent)]
    Refused(ChangeRefusal),
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

impl From<SendError> for ChangeError {
    fn from(e: SendError) -> Self {
        match e {
            SendError::NotFound => Self::NotFound,
            SendError::Forbidden => Self::Forbidden,
            SendError::Unknown(e) => Self::Unknown(e),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("room not found")]
    NotFound,
    #[error("you are not a member of this room")]
    Forbidden,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

/// Which messages a history request wants: exclusive seq bounds, newest first unless `after` is
/// set. Seqs start at 1, so `after: Some(0)` reads forwards from the first message and
/// `before: Some(0)` matches nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryQuery {
    pub before: Option<u64>,
    pub after: Option<u64>,
    pub limit: PageSize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPage {
    /// Ascending by seq.
    pub items: Vec<Message>,
    /// More messages exist in the paging direction; expired ones do not count.
    pub has_more: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncPage {
    pub items: Vec<Message>,
    /// The seq to sync after next time: the last one sent, or the request's if none.
    pub last_seq: u64,
    pub has_more: bool,
}

#[derive(Clone)]
pub struct Messaging {
    rooms: Arc<dyn RoomRepository>,
    log: Arc<dyn MessageLog>,
    archive: Arc<dyn MessageArchive>,
    bus: Arc<dyn EventBus>,
    files: Files,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGenerator>,
    /// When set, history and sync leave out messages older than the message retention.
    retention: Option<RetentionPolicy>,
    recovery: Arc<CounterRecovery>,
    /// Answers "is a member" without the store for most sends; none means always ask the store.
    membership: Option<MembershipCache>,
    /// How long after sending the sender may edit a text message.
    edit_window: chrono::TimeDelta,
}

/// Serialises counter recoveries on this node, and counts them so a waiter can tell that the one
/// it waited for already did its work.
#[derive(Default)]
struct CounterRecovery {
    lock: futures::lock::Mutex<()>,
    done: AtomicU64,
}

impl Messaging {
    pub fn new(
        rooms: Arc<dyn RoomRepository>,
        log: Arc<dyn MessageLog>,
        archive: Arc<dyn MessageArchive>,
        bus: Arc<dyn EventBus>,
        files: Files,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdGenerator>,
    ) -> Self {
        Self {
            rooms,
            log,
            archive,
            bus,
            files,
            clock,
            ids,
            retention: None,
            recovery: Arc::default(),
            membership: None,
            edit_window: Message::DEFAULT_EDIT_WINDOW,
        }
    }

    /// How long after sending the sender may edit a message (24 hours unless set).
    #[must_use]
    pub fn with_edit_window(self, window: std::time::Duration) -> Self {
        let edit_window = chrono::TimeDelta::from_std(window).unwrap_or(chrono::TimeDelta::MAX);
        Self { edit_window, ..self }
    }

    /// Checks a sender's membership in `cache` first; the cache must be the one `Rooms` clears.
    #[must_use]
    pub fn with_membership_cache(self, cache: MembershipCache) -> Self {
        Self { membership: Some(cache), ..self }
    }

    /// Hides messages past `retention` from history and sync, wherever they still are.
    #[must_use]
    pub fn with_retention(self, retention: RetentionPolicy) -> Self {
        Self { retention: Some(retention), ..self }
    }

    /// Stores a text message and tells the room. Acknowledge only after this returns `Ok`.
    ///
    /// # Errors
    /// `NotFound` for an unknown room, `Forbidden` for a non-member.
    pub async fn send_text(&self, actor: &User, request: SendText) -> Result<Sent, SendError> {
        self.ensure_member(actor, request.room_id).await?;
        self.append(actor, request.room_id, request.client_msg_id, MessageBody::Text(request.text))
            .await
            .map_err(SendError::Unknown)
    }

    /// Stores a file, then a message pointing at it, and tells the room.
    ///
    /// # Errors
    /// As `send_text`, plus `TooLarge` and `QuotaExceeded` from the upload.
    pub async fn send_file(
        &self,
        actor: &User,
        room_id: RoomId,
        client_msg_id: Option<ClientMsgId>,
        name: FileName,
        data: ByteStream,
        declared_size: Option<u64>,
    ) -> Result<Sent, SendFileError> {
        self.ensure_member(actor, room_id).await?;
        let upload = self.files.upload(actor, room_id, name, data, declared_size, Upload::WithMessage);
        let file = upload.await.map_err(|e| match e {
            UploadError::NotFound => SendFileError::Forbidden,
            UploadError::TooLarge { limit } => SendFileError::TooLarge { limit },
            UploadError::QuotaExceeded { quota } => SendFileError::QuotaExceeded { quota },
            UploadError::Unknown(e) => SendFileError::Unknown(e),
        })?;
        let file_id = file.meta.id;
        let sent = self.append(actor, room_id, client_msg_id, MessageBody::File(file.meta)).await?;
        if sent.duplicate {
            self.files.discard(file_id).await;
        }
        Ok(sent)
    }

    /// Posts a file `actor` uploaded on its own (`POST /files`) to the same room, as a message.
    ///
    /// # Errors
    /// As `send_text`, and `UnknownFile` unless it is a live file of `actor`'s in that room.
    pub async fn send_uploaded(
        &self,
        actor: &User,
        room_id: RoomId,
        client_msg_id: Option<ClientMsgId>,
        file_id: FileId,
    ) -> Result<Sent, SendFileError> {
        self.ensure_member(actor, room_id).await?;
        let meta = self.files.attach(actor, room_id, file_id).await.map_err(|e| match e {
            AttachError::NotFound => SendFileError::UnknownFile,
            AttachError::Unknown(e) => SendFileError::Unknown(e),
        })?;
        Ok(self.append(actor, room_id, client_msg_id, MessageBody::File(meta)).await?)
    }

    /// Edits, deletes or reacts to a message: checks the rules against the message as it is,
    /// appends the change as an entry of its own (with its own seq, deduplicated by the client
    /// message id as a send is), applies it to the archived message at once, and tells the room.
    /// Deleting a file message makes its file expire, so the purge deletes the bytes.
    ///
    /// # Errors
    /// `NotFound` for an unknown room, `Forbidden` for a non-member, `MessageNotFound` for a seq
    /// that is no message of the room (a change entry, expired, or never sent), `Refused` when a
    /// rule of `Message::check_edit`, `check_delete` or `check_react` says no.
    pub async fn change(&self, actor: &User, request: ChangeRequest) -> Result<Changed, ChangeError> {
        let room_id = request.room_id;
        self.ensure_member(actor, room_id).await?;
        let target = self.message_at(room_id, request.seq).await?;
        let change = match request.what {
            Wanted::Edit(text) => {
                target.check_edit(actor.id, self.clock.now(), self.edit_window).map_err(ChangeError::Refused)?;
                Change::Edit { target: target.seq, text }
            }
            Wanted::Delete => {
                let owner = actor.id != target.sender.id && self.owns(actor, room_id).await?;
                target.check_delete(actor.id, owner).map_err(ChangeError::Refused)?;
                Change::Delete { target: target.seq }
            }
            Wanted::React { emoji, added } => {
                if target.has_reaction(actor.id, &emoji) == added {
                    if target.is_deleted() {
                        return Err(ChangeError::Refused(ChangeRefusal::Deleted));
                    }
                    return Ok(Changed { message: target, change: None, duplicate: false });
                }
                if added {
                    target.check_react(&emoji).map_err(ChangeError::Refused)?;
                }
                Change::React { target: target.seq, emoji, added }
            }
        };
        let sent = self.store(actor, room_id, request.client_msg_id, MessageBody::Change(change)).await?;
        let entry = sent.message;
        // The log applied it to a cached copy; an archived one is changed here, before the room
        // hears of it, not only once the worker archives the entry. Best effort: the worker
        // applies it again either way.
        if let Err(e) = self.archive.apply_change(&entry).await {
            tracing::warn!(error = %e, room_id = %room_id, seq = %entry.seq, "could not apply a change to the archive yet");
        }
        if !sent.duplicate {
            self.publish(&entry).await;
        }
        if let (MessageBody::File(meta), Some(Change::Delete { .. })) = (&target.body, entry.body.change()) {
            if let Err(e) = self.files.expire(meta.id).await {
                tracing::warn!(error = %e, file_id = %meta.id, "could not expire the file of a deleted message");
            }
        }
        let message = if sent.duplicate {
            self.message_at(room_id, request.seq).await?
        } else {
            let mut message = target;
            message.apply(&entry);
            message
        };
        Ok(Changed { message, change: Some(entry), duplicate: sent.duplicate })
    }

    /// The message with seq `seq` of `room_id` as history shows it now.
    async fn message_at(&self, room_id: RoomId, seq: u64) -> Result<Message, ChangeError> {
        let seq = Seq::new(seq).ok_or(ChangeError::MessageNotFound)?;
        let range = SeqRange { content_only: true, ..SeqRange::only(seq) };
        let page = self.read(room_id, range, Take::Oldest(1)).await?;
        page.items.into_iter().find(|m| m.seq == seq).ok_or(ChangeError::MessageNotFound)
    }

    async fn owns(&self, actor: &User, room_id: RoomId) -> anyhow::Result<bool> {
        Ok(self.rooms.get(room_id).await?.is_some_and(|room| room.owner() == actor.id))
    }

    /// Tells the room's other connections that `actor` is typing. Nothing is stored.
    ///
    /// # Errors
    /// As `send_text`.
    pub async fn typing(&self, actor: &User, room_id: RoomId) -> Result<(), SendError> {
        self.ensure_member(actor, room_id).await?;
        self.bus.publish(RoomEvent::Typing { room_id, user: actor.into() }).await?;
        Ok(())
    }

    /// A page of a room's messages, hot cache and archive merged, each message once, by seq, as
    /// changes left it: edited text, deleted ones as tombstones, reactions. Change entries are not
    /// items of their own, so a page is full of messages.
    /// Without `after` it pages backwards from the newest (or from `before`); with it, forwards.
    /// Expired messages are left out as if already purged: pages stay full of live ones.
    ///
    /// # Errors
    /// `NotFound` unless `actor` is a member.
    pub async fn history(
        &self,
        actor: &User,
        room_id: RoomId,
        query: HistoryQuery,
    ) -> Result<HistoryPage, HistoryError> {
        self.ensure_reader(actor, room_id).await?;
        let range = SeqRange {
            after: query.after.and_then(Seq::new),
            before: query.before.map(|b| Seq::new(b).unwrap_or(Seq::FIRST)),
            content_only: true,
            ..SeqRange::default()
        };
        let limit = query.limit.get() as usize;
        let take = if query.after.is_some() { Take::Oldest(limit) } else { Take::Newest(limit) };
        Ok(self.read(room_id, range, take).await?)
    }

    /// Every entry after `after_seq` (0 for the start), oldest first, at most `SYNC_MAX` at a
    /// time: messages as changes left them, and the change entries themselves, each once.
    ///
    /// # Errors
    /// `NotFound` unless `actor` is a member.
    pub async fn sync(&self, actor: &User, room_id: RoomId, after_seq: u64) -> Result<SyncPage, HistoryError> {
        self.ensure_reader(actor, room_id).await?;
        let range = SeqRange { after: Seq::new(after_seq), ..SeqRange::default() };
        let page = self.read(room_id, range, Take::Oldest(SYNC_MAX as usize)).await?;
        let last_seq = page.items.last().map_or(after_seq, |m| m.seq.get());
        Ok(SyncPage { items: page.items, last_seq, has_more: page.has_more })
    }

    /// Reads one more than asked from both stores, merges by seq, and keeps the wanted end.
    ///
    /// Exact because each store applies every bound before it counts: the first (or last) n+1
    /// live messages of the union are each among the first (or last) n+1 of their own store. So
    /// retention is a bound of both fetches, with one cutoff for both, never a filter of the
    /// merge: dropping expired messages after the fetch would leave the archive's window short
    /// and skip the live messages between it and the cache's.
    async fn read(&self, room_id: RoomId, range: SeqRange, take: Take) -> anyhow::Result<HistoryPage> {
        let (limit, probe) = match take {
            Take::Oldest(n) => (n, Take::Oldest(n + 1)),
            Take::Newest(n) => (n, Take::Newest(n + 1)),
        };
        // The hot cache may still hold messages the purge already removed from the archive, and
        // the archive ones the purge has not reached yet: both leave them out.
        let not_before = self.retention.map(|retention| retention.message_cutoff(self.clock.now()));
        let range = SeqRange { not_before, ..range };
        // Only seqs given out before the cache read: a later message may reach the archive (through
        // another worker) ahead of an earlier one still queued, and must not be returned before it.
        let range = match self.log.last_seq(room_id).await? {
            Some(last) => SeqRange { before: Some(range.before.map_or(last.next(), |b| b.min(last.next()))), ..range },
            None => range,
        };
        // The log before the archive: a message leaves the cache only after the archive holds it, so
        // one trimmed between the two reads is in the archive read. The other order could miss it.
        let cached = self.log.fetch(room_id, range, probe).await;
        let archived = self.archive.fetch(room_id, range, probe).await;
        let mut merged: BTreeMap<Seq, Message> = BTreeMap::new();
        for message in archived?.into_iter().chain(cached?) {
            merged.insert(message.seq, message);
        }
        let mut items: Vec<Message> = merged.into_values().collect();
        let has_more = items.len() > limit;
        if has_more {
            match take {
                Take::Oldest(_) => items.truncate(limit),
                Take::Newest(_) => {
                    items.drain(..items.len() - limit);
                }
            }
        }
        Ok(HistoryPage { items, has_more })
    }

    /// Raises the log's counters from the archive after it lost them; one recovery at a time per
    /// node, and none when another finished while this one waited.
    async fn recover_counters(&self) -> anyhow::Result<()> {
        let seen = self.recovery.done.load(Ordering::Acquire);
        let _one_at_a_time = self.recovery.lock.lock().await;
        if self.recovery.done.load(Ordering::Acquire) != seen {
            return Ok(());
        }
        let rooms = crate::archive::recover_counters(self.log.as_ref(), self.archive.as_ref()).await?;
        self.recovery.done.fetch_add(1, Ordering::Release);
        tracing::warn!(rooms, "the message log had lost its seq counters; raised them from the archive");
        Ok(())
    }

    async fn ensure_reader(&self, actor: &User, room_id: RoomId) -> Result<(), HistoryError> {
        match self.standing(actor, room_id).await? {
            Standing::Member => Ok(()),
            Standing::Outsider => Err(HistoryError::Forbidden),
            Standing::Hidden => Err(HistoryError::NotFound),
        }
    }

    async fn ensure_member(&self, actor: &User, room_id: RoomId) -> Result<(), SendError> {
        match self.standing(actor, room_id).await? {
            Standing::Member => Ok(()),
            Standing::Outsider => Err(SendError::Forbidden),
            Standing::Hidden => Err(SendError::NotFound),
        }
    }

    /// Where `actor` stands with `room_id`; the cheap membership check first, the room only for
    /// a non-member. An unknown room is hidden.
    async fn standing(&self, actor: &User, room_id: RoomId) -> anyhow::Result<Standing> {
        let member = match &self.membership {
            Some(cache) => cache.is_member(room_id, actor.id).await?,
            None => self.rooms.is_member(room_id, actor.id).await?,
        };
        if member {
            return Ok(Standing::Member);
        }
        Ok(self.rooms.get(room_id).await?.map_or(Standing::Hidden, |room| room.standing(actor.id)))
    }

    /// Gives a new entry its seq in the log; a resend with a known client message id finds the
    /// entry it stored before.
    async fn store(
        &self,
        actor: &User,
        room_id: RoomId,
        client_msg_id: Option<ClientMsgId>,
        body: MessageBody,
    ) -> anyhow::Result<Sent> {
        let new = NewMessage {
            id: MessageId::from_uuid(self.ids.new_id()),
            room_id,
            sender: Sender { id: actor.id, username: actor.username.clone() },
            body,
            sent_at: self.clock.now(),
        };
        let dedupe = client_msg_id.map(|client_msg_id| DedupeKey { user: actor.id, client_msg_id });
        let appended = match self.log.append(new.clone(), dedupe.clone()).await {
            Err(AppendError::CountersLost) => {
                self.recover_counters().await?;
                self.log.append(new, dedupe).await
            }
            other => other,
        };
        Ok(
            match appended.map_err(|e| match e {
                AppendError::CountersLost => anyhow::anyhow!("the message log lost its counters again during recovery"),
                AppendError::Unknown(e) => e,
            })? {
                Appended::Duplicate(message) => Sent { message, duplicate: true },
                Appended::Created(message) => Sent { message, duplicate: false },
            },
        )
    }

    /// Tells the room about a new entry. Delivery is best effort: the entry is stored, and sync
    /// recovers what was missed.
    async fn publish(&self, message: &Message) {
        if let Err(e) = self.bus.publish(RoomEvent::Message(message.clone())).await {
            tracing::warn!(error = %e, room_id = %message.room_id, "could not publish message");
        }
    }

    /// Stores a new entry and, unless it was a resend, tells the room.
    async fn append(
        &self,
        actor: &User,
        room_id: RoomId,
        client_msg_id: Option<ClientMsgId>,
        body: MessageBody,
    ) -> anyhow::Result<Sent> {
        let sent = self.store(actor, room_id, client_msg_id, body).await?;
        if !sent.duplicate {
            self.publish(&sent.message).await;
        }
        Ok(sent)
    }
}
