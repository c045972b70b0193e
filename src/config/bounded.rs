//! A free-form JSON value (`bootstrap`, an exporter's `settings`) parsed with a bound on its
//! depth, so a hostile configuration cannot overflow the parsing thread's stack.

/// The deepest nesting of arrays and objects a free-form value (`bootstrap`, an exporter's
/// `settings`) may have. Parsing recurses once per level on the calling thread, so the bound
/// keeps the stack a configure call needs small (a host thread may have as little as 64 KiB).
pub const MAX_VALUE_DEPTH: usize = 64;

pub(crate) const TOO_DEEP: &str = "nested more than 64 levels deep (arrays and objects)";

/// A JSON value of at most `MAX_VALUE_DEPTH` levels; a deeper one is an error as soon as the
/// parser reaches the level past the bound.
pub(crate) fn bounded_value<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<serde_json::Value, D::Error> {
    serde::de::DeserializeSeed::deserialize(Bounded(MAX_VALUE_DEPTH), d)
}

/// Builds a `serde_json::Value` with `.0` levels of nesting left.
struct Bounded(usize);

impl Bounded {
    fn inner<E: serde::de::Error>(&self) -> std::result::Result<Bounded, E> {
        match self.0 {
            0 => Err(E::custom(TOO_DEEP)),
            left => Ok(Bounded(left - 1)),
        }
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for Bounded {
    type Value = serde_json::Value;

    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        d: D,
    ) -> std::result::Result<serde_json::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Bounded {
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> std::result::Result<serde_json::Value, E> {
        Ok(v.into())
    }
    fn visit_i64<E>(self, v: i64) -> std::result::Result<serde_json::Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> std::result::Result<serde_json::Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E>(self, v: f64) -> std::result::Result<serde_json::Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, Into::into))
    }
    fn visit_str<E>(self, v: &str) -> std::result::Result<serde_json::Value, E> {
        Ok(v.into())
    }
    fn visit_string<E>(self, v: String) -> std::result::Result<serde_json::Value, E> {
        Ok(v.into())
    }
    fn visit_unit<E>(self) -> std::result::Result<serde_json::Value, E> {
        Ok(serde_json::Value::Null)
    }
    fn visit_none<E>(self) -> std::result::Result<serde_json::Value, E> {
        Ok(serde_json::Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> std::result::Result<serde_json::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(self.inner()?)? {
            out.push(v);
        }
        Ok(serde_json::Value::Array(out))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<serde_json::Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(self.inner()?)?;
            out.insert(key, value);
        }
        Ok(serde_json::Value::Object(out))
    }
}
