//! Part 7's identity, limits and environment keys of a group (`user`, `group`,
//! `supplementary_groups`, `umask`, `no_new_privileges`, `rlimits`, `env_files`): their types and
//! the checks that need no system (names are resolved when the group is started).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A user or a group: its name, or its number (also written as a string of digits).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Id {
    /// A uid or gid.
    Number(u32),
    /// A name looked up in the user or group database when the group is started (a string of
    /// digits is taken as a number).
    Name(#[schemars(length(min = 1))] String),
}

impl Id {
    /// The number, when given as one or as a string of digits.
    pub fn number(&self) -> Option<u32> {
        match self {
            Id::Number(n) => Some(*n),
            Id::Name(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s.parse().ok(),
            Id::Name(_) => None,
        }
    }
}

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Id::Number(n) => write!(f, "{n}"),
            Id::Name(s) => f.write_str(s),
        }
    }
}

/// `"infinity"`: no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Infinity {
    /// No limit (`RLIM_INFINITY`).
    #[serde(rename = "infinity")]
    Infinity,
}

/// One bound of a resource limit: a number, or `"infinity"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Limit {
    /// A finite limit (bytes, descriptors, processes or seconds, as the resource counts).
    Value(u64),
    /// No limit.
    Infinity(Infinity),
}

impl Limit {
    /// The value `setrlimit` takes (`RLIM_INFINITY` is all ones).
    pub fn raw(self) -> u64 {
        match self {
            Limit::Value(v) => v.min(u64::MAX - 1),
            Limit::Infinity(_) => u64::MAX,
        }
    }
}

/// A resource limit: one bound for both the soft and the hard limit, or `[soft, hard]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Rlimit {
    /// Soft and hard limit alike.
    Both(Limit),
    /// `[soft, hard]`, soft at most hard.
    SoftHard([Limit; 2]),
}

impl Rlimit {
    /// `(soft, hard)` as `setrlimit` takes them.
    pub fn soft_hard(self) -> (u64, u64) {
        match self {
            Rlimit::Both(l) => (l.raw(), l.raw()),
            Rlimit::SoftHard([s, h]) => (s.raw(), h.raw()),
        }
    }
}

/// The resource limits a group's workers start with (`setrlimit`); absent ones are inherited
/// from the host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rlimits {
    /// `RLIMIT_NOFILE`: open descriptors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nofile: Option<Rlimit>,
    /// `RLIMIT_CORE`: core file size, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub core: Option<Rlimit>,
    /// `RLIMIT_NPROC`: processes of the worker's real uid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nproc: Option<Rlimit>,
    /// `RLIMIT_AS`: address space, bytes.
    #[serde(default, rename = "as", skip_serializing_if = "Option::is_none")]
    pub address_space: Option<Rlimit>,
    /// `RLIMIT_MEMLOCK`: locked memory, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memlock: Option<Rlimit>,
    /// `RLIMIT_STACK`: stack size, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<Rlimit>,
    /// `RLIMIT_CPU`: CPU time, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Rlimit>,
    /// `RLIMIT_FSIZE`: size of a file written, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fsize: Option<Rlimit>,
}

impl Rlimits {
    /// The limits given, with their JSON names, in a fixed order.
    pub fn given(&self) -> Vec<(&'static str, Rlimit)> {
        [
            ("nofile", self.nofile),
            ("core", self.core),
            ("nproc", self.nproc),
            ("as", self.address_space),
            ("memlock", self.memlock),
            ("stack", self.stack),
            ("cpu", self.cpu),
            ("fsize", self.fsize),
        ]
        .into_iter()
        .filter_map(|(name, limit)| limit.map(|l| (name, l)))
        .collect()
    }

    /// Whether no limit is given.
    pub fn is_empty(&self) -> bool {
        self.given().is_empty()
    }
}

/// Checks what needs no system: `(key, why)` on failure, the key relative to the group.
pub(super) fn validate(g: &super::GroupSpec) -> Result<(), (String, String)> {
    for (key, id) in [("user", &g.user), ("group", &g.group)] {
        if let Some(id) = id {
            check_id(key, id)?;
        }
    }
    for (j, id) in g.supplementary_groups.iter().flatten().enumerate() {
        check_id(&format!("supplementary_groups[{j}]"), id)?;
    }
    if let Some(umask) = &g.umask {
        parse_umask(umask).ok_or_else(|| {
            (
                "umask".to_string(),
                format!("'{umask}' is not 3 or 4 octal digits of at most 0777"),
            )
        })?;
    }
    for (name, limit) in g.rlimits.given() {
        let (soft, hard) = limit.soft_hard();
        if soft > hard {
            return Err((
                format!("rlimits.{name}"),
                "the soft limit is more than the hard limit".into(),
            ));
        }
    }
    for (j, file) in g.env_files.iter().enumerate() {
        let path = file.strip_prefix('-').unwrap_or(file);
        if !path.starts_with('/') || path.contains('\0') {
            return Err((
                format!("env_files[{j}]"),
                format!("'{file}' is not an absolute path (optionally after '-')"),
            ));
        }
    }
    Ok(())
}

fn check_id(key: &str, id: &Id) -> Result<(), (String, String)> {
    if id.number() == Some(u32::MAX) {
        // setresuid, setresgid take (uid_t)-1 as "leave it", so the worker would keep the host's.
        return Err((
            key.into(),
            format!("{} is (uid_t)-1, which is no user or group", u32::MAX),
        ));
    }
    if let Id::Name(name) = id {
        if name.is_empty() || name.contains('\0') {
            return Err((key.into(), "must be a non-empty name without NUL".into()));
        }
        if id.number().is_none() && name.bytes().all(|b| b.is_ascii_digit()) {
            return Err((key.into(), format!("{name} is out of range")));
        }
    }
    Ok(())
}

/// `"0027"` as a mode: 3 or 4 octal digits, at most 0777.
pub fn parse_umask(text: &str) -> Option<u32> {
    let digits_ok =
        (3..=4).contains(&text.len()) && text.bytes().all(|b| (b'0'..=b'7').contains(&b));
    let mode = u32::from_str_radix(text, 8).ok().filter(|_| digits_ok)?;
    (mode <= 0o777).then_some(mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn umasks_are_three_or_four_octal_digits_up_to_0777() {
        assert_eq!(parse_umask("0027"), Some(0o27));
        assert_eq!(parse_umask("077"), Some(0o77));
        assert_eq!(parse_umask("0777"), Some(0o777));
        for bad in ["", "27", "1000", "0778", "00027", "abc", "+027", "08"] {
            assert_eq!(parse_umask(bad), None, "{bad}");
        }
    }

    #[test]
    fn ids_are_numbers_or_names_and_digit_strings_are_numbers() {
        assert_eq!(Id::Number(5).number(), Some(5));
        assert_eq!(Id::Name("65534".into()).number(), Some(65534));
        assert_eq!(Id::Name("nobody".into()).number(), None);
        assert_eq!(Id::Name("99999999999".into()).number(), None);
        // Only digits are a number: Rust's parser alone would take "+5" as 5.
        assert_eq!(Id::Name("+5".into()).number(), None);
        assert_eq!(Id::Name(String::new()).number(), None);
    }

    #[test]
    fn an_id_is_written_as_given_for_the_lookup_and_the_messages() {
        assert_eq!(Id::Name("nobody".into()).to_string(), "nobody");
        assert_eq!(Id::Number(65534).to_string(), "65534");
    }

    #[test]
    fn the_largest_finite_limit_stays_finite() {
        // All ones is RLIM_INFINITY: a finite limit written as u64::MAX must not become it.
        assert_eq!(Limit::Value(u64::MAX).raw(), u64::MAX - 1);
        assert_eq!(Limit::Value(7).raw(), 7);
    }

    #[test]
    fn rlimits_are_empty_until_one_is_given() {
        assert!(Rlimits::default().is_empty());
        let one: Rlimits = serde_json::from_str(r#"{"fsize": 1}"#).unwrap();
        assert!(!one.is_empty());
    }

    #[test]
    fn a_single_limit_sets_both_and_infinity_is_all_ones() {
        let both: Rlimit = serde_json::from_str("64").unwrap();
        assert_eq!(both.soft_hard(), (64, 64));
        let pair: Rlimit = serde_json::from_str(r#"[1, "infinity"]"#).unwrap();
        assert_eq!(pair.soft_hard(), (1, u64::MAX));
        assert!(serde_json::from_str::<Rlimit>(r#""unlimited""#).is_err());
        assert!(serde_json::from_str::<Rlimit>("[1]").is_err());
    }
}
