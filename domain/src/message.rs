//! Messages: time-ordered ids, per-room sequence numbers, and validated bodies.

use crate::reaction::{summarize, Reaction, ReactionMark};
use crate::{is_forbidden_control, uuid_id, Emoji, FileKind, FileMeta, RoomId, Timestamp, UserId, Username};

uuid_id!(
    /// Identifies a message; UUIDv7, so ids sort by creation time.
    MessageId
);

/// A message's position in its room: starts at 1 and strictly increases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Seq(u64);

impl Seq {
    pub const FIRST: Self = Self(1);

    pub fn new(n: u64) -> Option<Self> {
        (n >= 1).then_some(Self(n))
    }

    pub const fn get(self) -> u64 {
        self.0
    }

    pub const fn next(self) -> Self {
        Self(self.0 + 1)
    }
}

impl std::fmt::Display for Seq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The client's idempotency key for a send: 1 to 64 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientMsgId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientMsgIdError {
    #[error("client_msg_id must be 1 to 64 characters long, got {0}")]
    Length(usize),
    #[error("client_msg_id must not contain control characters")]
    ControlCharacter,
}

impl ClientMsgId {
    pub const MAX_CHARS: usize = 64;

    pub fn new(raw: &str) -> Result<Self, ClientMsgIdError> {
        let count = raw.chars().count();
        if count == 0 || count > Self::MAX_CHARS {
            return Err(ClientMsgIdError::Length(count));
        }
        if raw.chars().any(|c| is_forbidden_control(c, &[])) {
            return Err(ClientMsgIdError::ControlCharacter);
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Message text: 1 to 4000 characters after trimming; newline and tab are the only controls allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageText(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageTextError {
    #[error("text must be 1 to 4000 characters long after trimming, got {0}")]
    Length(usize),
    #[error("text must not contain control characters other than newline and tab")]
    ControlCharacter,
}

impl MessageText {
    pub const MAX_CHARS: usize = 4000;

    pub fn new(raw: &str) -> Result<Self, MessageTextError> {
        let trimmed = raw.trim();
        let count = trimmed.chars().count();
        if count == 0 || count > Self::MAX_CHARS {
            return Err(MessageTextError::Length(count));
        }
        if trimmed.chars().any(|c| is_forbidden_control(c, &['\n', '\t'])) {
            return Err(MessageTextError::ControlCharacter);
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a log entry holds: content (text or a file), what is left of deleted content, or a change
/// to an earlier message of the same room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageBody {
    Text(MessageText),
    File(FileMeta),
    /// A deleted text or file message: its kind, and no content at all.
    Removed(MessageKind),
    /// An entry that changes an earlier message. It has a seq of its own, so `sync` replays it in
    /// order; history never shows it, only its effect on the message it changes.
    Change(Change),
}

/// A change to the message with seq `target` in the same room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The sender replaced the text of their text message.
    Edit { target: Seq, text: MessageText },
    /// The sender or the room's owner deleted the message.
    Delete { target: Seq },
    /// The entry's sender added (or took back) a reaction.
    React { target: Seq, emoji: Emoji, added: bool },
}

impl Change {
    pub const fn target(&self) -> Seq {
        match self {
            Self::Edit { target, .. } | Self::Delete { target } | Self::React { target, .. } => *target,
        }
    }

    pub const fn kind(&self) -> MessageKind {
        match self {
            Self::Edit { .. } => MessageKind::Edit,
            Self::Delete { .. } => MessageKind::Delete,
            Self::React { .. } => MessageKind::Reaction,
        }
    }
}

/// What a log entry is: content a client shows (text, an image, another file), or a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    Text,
    Image,
    File,
    Edit,
    Delete,
    Reaction,
}

impl MessageKind {
    pub const CONTENT: [Self; 3] = [Self::Text, Self::Image, Self::File];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Image => "image",
            Self::File => "file",
            Self::Edit => "edit",
            Self::Delete => "delete",
            Self::Reaction => "reaction",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Text, Self::Image, Self::File, Self::Edit, Self::Delete, Self::Reaction]
            .into_iter()
            .find(|kind| kind.as_str() == raw)
    }

    /// Text, image or file: what history shows.
    pub const fn is_content(self) -> bool {
        matches!(self, Self::Text | Self::Image | Self::File)
    }
}

impl MessageBody {
    pub fn kind(&self) -> MessageKind {
        match self {
            Self::Text(_) => MessageKind::Text,
            Self::File(meta) if meta.kind == FileKind::Image => MessageKind::Image,
            Self::File(_) => MessageKind::File,
            Self::Removed(kind) => *kind,
            Self::Change(change) => change.kind(),
        }
    }

    /// The change this entry makes, if it is one.
    pub fn change(&self) -> Option<&Change> {
        match self {
            Self::Change(change) => Some(change),
            _ => None,
        }
    }
}

/// Who sent a message; the username is kept so history renders without a user lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender {
    pub id: UserId,
    pub username: Username,
}

/// What later changes made of a message. Applying a change is idempotent and, but for the bound
/// on reactions, independent of order: each kind of change remembers the seq it came from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MessageState {
    /// When the text shown was last edited.
    pub edited_at: Option<Timestamp>,
    /// The seq of the edit whose text is shown: an older edit applied later changes nothing.
    pub edit_seq: Option<Seq>,
    pub deleted_at: Option<Timestamp>,
    /// The newest reaction change of each user and emoji, removals included.
    pub reactions: Vec<ReactionMark>,
}

/// An entry of a room's log: a message, or a change to one (`MessageBody::Change`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: MessageId,
    pub room_id: RoomId,
    pub seq: Seq,
    pub sender: Sender,
    pub body: MessageBody,
    pub sent_at: Timestamp,
    /// The effect of later changes; the default for a change entry and for a message as sent.
    pub state: MessageState,
}

/// Why a change may not be made to a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChangeRefusal {
    #[error("only the sender may edit a message")]
    NotSender,
    #[error("only the sender or the room's owner may delete a message")]
    NotSenderOrOwner,
    #[error("only text messages can be edited")]
    NotEditable,
    #[error("the message was deleted")]
    Deleted,
    #[error("the message can no longer be edited: the edit window has passed")]
    WindowPassed,
    #[error("a message has at most {} different reactions", Message::MAX_REACTIONS)]
    TooManyReactions,
}

impl Message {
    /// The most different emojis one message can carry.
    pub const MAX_REACTIONS: usize = 20;
    /// The most reaction marks a message keeps; past it the oldest removals are forgotten.
    pub const MAX_REACTION_MARKS: usize = 256;
    /// How long after sending the sender may edit, unless configured otherwise.
    pub const DEFAULT_EDIT_WINDOW: chrono::TimeDelta = chrono::TimeDelta::hours(24);

    pub fn is_deleted(&self) -> bool {
        self.state.deleted_at.is_some()
    }

    /// The reactions clients see, each emoji with its users, earliest first.
    pub fn reactions(&self) -> Vec<Reaction> {
        summarize(&self.state.reactions)
    }

    /// Whether `editor` may now give this message new text.
    ///
    /// # Errors
    /// `Deleted` first, then `NotSender`, `NotEditable` (files), and `WindowPassed` once `window`
    /// has passed since it was sent.
    pub fn check_edit(&self, editor: UserId, now: Timestamp, window: chrono::TimeDelta) -> Result<(), ChangeRefusal> {
        if self.is_deleted() {
            return Err(ChangeRefusal::Deleted);
        }
        if editor != self.sender.id {
            return Err(ChangeRefusal::NotSender);
        }
        if !matches!(self.body, MessageBody::Text(_)) {
            return Err(ChangeRefusal::NotEditable);
        }
        if now - self.sent_at > window {
            return Err(ChangeRefusal::WindowPassed);
        }
        Ok(())
    }

    /// Whether `by`, the room's owner when `owner` is set, may delete this message.
    ///
    /// # Errors
    /// `Deleted` when it already is, `NotSenderOrOwner` for anyone else.
    pub fn check_delete(&self, by: UserId, owner: bool) -> Result<(), ChangeRefusal> {
        if self.is_deleted() {
            return Err(ChangeRefusal::Deleted);
        }
        if by != self.sender.id && !owner {
            return Err(ChangeRefusal::NotSenderOrOwner);
        }
        Ok(())
    }

    /// Whether `by` may react with `emoji`: any member may, on a message not deleted, while the
    /// message has fewer than `MAX_REACTIONS` emojis or already has this one.
    ///
    /// # Errors
    /// `Deleted`, or `TooManyReactions`.
    pub fn check_react(&self, emoji: &Emoji) -> Result<(), ChangeRefusal> {
        if self.is_deleted() {
            return Err(ChangeRefusal::Deleted);
        }
        let reactions = self.reactions();
        if reactions.len() >= Self::MAX_REACTIONS && !reactions.iter().any(|r| &r.emoji == emoji) {
            return Err(ChangeRefusal::TooManyReactions);
        }
        Ok(())
    }

    /// Whether `user` currently reacts with `emoji`.
    pub fn has_reaction(&self, user: UserId, emoji: &Emoji) -> bool {
        self.state.reactions.iter().any(|m| m.user == user && &m.emoji == emoji && m.added)
    }

    /// Applies the change entry `change` to this message; true when the message changed.
    ///
    /// Total and tolerant, for every store that folds changes: an entry that is not a change of
    /// this message, or that the rules would refuse now (an edit by another user or of a deleted
    /// message, a reaction past the bound), changes nothing. Idempotent: applying an entry again,
    /// or an older edit or reaction after a newer one, changes nothing either.
    pub fn apply(&mut self, change: &Message) -> bool {
        let Some(c) = change.body.change() else { return false };
        if change.room_id != self.room_id || c.target() != self.seq || !self.body.kind().is_content() {
            return false;
        }
        if self.is_deleted() {
            return false;
        }
        match c {
            Change::Edit { text, .. } => {
                let newer = self.state.edit_seq.is_none_or(|seq| seq < change.seq);
                if !newer || change.sender.id != self.sender.id || !matches!(self.body, MessageBody::Text(_)) {
                    return false;
                }
                self.body = MessageBody::Text(text.clone());
                self.state.edited_at = Some(change.sent_at);
                self.state.edit_seq = Some(change.seq);
                true
            }
            Change::Delete { .. } => {
                self.body = MessageBody::Removed(self.body.kind());
                self.state.deleted_at = Some(change.sent_at);
                self.state.reactions.clear();
                true
            }
            Change::React { emoji, added, .. } => self.apply_reaction(change.sender.id, change.seq, emoji, *added),
        }
    }

    fn apply_reaction(&mut self, user: UserId, seq: Seq, emoji: &Emoji, added: bool) -> bool {
        let marks = &mut self.state.reactions;
        if let Some(mark) = marks.iter_mut().find(|m| m.user == user && &m.emoji == emoji) {
            if mark.seq >= seq {
                return false;
            }
            mark.seq = seq;
            mark.added = added;
            return true;
        }
        if added {
            let present = summarize(marks);
            if present.len() >= Self::MAX_REACTIONS && !present.iter().any(|r| &r.emoji == emoji) {
                return false;
            }
        }
        marks.push(ReactionMark { emoji: emoji.clone(), user, seq, added });
        // Bounded: forget the oldest removals first; a message never holds more present
        // reactions than members times emojis, which the bound on emojis keeps in check.
        while marks.len() > Self::MAX_REACTION_MARKS {
            let oldest_removal = marks.iter().enumerate().filter(|(_, m)| !m.added).min_by_key(|(_, m)| m.seq);
            match oldest_removal.map(|(i, _)| i) {
                Some(i) => {
                    marks.remove(i);
                }
                None => break,
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn text_is_trimmed_and_keeps_newlines_and_tabs() {
        let text = MessageText::new("  hello\n\tworld  ").unwrap();
        assert_eq!(text.as_str(), "hello\n\tworld");
    }

    #[test]
    fn empty_or_blank_text_is_refused() {
        assert_eq!(MessageText::new(""), Err(MessageTextError::Length(0)));
        assert_eq!(MessageText::new(" \n\t "), Err(MessageTextError::Length(0)));
    }

    #[test]
    fn text_is_at_most_four_thousand_characters() {
        assert!(MessageText::new(&"ж".repeat(4000)).is_ok());
        assert_eq!(MessageText::new(&"ж".repeat(4001)), Err(MessageTextError::Length(4001)));
    }

    #[test]
    fn text_refuses_other_control_characters() {
        assert_eq!(MessageText::new("a\u{0}b"), Err(MessageTextError::ControlCharacter));
        assert_eq!(MessageText::new("a\u{1b}[31mb"), Err(MessageTextError::ControlCharacter));
        assert_eq!(MessageText::new("a\rb"), Err(MessageTextError::ControlCharacter));
    }

    #[test]
    fn client_msg_ids_are_one_to_sixty_four_characters() {
        assert!(ClientMsgId::new("c-1").is_ok());
        assert_eq!(ClientMsgId::new(""), Err(ClientMsgIdError::Length(0)));
        assert_eq!(ClientMsgId::new(&"c".repeat(65)), Err(ClientMsgIdError::Length(65)));
        assert_eq!(ClientMsgId::new("a\u{0}"), Err(ClientMsgIdError::ControlCharacter));
    }

    #[test]
    fn seqs_start_at_one_and_increase() {
        assert_eq!(Seq::new(0), None);
        assert_eq!(Seq::FIRST.next().get(), 2);
        assert!(Seq::FIRST < Seq::FIRST.next());
    }

    fn at(secs: i64) -> Timestamp {
        chrono::DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }

    fn user(n: u128) -> Sender {
        Sender {
            id: UserId::from_uuid(uuid::Uuid::from_u128(n)),
            username: Username::new(&format!("user{n}")).unwrap(),
        }
    }

    fn entry(seq: u64, by: u128, body: MessageBody, secs: i64) -> Message {
        Message {
            id: MessageId::from_uuid(uuid::Uuid::from_u128(u128::from(seq))),
            room_id: RoomId::from_uuid(uuid::Uuid::from_u128(7)),
            seq: Seq::new(seq).unwrap(),
            sender: user(by),
            body,
            sent_at: at(secs),
            state: MessageState::default(),
        }
    }

    fn text(raw: &str) -> MessageText {
        MessageText::new(raw).unwrap()
    }

    fn edit(seq: u64, by: u128, target: u64, raw: &str) -> Message {
        entry(seq, by, MessageBody::Change(Change::Edit { target: Seq::new(target).unwrap(), text: text(raw) }), 10)
    }

    fn delete(seq: u64, by: u128, target: u64) -> Message {
        entry(seq, by, MessageBody::Change(Change::Delete { target: Seq::new(target).unwrap() }), 20)
    }

    fn react(seq: u64, by: u128, target: u64, emoji: &str, added: bool) -> Message {
        let emoji = Emoji::new(emoji).unwrap();
        entry(seq, by, MessageBody::Change(Change::React { target: Seq::new(target).unwrap(), emoji, added }), 30)
    }

    fn hello() -> Message {
        entry(1, 1, MessageBody::Text(text("hello")), 0)
    }

    #[test]
    fn an_edit_replaces_the_text_and_says_when() {
        let mut message = hello();
        assert!(message.apply(&edit(2, 1, 1, "hello, world")));
        assert_eq!(message.body, MessageBody::Text(text("hello, world")));
        assert_eq!(message.state.edited_at, Some(at(10)));
        assert_eq!(message.state.edit_seq, Seq::new(2));
    }

    #[test]
    fn applying_edits_again_or_out_of_order_keeps_the_newest() {
        let mut message = hello();
        let (first, second) = (edit(2, 1, 1, "first"), edit(3, 1, 1, "second"));
        assert!(message.apply(&second));
        assert!(!message.apply(&first), "an older edit after a newer one changes nothing");
        assert!(!message.apply(&second), "applying an edit twice changes nothing");
        assert_eq!(message.body, MessageBody::Text(text("second")));
    }

    #[test]
    fn a_delete_leaves_a_tombstone_of_the_kind_and_nothing_changes_it_after() {
        let mut message = hello();
        message.apply(&react(2, 2, 1, "👍", true));
        assert!(message.apply(&delete(3, 2, 1)));
        assert_eq!(message.body, MessageBody::Removed(MessageKind::Text));
        assert_eq!(message.state.deleted_at, Some(at(20)));
        assert!(message.reactions().is_empty());
        assert!(!message.apply(&edit(4, 1, 1, "back")), "no edit brings a deleted message back");
        assert!(!message.apply(&react(5, 2, 1, "👍", true)));
        assert!(!message.apply(&delete(6, 1, 1)));
        assert_eq!(message.body, MessageBody::Removed(MessageKind::Text));
    }

    #[test]
    fn changes_of_another_message_or_room_or_by_a_non_sender_change_nothing() {
        let mut message = hello();
        assert!(!message.apply(&edit(2, 1, 9, "other target")));
        assert!(!message.apply(&edit(3, 2, 1, "not the sender")));
        let mut elsewhere = edit(4, 1, 1, "other room");
        elsewhere.room_id = RoomId::from_uuid(uuid::Uuid::from_u128(8));
        assert!(!message.apply(&elsewhere));
        assert!(!message.apply(&hello()), "content is not a change");
        assert_eq!(message, hello());
    }

    #[test]
    fn reactions_count_users_per_emoji_in_order_and_removals_win_over_older_adds() {
        let mut message = hello();
        message.apply(&react(2, 2, 1, "👍", true));
        message.apply(&react(3, 3, 1, "🎉", true));
        message.apply(&react(4, 3, 1, "👍", true));
        let summary: Vec<(String, usize)> =
            message.reactions().iter().map(|r| (r.emoji.to_string(), r.count())).collect();
        assert_eq!(summary, [("👍".to_owned(), 2), ("🎉".to_owned(), 1)]);

        assert!(message.apply(&react(5, 2, 1, "👍", false)));
        assert!(!message.apply(&react(2, 2, 1, "👍", true)), "the replayed add is older than the removal");
        assert_eq!(message.reactions()[0].users, [user(3).id]);
        assert!(!message.has_reaction(user(2).id, &Emoji::new("👍").unwrap()));
    }

    #[test]
    fn at_most_twenty_different_reactions_stick() {
        let emojis: Vec<String> = (0..21).map(|n| char::from_u32(0x1F600 + n).unwrap().to_string()).collect();
        let mut message = hello();
        for (n, emoji) in emojis.iter().enumerate() {
            message.apply(&react(2 + n as u64, 2, 1, emoji, true));
        }
        assert_eq!(message.reactions().len(), Message::MAX_REACTIONS);
        let last = Emoji::new(&emojis[20]).unwrap();
        assert_eq!(message.check_react(&last), Err(ChangeRefusal::TooManyReactions));
        assert_eq!(message.check_react(&Emoji::new(&emojis[0]).unwrap()), Ok(()), "one already there may grow");
    }

    #[test]
    fn reaction_marks_stay_bounded_however_much_churn() {
        let mut message = hello();
        for n in 0..600_u64 {
            let emoji = char::from_u32(0x1F300 + u32::try_from(n).unwrap()).unwrap().to_string();
            message.apply(&react(2 + 2 * n, 2, 1, &emoji, true));
            message.apply(&react(3 + 2 * n, 2, 1, &emoji, false));
        }
        assert!(message.state.reactions.len() <= Message::MAX_REACTION_MARKS);
    }

    #[test]
    fn only_the_sender_edits_text_within_the_window() {
        let message = hello();
        let window = chrono::TimeDelta::hours(1);
        assert_eq!(message.check_edit(user(1).id, at(60), window), Ok(()));
        assert_eq!(message.check_edit(user(2).id, at(60), window), Err(ChangeRefusal::NotSender));
        assert_eq!(message.check_edit(user(1).id, at(3601), window), Err(ChangeRefusal::WindowPassed));
        let mut deleted = hello();
        deleted.apply(&delete(2, 1, 1));
        assert_eq!(deleted.check_edit(user(1).id, at(60), window), Err(ChangeRefusal::Deleted));
    }

    #[test]
    fn the_sender_or_the_owner_deletes_once() {
        let message = hello();
        assert_eq!(message.check_delete(user(1).id, false), Ok(()));
        assert_eq!(message.check_delete(user(2).id, true), Ok(()));
        assert_eq!(message.check_delete(user(2).id, false), Err(ChangeRefusal::NotSenderOrOwner));
        let mut deleted = hello();
        deleted.apply(&delete(2, 1, 1));
        assert_eq!(deleted.check_delete(user(1).id, false), Err(ChangeRefusal::Deleted));
    }

    proptest! {
        #[test]
        fn accepted_texts_are_trimmed_bounded_and_clean(raw in "\\PC{0,50}|[\\x00-\\x1f ab]{0,20}") {
            if let Ok(text) = MessageText::new(&raw) {
                let s = text.as_str();
                prop_assert_eq!(s, s.trim());
                prop_assert!((1..=4000).contains(&s.chars().count()));
                prop_assert!(s.chars().all(|c| !c.is_control() || c == '\n' || c == '\t'));
            }
        }

        #[test]
        fn accepted_client_msg_ids_are_bounded(raw in "\\PC{0,70}") {
            if let Ok(id) = ClientMsgId::new(&raw) {
                prop_assert!((1..=64).contains(&id.as_str().chars().count()));
            }
        }
    }
}
