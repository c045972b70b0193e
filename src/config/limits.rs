//! The cgroup limits of a group's workers (`memory_max`, `memory_high`, `pids_max`, `cpu_max`):
//! their types, what JSON they take, and the schema of exactly that.
//!
//! Sizes are a number of bytes (`1048576`), a string with a binary suffix (`"512M"`, `"1G"`:
//! K, M, G, T are powers of 1024) or `"max"`; `cpu_max` is `"50%"` of one core, or cgroup v2's
//! `"quota period"` in µs, or `"max"`. The digit counts are bounded so every value fits the
//! kernel's 64-bit files, and the schema's patterns say the same bounds.

use std::borrow::Cow;
use std::fmt;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// The largest byte count written as a plain number (15 digits).
const MAX_BYTES: u64 = 999_999_999_999_999;
/// The largest `pids_max` (the kernel's `PID_MAX_LIMIT`).
const MAX_PIDS: u64 = 4_194_304;
/// The period of a `"N%"` `cpu_max`, in µs (the kernel's default).
const DEFAULT_PERIOD_US: u64 = 100_000;
/// cgroup v2's bounds of a period and the least quota, in µs.
const MIN_PERIOD_US: u64 = 1_000;
const MAX_PERIOD_US: u64 = 1_000_000;
const MIN_QUOTA_US: u64 = 1_000;

/// A memory limit: bytes, or none (`"max"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemorySize {
    /// No limit.
    Max,
    /// This many bytes.
    Bytes(u64),
}

/// A limit on the number of tasks: a count, or none (`"max"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PidsMax {
    /// No limit.
    Max,
    /// At most this many processes and threads.
    Count(u64),
}

/// A CPU bandwidth limit: `quota_us` of CPU time every `period_us`, or none (`"max"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuMax {
    /// No limit.
    Max,
    /// At most `quota_us` of CPU time each `period_us`.
    Quota {
        /// CPU time per period, µs.
        quota_us: u64,
        /// The period, µs.
        period_us: u64,
    },
}

/// Digits and a suffix: the largest digit count each suffix allows, and its factor.
const SUFFIXES: &[(&str, usize, u64)] = &[
    ("", 15, 1),
    ("K", 12, 1 << 10),
    ("M", 9, 1 << 20),
    ("G", 6, 1 << 30),
    ("T", 3, 1 << 40),
];

/// A positive number without leading zero of at most `max_digits` digits.
fn positive(s: &str, max_digits: usize) -> Option<u64> {
    let ok = !s.is_empty()
        && s.len() <= max_digits
        && s.bytes().all(|b| b.is_ascii_digit())
        && !s.starts_with('0');
    ok.then(|| s.parse().ok()).flatten()
}

impl MemorySize {
    fn parse(s: &str) -> Option<MemorySize> {
        if s == "max" {
            return Some(MemorySize::Max);
        }
        SUFFIXES.iter().find_map(|&(suffix, digits, factor)| {
            let number = s.strip_suffix(suffix)?;
            // A plain number must not end in a suffix letter: "12K" is not tried as "".
            positive(number, digits).map(|n| MemorySize::Bytes(n * factor))
        })
    }

    fn number(n: u64) -> Option<MemorySize> {
        (1..=MAX_BYTES).contains(&n).then_some(MemorySize::Bytes(n))
    }

    /// What cgroup files take: the byte count, or `max`.
    pub fn value(self) -> String {
        match self {
            MemorySize::Max => "max".into(),
            MemorySize::Bytes(n) => n.to_string(),
        }
    }
}

impl PidsMax {
    fn parse(s: &str) -> Option<PidsMax> {
        (s == "max").then_some(PidsMax::Max)
    }

    fn number(n: u64) -> Option<PidsMax> {
        (1..=MAX_PIDS).contains(&n).then_some(PidsMax::Count(n))
    }

    /// What `pids.max` takes.
    pub fn value(self) -> String {
        match self {
            PidsMax::Max => "max".into(),
            PidsMax::Count(n) => n.to_string(),
        }
    }
}

impl CpuMax {
    fn parse(s: &str) -> Option<CpuMax> {
        if s == "max" {
            return Some(CpuMax::Max);
        }
        if let Some(percent) = s.strip_suffix('%') {
            let p = positive(percent, 5)?;
            return Some(CpuMax::Quota {
                quota_us: (p * DEFAULT_PERIOD_US / 100).max(MIN_QUOTA_US),
                period_us: DEFAULT_PERIOD_US,
            });
        }
        let (quota, period) = s.split_once(' ')?;
        let quota_us = positive(quota, 10).filter(|&q| q >= MIN_QUOTA_US)?;
        let period_us =
            positive(period, 7).filter(|p| (MIN_PERIOD_US..=MAX_PERIOD_US).contains(p))?;
        Some(CpuMax::Quota {
            quota_us,
            period_us,
        })
    }
}

/// A limit type read from a JSON number or string.
trait Limit: Sized {
    const EXPECTED: &'static str;
    fn from_str(s: &str) -> Option<Self>;
    fn from_number(n: u64) -> Option<Self>;
}

impl Limit for MemorySize {
    const EXPECTED: &'static str = concat!(
        "a number of bytes (1 to 999999999999999), ",
        "a size such as \"512M\" (K, M, G, T), or \"max\""
    );
    fn from_str(s: &str) -> Option<Self> {
        MemorySize::parse(s)
    }
    fn from_number(n: u64) -> Option<Self> {
        MemorySize::number(n)
    }
}

impl Limit for PidsMax {
    const EXPECTED: &'static str = "a number of tasks (1 to 4194304) or \"max\"";
    fn from_str(s: &str) -> Option<Self> {
        PidsMax::parse(s)
    }
    fn from_number(n: u64) -> Option<Self> {
        PidsMax::number(n)
    }
}

impl Limit for CpuMax {
    const EXPECTED: &'static str = concat!(
        "\"N%\" of one core, \"QUOTA PERIOD\" in µs ",
        "(quota at least 1000, period 1000 to 1000000), or \"max\""
    );
    fn from_str(s: &str) -> Option<Self> {
        CpuMax::parse(s)
    }
    fn from_number(_: u64) -> Option<Self> {
        None
    }
}

struct LimitVisitor<T>(std::marker::PhantomData<T>);

impl<T: Limit> Visitor<'_> for LimitVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(T::EXPECTED)
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<T, E> {
        T::from_number(n).ok_or_else(|| E::custom(format!("{n}: expected {}", T::EXPECTED)))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<T, E> {
        Err(E::custom(format!("{n}: expected {}", T::EXPECTED)))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<T, E> {
        T::from_str(s).ok_or_else(|| E::custom(format!("'{s}': expected {}", T::EXPECTED)))
    }
}

macro_rules! limit_serde {
    ($t:ty) => {
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_any(LimitVisitor(std::marker::PhantomData))
            }
        }
    };
}
limit_serde!(MemorySize);
limit_serde!(PidsMax);
limit_serde!(CpuMax);

impl Serialize for MemorySize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            MemorySize::Max => s.serialize_str("max"),
            MemorySize::Bytes(n) => s.serialize_u64(*n),
        }
    }
}

impl Serialize for PidsMax {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            PidsMax::Max => s.serialize_str("max"),
            PidsMax::Count(n) => s.serialize_u64(*n),
        }
    }
}

impl Serialize for CpuMax {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            CpuMax::Max => s.serialize_str("max"),
            CpuMax::Quota {
                quota_us,
                period_us,
            } => s.serialize_str(&format!("{quota_us} {period_us}")),
        }
    }
}

impl JsonSchema for MemorySize {
    fn schema_name() -> Cow<'static, str> {
        "MemorySize".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A number of bytes, a size with a binary suffix (\"512M\"), or \"max\".",
            "oneOf": [
                {"type": "integer", "minimum": 1, "maximum": MAX_BYTES},
                {"type": "string", "pattern": concat!(
                    "^(max|[1-9][0-9]{0,14}|[1-9][0-9]{0,11}K|[1-9][0-9]{0,8}M",
                    "|[1-9][0-9]{0,5}G|[1-9][0-9]{0,2}T)$"
                )}
            ]
        })
    }
}

impl JsonSchema for PidsMax {
    fn schema_name() -> Cow<'static, str> {
        "PidsMax".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A number of tasks (processes and threads), or \"max\".",
            "oneOf": [
                {"type": "integer", "minimum": 1, "maximum": MAX_PIDS},
                {"const": "max"}
            ]
        })
    }
}

impl JsonSchema for CpuMax {
    fn schema_name() -> Cow<'static, str> {
        "CpuMax".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description":
                "\"N%\" of one core, \"QUOTA PERIOD\" in µs (cgroup v2's cpu.max), or \"max\".",
            "type": "string",
            "pattern": "^(max|[1-9][0-9]{0,4}%|[1-9][0-9]{3,9} ([1-9][0-9]{3,5}|1000000))$"
        })
    }
}

/// The limits of one group (its four keys), when any is set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// `memory_max`.
    pub memory_max: Option<MemorySize>,
    /// `memory_high`.
    pub memory_high: Option<MemorySize>,
    /// `pids_max`.
    pub pids_max: Option<PidsMax>,
    /// `cpu_max`.
    pub cpu_max: Option<CpuMax>,
}

impl Limits {
    /// Whether no limit is set.
    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_suffixes_and_bounds() {
        assert_eq!(
            MemorySize::parse("512M"),
            Some(MemorySize::Bytes(512 << 20))
        );
        assert_eq!(MemorySize::parse("1G"), Some(MemorySize::Bytes(1 << 30)));
        assert_eq!(MemorySize::parse("4096"), Some(MemorySize::Bytes(4096)));
        assert_eq!(MemorySize::parse("3K"), Some(MemorySize::Bytes(3 << 10)));
        assert_eq!(MemorySize::parse("2T"), Some(MemorySize::Bytes(2 << 40)));
        assert_eq!(MemorySize::parse("max"), Some(MemorySize::Max));
        for bad in [
            "", "0", "012M", "1.5G", "1 G", "1g", "1000T", "1P", "-1", "M",
        ] {
            assert_eq!(MemorySize::parse(bad), None, "{bad}");
        }
        assert_eq!(MemorySize::number(0), None);
    }

    #[test]
    fn a_limit_of_the_wrong_kind_says_what_is_expected() {
        for (keys, expected) in [
            (r#""memory_max": true"#, MemorySize::EXPECTED),
            (r#""pids_max": [1]"#, PidsMax::EXPECTED),
            (r#""cpu_max": 0.5"#, CpuMax::EXPECTED),
        ] {
            let e = crate::config::error_of(keys);
            assert!(e.contains(expected), "{keys}: {e}");
        }
    }

    #[test]
    fn limits_are_written_as_the_cgroup_files_take_them() {
        assert_eq!(MemorySize::Bytes(512 << 20).value(), "536870912");
        assert_eq!(MemorySize::Max.value(), "max");
        assert_eq!(PidsMax::Count(64).value(), "64");
        assert_eq!(PidsMax::Max.value(), "max");
    }

    #[test]
    fn cpu_max_takes_a_percentage_or_quota_and_period() {
        assert_eq!(
            CpuMax::parse("20%"),
            Some(CpuMax::Quota {
                quota_us: 20_000,
                period_us: 100_000
            })
        );
        assert_eq!(
            CpuMax::parse("50000 100000"),
            Some(CpuMax::Quota {
                quota_us: 50_000,
                period_us: 100_000
            })
        );
        assert_eq!(CpuMax::parse("max"), Some(CpuMax::Max));
        for bad in [
            "0%",
            "999 100000",
            "1000 999",
            "1000 1000001",
            "50",
            "1000  1000",
        ] {
            assert_eq!(CpuMax::parse(bad), None, "{bad}");
        }
    }
}
