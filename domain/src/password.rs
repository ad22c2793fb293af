//! The password policy: length bounds, no truncation, no composition rules, no common or self-naming passwords.

use crate::Username;

/// The shipped list of passwords that are rejected outright (compared case-insensitively).
const COMMON_PASSWORDS: &str = include_str!("common-passwords.txt");

/// A password that passed the policy. The plain text stays only as long as hashing needs it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("password must be at least 8 characters long")]
    TooShort,
    #[error("password must be at most 128 characters long")]
    TooLong,
    #[error("password must not equal the username")]
    EqualsUsername,
    #[error("password is too common; choose a less guessable one")]
    Common,
}

impl Password {
    pub const MIN_CHARS: usize = 8;
    pub const MAX_CHARS: usize = 128;

    /// Checks the policy for a new password of `username`. Never trims or truncates.
    pub fn new(raw: &str, username: &Username) -> Result<Self, PasswordError> {
        let count = raw.chars().count();
        if count < Self::MIN_CHARS {
            return Err(PasswordError::TooShort);
        }
        if count > Self::MAX_CHARS {
            return Err(PasswordError::TooLong);
        }
        if raw.to_lowercase() == username.as_str().to_lowercase() {
            return Err(PasswordError::EqualsUsername);
        }
        if is_common(raw) {
            return Err(PasswordError::Common);
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

fn is_common(raw: &str) -> bool {
    let lowered = raw.to_lowercase();
    COMMON_PASSWORDS.lines().any(|common| common.eq_ignore_ascii_case(&lowered))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn alice() -> Username {
        Username::new("alice").unwrap()
    }

    #[test]
    fn accepts_eight_to_one_hundred_twenty_eight_characters_without_composition_rules() {
        assert!(Password::new("correcthorse", &alice()).is_ok());
        assert!(Password::new("8chars!!", &alice()).is_ok());
        assert!(Password::new(&"ü".repeat(128), &alice()).is_ok());
    }

    #[test]
    fn rejects_short_and_long_passwords() {
        assert_eq!(Password::new("short12", &alice()), Err(PasswordError::TooShort));
        assert_eq!(Password::new(&"z".repeat(129), &alice()), Err(PasswordError::TooLong));
    }

    #[test]
    fn never_truncates_or_trims() {
        let raw = format!("  {}  ", "k".repeat(120));
        assert_eq!(Password::new(&raw, &alice()).unwrap().expose(), raw);
    }

    #[test]
    fn rejects_the_username_in_any_case() {
        let name = Username::new("Alexander").unwrap();
        assert_eq!(Password::new("aLEXANDER", &name), Err(PasswordError::EqualsUsername));
    }

    #[test]
    fn rejects_common_passwords_in_any_case() {
        assert_eq!(Password::new("password123", &alice()), Err(PasswordError::Common));
        assert_eq!(Password::new("PassWord123", &alice()), Err(PasswordError::Common));
        assert_eq!(Password::new("qwertyuiop", &alice()), Err(PasswordError::Common));
    }

    #[test]
    fn debug_output_hides_the_password() {
        let pw = Password::new("correcthorse", &alice()).unwrap();
        assert!(!format!("{pw:?}").contains("correct"));
    }

    proptest! {
        #[test]
        fn accepted_passwords_are_kept_exactly(raw in "\\PC{0,140}") {
            if let Ok(pw) = Password::new(&raw, &alice()) {
                prop_assert_eq!(pw.expose(), raw.as_str());
                prop_assert!((8..=128).contains(&raw.chars().count()));
            }
        }
    }
}
