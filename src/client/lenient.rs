//! Lenient typed pieces of server JSON that never build a tree.
//!
//! A server may put anything anywhere; reading it into `serde_json::Value`
//! costs about 30 times its text (a `Value` per `{}`), so a 16 MiB reply of
//! tiny nodes took half a gigabyte. These types keep what is used and skip
//! the rest as it is read: [`Scalar`] keeps a string, number, bool or null and
//! skips any list or object; [`Obj`] reads a typed object and skips anything
//! else; [`Content`] joins the text of message content as it is read.

use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Number;

/// A scalar field; a list or object there is skipped as [`Scalar::Compound`].
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    Compound,
}

impl Scalar {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Scalar::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn into_string(self) -> Option<String> {
        match self {
            Scalar::String(s) => Some(s),
            _ => None,
        }
    }
}

/// A string field, or None for anything else.
pub fn string(value: Option<Scalar>) -> Option<String> {
    value.and_then(Scalar::into_string)
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Scalar, E> {
        Ok(Scalar::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Scalar, E> {
        Ok(Scalar::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Scalar, E> {
        Ok(Scalar::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Scalar, E> {
        Ok(Number::from_f64(v).map_or(Scalar::Compound, Scalar::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Scalar, E> {
        Ok(Scalar::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Scalar, E> {
        Ok(Scalar::String(v))
    }
    fn visit_unit<E>(self) -> Result<Scalar, E> {
        Ok(Scalar::Null)
    }
    fn visit_none<E>(self) -> Result<Scalar, E> {
        Ok(Scalar::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, inner: D) -> Result<Scalar, D::Error> {
        inner.deserialize_any(ScalarVisitor)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Compound)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Compound)
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Scalar, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

/// A struct of optional fields read from a JSON object: the last of a
/// repeated key wins and unknown keys are skipped unread, as a `Value` would
/// have it (a derived reader fails a whole reply on a repeated key).
macro_rules! lenient_struct {
    ($(#[$meta:meta])* pub struct $name:ident {
        $($(#[doc = $doc:literal])* $key:literal => pub $field:ident : $ty:ty,)*
    }) => {
        $(#[$meta])*
        #[derive(Debug, Default)]
        pub struct $name {
            $($(#[doc = $doc])* pub $field: $ty,)*
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct Fields;
                impl<'de> serde::de::Visitor<'de> for Fields {
                    type Value = $name;
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        f.write_str(concat!("an object (", stringify!($name), ")"))
                    }
                    fn visit_map<A: serde::de::MapAccess<'de>>(
                        self,
                        mut map: A,
                    ) -> Result<$name, A::Error> {
                        let mut read = $name::default();
                        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                            match key.as_ref() {
                                $($key => read.$field = map.next_value()?,)*
                                _ => {
                                    map.next_value::<serde::de::IgnoredAny>()?;
                                }
                            }
                        }
                        Ok(read)
                    }
                }
                deserializer.deserialize_map(Fields)
            }
        }
    };
}
pub(crate) use lenient_struct;

/// A typed object, or None for anything else (skipped unread).
#[derive(Debug)]
pub struct Obj<T>(pub Option<T>);

impl<T> Default for Obj<T> {
    fn default() -> Self {
        Obj(None)
    }
}

impl<T> Obj<T> {
    pub fn as_ref(&self) -> Option<&T> {
        self.0.as_ref()
    }
}

struct ObjVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjVisitor<T> {
    type Value = Obj<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Obj<T>, A::Error> {
        T::deserialize(MapAccessDeserializer::new(map)).map(|t| Obj(Some(t)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Obj<T>, A::Error> {
        ScalarVisitor.visit_seq(seq).map(|_| Obj(None))
    }
    fn visit_some<D: Deserializer<'de>>(self, inner: D) -> Result<Obj<T>, D::Error> {
        inner.deserialize_any(self)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Obj<T>, E> {
        Ok(Obj(None))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Obj<T>, E> {
        Ok(Obj(None))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Obj<T>, E> {
        Ok(Obj(None))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Obj<T>, E> {
        Ok(Obj(None))
    }
    fn visit_str<E>(self, _: &str) -> Result<Obj<T>, E> {
        Ok(Obj(None))
    }
    fn visit_unit<E>(self) -> Result<Obj<T>, E> {
        Ok(Obj(None))
    }
    fn visit_none<E>(self) -> Result<Obj<T>, E> {
        Ok(Obj(None))
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Obj<T>, D::Error> {
        deserializer.deserialize_any(ObjVisitor(PhantomData))
    }
}

/// Message content: a string, or parts whose `text` is joined as read (a
/// string part, or an object part of type `text`, `output_text` or none).
#[derive(Debug, PartialEq)]
pub enum Content {
    Text(String),
    /// A number, bool or object: no text.
    Other,
}

/// Message content as text: `None` when absent, null or not text.
pub fn content_text(content: Option<Content>) -> Option<String> {
    match content? {
        Content::Text(text) => Some(text),
        Content::Other => None,
    }
}

/// One object part of content; anything else in it is skipped.
#[derive(Default, Deserialize)]
#[serde(default)]
struct Part {
    #[serde(rename = "type")]
    kind: Option<Scalar>,
    text: Option<Scalar>,
}

struct PartText;

impl<'de> Visitor<'de> for PartText {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a content part")
    }
    fn visit_str<E>(self, v: &str) -> Result<Option<String>, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Option<String>, E> {
        Ok(Some(v))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<String>, A::Error> {
        // Read by hand, not derived: a repeated key keeps its last value
        // rather than failing the whole reply.
        let mut part = Part::default();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "type" => part.kind = Some(map.next_value()?),
                "text" => part.text = Some(map.next_value()?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let kind = part.kind.as_ref().and_then(Scalar::as_str);
        let is_text = matches!(kind, None | Some("text") | Some("output_text"));
        Ok(part.text.and_then(Scalar::into_string).filter(|_| is_text))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Option<String>, A::Error> {
        ScalarVisitor.visit_seq(seq).map(|_| None)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Option<String>, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Option<String>, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Option<String>, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Option<String>, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Option<String>, E> {
        Ok(None)
    }
}

struct PartOf(Option<String>);

impl<'de> Deserialize<'de> for PartOf {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<PartOf, D::Error> {
        deserializer.deserialize_any(PartText).map(PartOf)
    }
}

struct ContentVisitor;

impl<'de> Visitor<'de> for ContentVisitor {
    type Value = Content;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("message content")
    }
    fn visit_str<E>(self, v: &str) -> Result<Content, E> {
        Ok(Content::Text(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Content, E> {
        Ok(Content::Text(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Content, A::Error> {
        let mut text = String::new();
        while let Some(PartOf(part)) = seq.next_element()? {
            if let Some(part) = part {
                text.push_str(&part);
            }
        }
        Ok(Content::Text(text))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Content, A::Error> {
        ScalarVisitor.visit_map(map).map(|_| Content::Other)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Content, E> {
        Ok(Content::Other)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Content, E> {
        Ok(Content::Other)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Content, E> {
        Ok(Content::Other)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Content, E> {
        Ok(Content::Other)
    }
}

impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Content, D::Error> {
        deserializer.deserialize_any(ContentVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default, Deserialize)]
    #[serde(default)]
    struct Holder {
        a: Option<Scalar>,
        o: Obj<Holder2>,
        c: Option<Content>,
    }

    #[derive(Default, Deserialize)]
    #[serde(default)]
    struct Holder2 {
        x: Option<Scalar>,
    }

    #[test]
    fn lists_and_objects_are_skipped_where_they_are_not_used() {
        let h: Holder = serde_json::from_str(r#"{"a":[{},{}],"o":"no","c":{"k":1}}"#).unwrap();
        assert_eq!(h.a, Some(Scalar::Compound));
        assert!(h.o.as_ref().is_none());
        assert_eq!(content_text(h.c), None);
        let h: Holder = serde_json::from_str(
            r#"{"a":"s","o":{"x":2,"y":[]},"c":["a",{"type":"text","text":"b","type":"text"},{"type":"image","text":"no"},{"text":"c"},[1],3]}"#,
        )
        .unwrap();
        assert_eq!(h.a.and_then(Scalar::into_string).as_deref(), Some("s"));
        assert_eq!(
            h.o.as_ref().and_then(|o| o.x.clone()),
            Some(Scalar::Number(2.into()))
        );
        assert_eq!(content_text(h.c).as_deref(), Some("abc"));
        let h: Holder = serde_json::from_str(r#"{"a":null,"c":null}"#).unwrap();
        assert_eq!((h.a, content_text(h.c)), (None, None));
    }
}
