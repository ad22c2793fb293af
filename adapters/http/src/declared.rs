//! Request strings whose schema states the limits the server enforces, while the check stays with
//! the domain type, which answers with its own error code (`invalid_username`, `weak_password`…).

use std::borrow::Cow;
use std::marker::PhantomData;

use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
use poem_openapi::types::{ParseError, ParseFromJSON, ParseFromParameter, ParseResult, ToJSON, Type};
use serde_json::Value;

/// What the spec says of a string, and the longest one parsing lets through to the domain check.
pub trait Rule: Send + Sync + 'static {
    /// The schema clients see: lengths, format.
    fn schema() -> MetaSchema;
    /// Longer strings are refused while parsing, so none reaches a map key or a log line whole.
    const HARD_MAX_CHARS: usize;
}

/// A string parsed as is and checked later by its domain type; the spec shows `R`'s limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declared<R>(String, PhantomData<R>);

impl<R> Declared<R> {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<R> std::ops::Deref for Declared<R> {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl<R: Rule> Declared<R> {
    fn bounded(raw: String) -> Result<Self, String> {
        if raw.chars().count() > R::HARD_MAX_CHARS {
            return Err(format!("must be at most {} characters", R::HARD_MAX_CHARS));
        }
        Ok(Self(raw, PhantomData))
    }
}

impl<R: Rule> Type for Declared<R> {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        "string".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(R::schema()))
    }

    fn as_raw_value(&self) -> Option<&Self> {
        Some(self)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self> + 'a> {
        Box::new(std::iter::once(self))
    }
}

impl<R: Rule> ParseFromJSON for Declared<R> {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match value {
            Some(Value::String(raw)) => Self::bounded(raw).map_err(ParseError::custom),
            other => Err(ParseError::expected_type(other.unwrap_or_default())),
        }
    }
}

/// Unbounded: the request line bounds a parameter already, and a path id that is too long must
/// read as an unknown one (404), like any other id that does not parse.
impl<R: Rule> ParseFromParameter for Declared<R> {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        Ok(Self(value.to_owned(), PhantomData))
    }
}

impl<R: Rule> ToJSON for Declared<R> {
    fn to_json(&self) -> Option<Value> {
        Some(Value::String(self.0.clone()))
    }
}

impl<'de, R: Rule> serde::Deserialize<'de> for Declared<R> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::bounded(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

fn string_of_length(min: usize, max: usize) -> MetaSchema {
    MetaSchema { min_length: Some(min), max_length: Some(max), ..MetaSchema::new("string") }
}

/// `domain::Username`: 2 to 32 letters or digits of any script, starting with a letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsernameRule;

impl Rule for UsernameRule {
    fn schema() -> MetaSchema {
        string_of_length(domain::Username::MIN_CHARS, domain::Username::MAX_CHARS)
    }
    const HARD_MAX_CHARS: usize = 256;
}

/// `domain::Password`: 8 to 128 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordRule;

impl Rule for PasswordRule {
    fn schema() -> MetaSchema {
        string_of_length(domain::Password::MIN_CHARS, domain::Password::MAX_CHARS)
    }
    const HARD_MAX_CHARS: usize = 1024;
}

/// `domain::RoomName`: 1 to 64 characters after trimming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomNameRule;

impl Rule for RoomNameRule {
    fn schema() -> MetaSchema {
        string_of_length(1, domain::RoomName::MAX_CHARS)
    }
    const HARD_MAX_CHARS: usize = 1024;
}

/// `domain::MessageText`: 1 to 4000 characters after trimming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageTextRule;

impl Rule for MessageTextRule {
    fn schema() -> MetaSchema {
        string_of_length(1, domain::MessageText::MAX_CHARS)
    }
    const HARD_MAX_CHARS: usize = 16 * 1024;
}

/// `domain::Emoji`: one emoji sequence of 1 to 32 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmojiRule;

impl Rule for EmojiRule {
    fn schema() -> MetaSchema {
        string_of_length(1, domain::Emoji::MAX_CHARS)
    }
    const HARD_MAX_CHARS: usize = 256;
}

/// `domain::ClientMsgId`: 1 to 64 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientMsgIdRule;

impl Rule for ClientMsgIdRule {
    fn schema() -> MetaSchema {
        string_of_length(1, domain::ClientMsgId::MAX_CHARS)
    }
    const HARD_MAX_CHARS: usize = 256;
}

/// A user, room or file id: a UUID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdRule;

impl Rule for IdRule {
    fn schema() -> MetaSchema {
        MetaSchema::new_with_format("string", "uuid")
    }
    const HARD_MAX_CHARS: usize = 64;
}

/// An id as a request carries it: the spec says `format: uuid`; the route decides what a
/// malformed one means (a 404 for a path, a 400 for a body field).
pub type Id = Declared<IdRule>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_states_the_domain_limits() {
        let MetaSchemaRef::Inline(schema) = Declared::<UsernameRule>::schema_ref() else { panic!("inline") };

        assert_eq!((schema.min_length, schema.max_length), (Some(2), Some(32)));
        let MetaSchemaRef::Inline(id) = Id::schema_ref() else { panic!("inline") };
        assert_eq!(id.format, Some("uuid"));
    }

    #[test]
    fn parsing_leaves_the_rule_to_the_domain_but_bounds_the_length() {
        assert!(Declared::<UsernameRule>::parse_from_json(Some(Value::from("x"))).is_ok());
        assert!(Declared::<UsernameRule>::parse_from_json(Some(Value::from("x".repeat(257)))).is_err());
        assert!(Declared::<UsernameRule>::parse_from_json(Some(Value::from(7))).is_err());
    }
}
