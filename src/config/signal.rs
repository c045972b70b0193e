//! A signal named in the configuration (`stop_signal`, `reload_signal`), such as `"SIGTERM"`.

use std::borrow::Cow;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize, Serializer};

/// A signal a group may name, with its number.
const SIGNALS: &[(&str, libc::c_int)] = &[
    ("SIGTERM", libc::SIGTERM),
    ("SIGINT", libc::SIGINT),
    ("SIGQUIT", libc::SIGQUIT),
    ("SIGHUP", libc::SIGHUP),
    ("SIGUSR1", libc::SIGUSR1),
    ("SIGUSR2", libc::SIGUSR2),
    ("SIGKILL", libc::SIGKILL),
    ("SIGALRM", libc::SIGALRM),
    ("SIGPWR", libc::SIGPWR),
    ("SIGWINCH", libc::SIGWINCH),
];

/// A signal, written by its name (`"SIGTERM"`, `"SIGINT"`, ...).
///
/// ```
/// use mpsupervisor::config::StopSignal;
/// assert_eq!(StopSignal::named("SIGINT").unwrap().number(), libc::SIGINT);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct StopSignal(libc::c_int);

impl StopSignal {
    /// `SIGTERM`, the default stop signal.
    pub const TERM: StopSignal = StopSignal(libc::SIGTERM);
    /// `SIGHUP`, the default reload signal.
    pub const HUP: StopSignal = StopSignal(libc::SIGHUP);

    /// The signal of that name, if a group may name it.
    pub fn named(name: &str) -> Option<StopSignal> {
        SIGNALS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|&(_, sig)| StopSignal(sig))
    }

    /// Its number, as `kill(2)` takes it.
    pub fn number(self) -> libc::c_int {
        self.0
    }

    /// Its name, such as `"SIGTERM"`.
    pub fn name(self) -> &'static str {
        SIGNALS
            .iter()
            .find(|(_, sig)| *sig == self.0)
            .map_or("SIGTERM", |(n, _)| n)
    }
}

impl Default for StopSignal {
    fn default() -> Self {
        StopSignal::TERM
    }
}

impl TryFrom<String> for StopSignal {
    type Error = String;

    fn try_from(name: String) -> std::result::Result<Self, String> {
        StopSignal::named(&name).ok_or_else(|| {
            let known: Vec<&str> = SIGNALS.iter().map(|(n, _)| *n).collect();
            format!(
                "unknown signal '{name}', expected one of {}",
                known.join(", ")
            )
        })
    }
}

impl Serialize for StopSignal {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl JsonSchema for StopSignal {
    fn schema_name() -> Cow<'static, str> {
        "Signal".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let names: Vec<&str> = SIGNALS.iter().map(|(n, _)| *n).collect();
        json_schema!({
            "description": "A signal, by its name.",
            "type": "string",
            "enum": names,
        })
    }
}
