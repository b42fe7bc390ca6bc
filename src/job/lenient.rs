//! A section read whatever was written in its place: a table (or list)
//! when it is one, else the value itself, so a job file with `pricing = 3`
//! is one problem naming the key, not the end of reading.

use std::marker::PhantomData;

use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// A `T` (a table or a list), or the value written where it belongs.
pub(super) enum Lenient<T> {
    Read(T),
    Not(toml::Value),
    /// A table holding a value no TOML reader can hold (an integer past
    /// 2^63, 1e999): why, as serde said it. Without it the section was
    /// "not a table" although it is one.
    Unreadable(String),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LenientVisitor(PhantomData))
    }
}

struct LenientVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for LenientVisitor<T> {
    type Value = Lenient<T>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any value")
    }
    fn visit_bool<E>(self, b: bool) -> Result<Self::Value, E> {
        Ok(Lenient::Not(toml::Value::Boolean(b)))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Self::Value, E> {
        Ok(Lenient::Not(toml::Value::Integer(n)))
    }
    fn visit_f64<E>(self, x: f64) -> Result<Self::Value, E> {
        Ok(Lenient::Not(toml::Value::Float(x)))
    }
    fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Lenient::Not(toml::Value::String(s.into())))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        match T::deserialize(MapAccessDeserializer::new(map)) {
            Ok(read) => Ok(Lenient::Read(read)),
            // A table where a list belongs ([params] for [[params]]): the
            // caller says what to write instead.
            Err(e) if e.to_string().starts_with("invalid type: map") => {
                Ok(Lenient::Not(toml::Table::new().into()))
            }
            Err(e) => Ok(Lenient::Unreadable(e.to_string())),
        }
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        let read = T::deserialize(SeqAccessDeserializer::new(seq)).ok();
        Ok(read.map_or(Lenient::Not(toml::Value::Array(Vec::new())), Lenient::Read))
    }
}

/// The problem of a table holding a value TOML cannot hold.
pub(super) fn unreadable(why: &str) -> String {
    format!(
        "holds a value that cannot be read ({}); integers must be below 2^63 and numbers finite",
        why.trim_end().replace('\n', " ")
    )
}
