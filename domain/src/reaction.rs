//! Reactions: one emoji sequence per reaction, a bounded set per message.

use crate::{is_format_control, Seq, UserId};

/// One reaction: a single emoji sequence of 1 to 32 characters, such as `👍`, `❤️`,
/// `👩🏽‍💻` or the keycap `1️⃣`.
///
/// Telling a real emoji from any other symbol needs Unicode's emoji tables, which the domain does
/// not carry; the rule keeps what matters: no whitespace, no control or invisible format
/// character (the zero-width joiner of emoji sequences aside), no ASCII but the digits, `#` and
/// `*` of keycaps, and at least one character that is not ASCII. So a reaction is never text,
/// a shortcode (`:+1:`), markup or something that renders as nothing.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Emoji(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmojiError {
    #[error("emoji must be 1 to 32 characters long, got {0}")]
    Length(usize),
    #[error("emoji must be one emoji sequence: no spaces, letters, punctuation or invisible characters")]
    NotAnEmoji,
}

const ZERO_WIDTH_JOINER: char = '\u{200D}';

impl Emoji {
    pub const MAX_CHARS: usize = 32;

    pub fn new(raw: &str) -> Result<Self, EmojiError> {
        let count = raw.chars().count();
        if count == 0 || count > Self::MAX_CHARS {
            return Err(EmojiError::Length(count));
        }
        let allowed = |c: char| {
            if c.is_ascii() {
                return c.is_ascii_digit() || c == '#' || c == '*';
            }
            !c.is_whitespace() && !c.is_control() && (c == ZERO_WIDTH_JOINER || !is_format_control(c))
        };
        if !raw.chars().all(allowed) || raw.is_ascii() {
            return Err(EmojiError::NotAnEmoji);
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Emoji {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The newest reaction change of one user with one emoji on one message. A removal stays as a
/// mark, so that an older add applied again later (a replayed or late archive entry) changes
/// nothing: applying reaction changes is idempotent and independent of their order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReactionMark {
    pub emoji: Emoji,
    pub user: UserId,
    /// The seq of the change entry this mark comes from.
    pub seq: Seq,
    pub added: bool,
}

/// One emoji on a message as clients see it: who reacted with it, earliest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reaction {
    pub emoji: Emoji,
    pub users: Vec<UserId>,
}

impl Reaction {
    pub fn count(&self) -> usize {
        self.users.len()
    }
}

/// The emojis present in `marks` (with at least one add), ordered by their first reaction; each
/// with its users in the order they reacted.
pub(crate) fn summarize(marks: &[ReactionMark]) -> Vec<Reaction> {
    let mut added: Vec<&ReactionMark> = marks.iter().filter(|m| m.added).collect();
    added.sort_by_key(|m| m.seq);
    let mut reactions: Vec<Reaction> = Vec::new();
    for mark in added {
        match reactions.iter_mut().find(|r| r.emoji == mark.emoji) {
            Some(reaction) => reaction.users.push(mark.user),
            None => reactions.push(Reaction { emoji: mark.emoji.clone(), users: vec![mark.user] }),
        }
    }
    reactions
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn emoji_sequences_are_reactions() {
        for ok in ["👍", "❤️", "👩🏽‍💻", "1️⃣", "#️⃣", "🇫🇷", "🏳️‍🌈", "✔"] {
            assert_eq!(Emoji::new(ok).map(|e| e.as_str().to_owned()), Ok(ok.to_owned()), "{ok}");
        }
    }

    #[test]
    fn text_shortcodes_and_invisible_characters_are_not() {
        for bad in ["a", ":+1:", "👍 👍", "👍\n", "1", "#", "\u{200B}👍", "👍\u{202E}", "<b>👍", "\u{0}👍"]
        {
            assert_eq!(Emoji::new(bad), Err(EmojiError::NotAnEmoji), "{bad:?}");
        }
    }

    #[test]
    fn a_reaction_is_one_to_thirty_two_characters() {
        assert_eq!(Emoji::new(""), Err(EmojiError::Length(0)));
        assert!(Emoji::new(&"👍".repeat(32)).is_ok());
        assert_eq!(Emoji::new(&"👍".repeat(33)), Err(EmojiError::Length(33)));
    }

    proptest! {
        #[test]
        fn accepted_emojis_are_bounded_and_never_plain_text(raw in "\\PC{0,40}") {
            if let Ok(emoji) = Emoji::new(&raw) {
                let s = emoji.as_str();
                prop_assert!((1..=32).contains(&s.chars().count()));
                prop_assert!(!s.is_ascii());
                prop_assert!(s.chars().all(|c| !c.is_whitespace() && !c.is_control() && !c.is_ascii_alphabetic()));
            }
        }
    }
}
