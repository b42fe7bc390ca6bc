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
        let read = T::deserialize(MapAccessDeserializer::new(map)).ok();
        Ok(read.map_or(Lenient::Not(toml::Table::new().into()), Lenient::Read))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        let read = T::deserialize(SeqAccessDeserializer::new(seq)).ok();
        Ok(read.map_or(Lenient::Not(toml::Value::Array(Vec::new())), Lenient::Read))
    }
}
