//! Lenient decoding of the scalar values real PVE servers send.
//!
//! PVE's schema says "integer" or "boolean", but its Perl core serializes
//! whatever scalar it happens to hold: `memory` comes back as `"2048"` on
//! one version and `2048` on another, `/cluster/nextid` is a string,
//! booleans are `0`/`1` (sometimes `"1"`), `cpu` is a float. These
//! `deserialize_with` helpers accept every such spelling and reject only
//! values that cannot mean a number (or flag) at all.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serializer};

/// A number that may arrive as a JSON number or as a decimal string.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Scalar {
    Unsigned(u64),
    Signed(i64),
    Float(f64),
}

impl Scalar {
    fn from_str(text: &str) -> Option<Self> {
        let text = text.trim();
        // PVE 8.1+ writes `memory` as a property string: `current=2048`.
        let text = text.strip_prefix("current=").unwrap_or(text);
        if let Ok(v) = text.parse::<u64>() {
            Some(Self::Unsigned(v))
        } else if let Ok(v) = text.parse::<i64>() {
            Some(Self::Signed(v))
        } else {
            text.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .map(Self::Float)
        }
    }

    fn to_u64(self) -> Option<u64> {
        match self {
            Self::Unsigned(v) => Some(v),
            Self::Signed(v) => u64::try_from(v).ok(),
            Self::Float(v) if v >= 0.0 && v.fract() == 0.0 && v < 1.8e19 => Some(v as u64),
            Self::Float(_) => None,
        }
    }

    fn to_f64(self) -> f64 {
        match self {
            Self::Unsigned(v) => v as f64,
            Self::Signed(v) => v as f64,
            Self::Float(v) => v,
        }
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number or a string holding a number")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
        Ok(Scalar::Unsigned(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
        Ok(Scalar::Signed(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
        Ok(Scalar::Float(v))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
        Ok(Scalar::Unsigned(u64::from(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
        Scalar::from_str(v).ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
    }
}

fn scalar<'de, D: Deserializer<'de>>(d: D) -> Result<Scalar, D::Error> {
    d.deserialize_any(ScalarVisitor)
}

/// Wraps a scalar so `Option<Scalar>` can use serde's own `null`/missing handling.
struct Wrapped(Scalar);

impl<'de> Deserialize<'de> for Wrapped {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        scalar(d).map(Wrapped)
    }
}

fn as_u64<E: de::Error>(s: Scalar) -> Result<u64, E> {
    s.to_u64()
        .ok_or_else(|| E::custom(format!("expected a non-negative integer, got {s:?}")))
}

/// Decodes a `u64` from a number or a numeric string.
pub fn u64_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    as_u64(scalar(d)?)
}

/// Decodes an optional `u64` from a number, a numeric string, `null` or a missing field
/// (pair with `#[serde(default)]`).
pub fn opt_u64_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match Option::<Wrapped>::deserialize(d)? {
        Some(Wrapped(s)) => as_u64(s).map(Some),
        None => Ok(None),
    }
}

/// Decodes a `u32` (a VMID, a core count, a port) from a number or a numeric string.
pub fn u32_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = u64_lenient(d)?;
    u32::try_from(v).map_err(|_| de::Error::custom(format!("{v} is out of range")))
}

/// Decodes an optional `u32` from a number, a numeric string, `null` or a missing field.
pub fn opt_u32_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    opt_u64_lenient(d)?
        .map(|v| u32::try_from(v).map_err(|_| de::Error::custom(format!("{v} is out of range"))))
        .transpose()
}

/// Decodes an optional `f64` (a load such as `cpu`) from a number or a numeric string.
pub fn opt_f64_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Ok(Option::<Wrapped>::deserialize(d)?.map(|Wrapped(s)| s.to_f64()))
}

struct FlagVisitor;

impl Visitor<'_> for FlagVisitor {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a boolean, 0/1, or a string such as \"1\", \"yes\", \"off\"")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
        Ok(v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<bool, E> {
        Ok(v != 0)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<bool, E> {
        Ok(v != 0)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<bool, E> {
        Ok(v != 0.0)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        // The spellings PVE's own `parse_boolean` accepts.
        match v.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" | "" => Ok(false),
            _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
        }
    }
}

struct Flag(bool);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(FlagVisitor).map(Flag)
    }
}

/// Decodes a PVE boolean (`true`, `1`, `"1"`, `"yes"`…); `null` or a missing field is `false`
/// (pair with `#[serde(default)]`).
pub fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(Option::<Flag>::deserialize(d)?.is_some_and(|Flag(v)| v))
}

/// Decodes a string that some versions send as a number (a VMID used as an id, a version).
pub fn opt_string_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct StringVisitor;
    impl Visitor<'_> for StringVisitor {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string or a number")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_owned())
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
            Ok(v.to_string())
        }
    }
    struct Text(String);
    impl<'de> Deserialize<'de> for Text {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(StringVisitor).map(Text)
        }
    }
    Ok(Option::<Text>::deserialize(d)?.map(|Text(s)| s))
}

/// Encodes a flag as PVE's canonical `1`/`0`, for request bodies.
pub fn flag_as_int<S: Serializer>(v: &bool, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u8(u8::from(*v))
}

/// Encodes an optional flag as `1`/`0`; used with `skip_serializing_if = "Option::is_none"`.
pub fn opt_flag_as_int<S: Serializer>(v: &Option<bool>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(b) => s.serialize_u8(u8::from(*b)),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Probe {
        #[serde(default, deserialize_with = "super::opt_u64_lenient")]
        n: Option<u64>,
        #[serde(default, deserialize_with = "super::flag")]
        b: bool,
        #[serde(default, deserialize_with = "super::opt_f64_lenient")]
        f: Option<f64>,
    }

    fn probe(json: &str) -> Result<Probe, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn numbers_as_numbers_strings_and_property_strings() {
        assert_eq!(probe(r#"{"n": 2048}"#).unwrap().n, Some(2048));
        assert_eq!(probe(r#"{"n": "2048"}"#).unwrap().n, Some(2048));
        assert_eq!(probe(r#"{"n": " 2048 "}"#).unwrap().n, Some(2048));
        assert_eq!(probe(r#"{"n": "current=4096"}"#).unwrap().n, Some(4096));
        assert_eq!(probe(r#"{"n": 2048.0}"#).unwrap().n, Some(2048));
        assert_eq!(probe(r#"{"n": null}"#).unwrap().n, None);
        assert_eq!(probe("{}").unwrap().n, None);
        assert!(probe(r#"{"n": "lots"}"#).is_err());
        assert!(probe(r#"{"n": -1}"#).is_err());
        assert!(probe(r#"{"n": 1.5}"#).is_err());
    }

    #[test]
    fn flags_in_every_spelling() {
        for (json, want) in [
            (r#"{"b": 1}"#, true),
            (r#"{"b": 0}"#, false),
            (r#"{"b": "1"}"#, true),
            (r#"{"b": "0"}"#, false),
            (r#"{"b": true}"#, true),
            (r#"{"b": "yes"}"#, true),
            (r#"{"b": "off"}"#, false),
            (r#"{"b": null}"#, false),
            ("{}", false),
        ] {
            assert_eq!(probe(json).unwrap().b, want, "{json}");
        }
        assert!(probe(r#"{"b": "maybe"}"#).is_err());
    }

    #[test]
    fn floats_from_numbers_and_strings() {
        assert_eq!(probe(r#"{"f": 0.0123}"#).unwrap().f, Some(0.0123));
        assert_eq!(probe(r#"{"f": "0.5"}"#).unwrap().f, Some(0.5));
        assert_eq!(probe(r#"{"f": 0}"#).unwrap().f, Some(0.0));
    }
}
