//! Users and their validated usernames.

use crate::{uuid_id, Timestamp};

uuid_id!(
    /// Identifies a user for life; usernames are immutable too, but ids are what other records point to.
    UserId
);

/// A username: 2 to 32 characters, letters of any script and digits, starting with a letter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Username(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsernameError {
    #[error("username must be 2 to 32 characters long, got {0}")]
    Length(usize),
    #[error("username must start with a letter")]
    MustStartWithLetter,
    #[error("username may contain only letters and digits, found {0:?}")]
    InvalidCharacter(char),
}

impl Username {
    pub const MIN_CHARS: usize = 2;
    pub const MAX_CHARS: usize = 32;

    pub fn new(raw: &str) -> Result<Self, UsernameError> {
        let count = raw.chars().count();
        if !(Self::MIN_CHARS..=Self::MAX_CHARS).contains(&count) {
            return Err(UsernameError::Length(count));
        }
        if let Some(bad) = raw.chars().find(|c| !c.is_alphanumeric()) {
            return Err(UsernameError::InvalidCharacter(bad));
        }
        if !raw.chars().next().is_some_and(char::is_alphabetic) {
            return Err(UsernameError::MustStartWithLetter);
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Username {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A registered user as other users may see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub username: Username,
    pub created_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_letters_and_digits_of_any_script() {
        for ok in ["al", "alice99", "Ærøskøbing", "пользователь", "ユーザー1", "a1"] {
            assert!(Username::new(ok).is_ok(), "{ok} should be valid");
        }
    }

    #[test]
    fn rejects_names_outside_two_to_thirty_two_characters() {
        assert_eq!(Username::new("a"), Err(UsernameError::Length(1)));
        assert_eq!(Username::new(""), Err(UsernameError::Length(0)));
        assert!(Username::new(&"a".repeat(32)).is_ok());
        assert_eq!(Username::new(&"a".repeat(33)), Err(UsernameError::Length(33)));
    }

    #[test]
    fn counts_characters_not_bytes() {
        assert!(Username::new(&"é".repeat(32)).is_ok());
    }

    #[test]
    fn rejects_a_leading_digit() {
        assert_eq!(Username::new("1alice"), Err(UsernameError::MustStartWithLetter));
    }

    #[test]
    fn rejects_punctuation_spaces_and_controls() {
        assert_eq!(Username::new("al ice"), Err(UsernameError::InvalidCharacter(' ')));
        assert_eq!(Username::new("al_ice"), Err(UsernameError::InvalidCharacter('_')));
        assert_eq!(Username::new("al\u{0}ice"), Err(UsernameError::InvalidCharacter('\u{0}')));
    }

    proptest! {
        #[test]
        fn every_accepted_username_obeys_the_rules(raw in "\\PC{0,40}") {
            if let Ok(name) = Username::new(&raw) {
                let chars: Vec<char> = name.as_str().chars().collect();
                prop_assert!((2..=32).contains(&chars.len()));
                prop_assert!(chars[0].is_alphabetic());
                prop_assert!(chars.iter().all(|c| c.is_alphanumeric()));
            }
        }

        #[test]
        fn well_formed_usernames_are_accepted(raw in "[a-zA-Z][a-zA-Z0-9]{1,31}") {
            prop_assert_eq!(Username::new(&raw).map(|u| u.as_str().to_owned()), Ok(raw));
        }
    }
}
