//! Search queries: what a user may ask the message search, split into the words to look for.

use crate::is_forbidden_control;

/// A search: 1 to 200 characters after trimming, holding 1 to 16 words (runs of letters and
/// digits). Every word must occur in a message for it to match; punctuation only separates
/// words, so no input can reach a store's query syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    words: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SearchQueryError {
    #[error("q must be 1 to 200 characters long after trimming, got {0}")]
    Length(usize),
    #[error("q must not contain control characters")]
    ControlCharacter,
    #[error("q must contain at least one letter or digit")]
    NoWords,
    #[error("q may hold at most 16 words, got {0}")]
    TooManyWords(usize),
}

impl SearchQuery {
    pub const MAX_CHARS: usize = 200;
    pub const MAX_WORDS: usize = 16;

    pub fn new(raw: &str) -> Result<Self, SearchQueryError> {
        let trimmed = raw.trim();
        let count = trimmed.chars().count();
        if count == 0 || count > Self::MAX_CHARS {
            return Err(SearchQueryError::Length(count));
        }
        if trimmed.chars().any(|c| is_forbidden_control(c, &['\t'])) {
            return Err(SearchQueryError::ControlCharacter);
        }
        let mut words: Vec<String> = Vec::new();
        for word in trimmed.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
            // Lowercasing may add combining marks (`İ`): only letters and digits stay.
            let word: String = word.to_lowercase().chars().filter(|c| c.is_alphanumeric()).collect();
            if !word.is_empty() && !words.contains(&word) {
                words.push(word);
            }
        }
        if words.is_empty() {
            return Err(SearchQueryError::NoWords);
        }
        if words.len() > Self::MAX_WORDS {
            return Err(SearchQueryError::TooManyWords(words.len()));
        }
        Ok(Self { words })
    }

    /// The distinct words, lowercased, in the order first given; letters and digits only.
    pub fn words(&self) -> &[String] {
        &self.words
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn punctuation_separates_words_and_repeats_count_once() {
        let query = SearchQuery::new("  Release-notes: \"v2\" OR release*  ").unwrap();
        assert_eq!(query.words(), ["release", "notes", "v2", "or"]);
    }

    #[test]
    fn words_of_any_script_are_kept() {
        assert_eq!(SearchQuery::new("Привет мир").unwrap().words(), ["привет", "мир"]);
    }

    #[test]
    fn empty_long_wordless_or_wordy_queries_are_refused() {
        assert_eq!(SearchQuery::new("   "), Err(SearchQueryError::Length(0)));
        assert_eq!(SearchQuery::new(&"a".repeat(201)), Err(SearchQueryError::Length(201)));
        assert!(SearchQuery::new(&"a".repeat(200)).is_ok());
        assert_eq!(SearchQuery::new("*** ???"), Err(SearchQueryError::NoWords));
        assert_eq!(SearchQuery::new("a\u{0}b"), Err(SearchQueryError::ControlCharacter));
        let seventeen: Vec<String> = (0..17).map(|i| format!("w{i}")).collect();
        assert_eq!(SearchQuery::new(&seventeen.join(" ")), Err(SearchQueryError::TooManyWords(17)));
    }

    proptest! {
        #[test]
        fn accepted_queries_hold_only_letters_and_digits(raw in "\\PC{0,60}") {
            if let Ok(query) = SearchQuery::new(&raw) {
                prop_assert!(!query.words().is_empty() && query.words().len() <= 16);
                for word in query.words() {
                    prop_assert!(!word.is_empty());
                    prop_assert!(word.chars().all(char::is_alphanumeric));
                }
            }
        }
    }
}
