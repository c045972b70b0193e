//! Probes (API.md part 8): `readiness_probe`, `liveness_probe` and `port_base`, the
//! `{index}`, `{pid}` and `{port}` placeholders they and `env` take, and their checks at
//! configure time.

use std::net::SocketAddr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{GroupSpec, MAX_MS};

/// The shortest `period_ms`: probing more often would cost more than it tells.
pub(crate) const MIN_PERIOD_MS: u64 = 10;
/// The largest `failure_threshold` and `success_threshold`.
pub(crate) const MAX_THRESHOLD: u32 = 1000;

fn ms<const N: u64>() -> u64 {
    N
}
fn three() -> u32 {
    3
}
fn one() -> u32 {
    1
}

/// One probe of a worker, as Kubernetes defines them: exactly one of `exec`, `tcp` and `http`,
/// run every `period_ms` once `initial_delay_ms` has passed after the worker's spawn. Its
/// schema is one object per kind (`ExecProbe`, `TcpProbe`, `HttpProbe`), each of which needs
/// its key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Probe {
    /// A program and its arguments, run with the worker's environment; success: exit status 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<Vec<String>>,
    /// `ip:port` (or `localhost:port`); success: the connection is accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<String>,
    /// `http://ip:port/path` (or `localhost`); success: a status from 200 to 399.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    /// How often (ms) the probe runs, 10 or more.
    #[serde(default = "ms::<1000>")]
    pub period_ms: u64,
    /// How long (ms) one run may take before it counts as failed (an exec probe is killed).
    #[serde(default = "ms::<1000>")]
    pub timeout_ms: u64,
    /// How long (ms) after the worker's spawn the first run waits.
    #[serde(default)]
    pub initial_delay_ms: u64,
    /// Consecutive failures that count: the worker becomes unready (readiness) or is killed
    /// (liveness).
    #[serde(default = "three")]
    pub failure_threshold: u32,
    /// Consecutive successes that make the worker ready (again).
    #[serde(default = "one")]
    pub success_threshold: u32,
}

impl Default for Probe {
    /// Kubernetes' timing and no kind yet: set one of `exec`, `tcp` and `http`.
    ///
    /// ```
    /// use mpsupervisor::config::Probe;
    /// let probe = Probe { tcp: Some("127.0.0.1:{port}".into()), period_ms: 500, ..Default::default() };
    /// assert_eq!((probe.failure_threshold, probe.timeout_ms), (3, 1000));
    /// ```
    fn default() -> Self {
        Probe {
            exec: None,
            tcp: None,
            http: None,
            period_ms: 1000,
            timeout_ms: 1000,
            initial_delay_ms: 0,
            failure_threshold: three(),
            success_threshold: one(),
        }
    }
}

/// The schema of one kind of probe: its key, then the timing every kind shares.
macro_rules! probe_schema {
    ($name:ident, $title:literal, $(#[$attr:meta])* $key:ident: $ty:ty) => {
        #[doc = $title]
        #[derive(JsonSchema)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct $name {
            $(#[$attr])*
            $key: $ty,
            /// How often (ms) the probe runs, 10 or more.
            #[serde(default = "ms::<1000>")]
            #[schemars(range(min = MIN_PERIOD_MS, max = MAX_MS))]
            period_ms: u64,
            /// How long (ms) one run may take before it counts as failed (an exec probe is
            /// killed).
            #[serde(default = "ms::<1000>")]
            #[schemars(range(min = 1, max = MAX_MS))]
            timeout_ms: u64,
            /// How long (ms) after the worker's spawn the first run waits.
            #[serde(default)]
            #[schemars(range(max = MAX_MS))]
            initial_delay_ms: u64,
            /// Consecutive failures that count: the worker becomes unready (readiness) or is
            /// killed (liveness).
            #[serde(default = "three")]
            #[schemars(range(min = 1, max = MAX_THRESHOLD))]
            failure_threshold: u32,
            /// Consecutive successes that make the worker ready (again).
            #[serde(default = "one")]
            #[schemars(range(min = 1, max = MAX_THRESHOLD))]
            success_threshold: u32,
        }
    };
}

probe_schema!(ExecProbe, "A probe that runs a program.",
    /// A program and its arguments, run with the worker's environment and working directory;
    /// success: exit status 0.
    #[schemars(length(min = 1), extend("prefixItems" = [{"type": "string", "minLength": 1}]))]
    exec: Vec<String>);
probe_schema!(TcpProbe, "A probe that connects.",
    /// `ip:port` (or `localhost:port`); success: the connection is accepted.
    tcp: String);
probe_schema!(HttpProbe, "A probe that asks for a page.",
    /// `http://ip:port/path` (or `localhost`); success: a status from 200 to 399.
    http: String);

impl JsonSchema for Probe {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Probe".into()
    }

    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "One probe of a worker: exactly one of `exec`, `tcp` and `http`.",
            "anyOf": [
                g.subschema_for::<ExecProbe>(),
                g.subschema_for::<TcpProbe>(),
                g.subschema_for::<HttpProbe>()
            ]
        })
    }
}

/// What a probe checks, with its placeholders substituted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Exec(Vec<String>),
    Tcp(SocketAddr),
    Http {
        address: SocketAddr,
        /// `Host:` of the request, as written.
        host: String,
        path: String,
    },
}

/// The values of the placeholders for one worker process.
#[derive(Debug, Clone, Copy)]
pub struct Placeholders {
    /// 1-based.
    pub index: u32,
    /// None: `{pid}` stays (in `env`, for the exec shim).
    pub pid: Option<i32>,
    /// `port_base + index - 1`; None without `port_base`.
    pub port: Option<u32>,
}

impl Placeholders {
    /// Those of worker `index` of `spec`, whose process is `pid`.
    pub fn of(spec: &GroupSpec, index: u32, pid: Option<i32>) -> Placeholders {
        Placeholders {
            index,
            pid,
            port: spec.port_base.map(|b| u32::from(b) + index - 1),
        }
    }

    /// `text` with `{index}`, `{pid}` and `{port}` replaced (`{pid}` stays without a pid,
    /// `{port}` without a port).
    pub fn apply(&self, text: &str) -> String {
        if !text.contains('{') {
            return text.to_string();
        }
        let mut out = text.replace("{index}", &self.index.to_string());
        if let Some(pid) = self.pid {
            out = out.replace("{pid}", &pid.to_string());
        }
        if let Some(port) = self.port {
            out = out.replace("{port}", &port.to_string());
        }
        out
    }
}

impl Probe {
    /// The probe's target for one worker process.
    pub fn target(&self, p: &Placeholders) -> Result<Target, String> {
        if let Some(argv) = &self.exec {
            return Ok(Target::Exec(argv.iter().map(|a| p.apply(a)).collect()));
        }
        if let Some(tcp) = &self.tcp {
            return address(&p.apply(tcp)).map(Target::Tcp);
        }
        let url = p.apply(self.http.as_deref().unwrap_or_default());
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("'{url}' is not an http:// URL (https is not supported)"))?;
        let (authority, path) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/"),
        };
        let with_port = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| !p.contains(']'))
        {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        if path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(format!(
                "'{url}': the path holds a space or a control character"
            ));
        }
        Ok(Target::Http {
            address: address(&with_port)?,
            host: authority.to_string(),
            path: path.to_string(),
        })
    }
}

/// `ip:port`, or `localhost:port` (127.0.0.1): no name is looked up, so a probe never blocks
/// the probe thread on a resolver.
fn address(text: &str) -> Result<SocketAddr, String> {
    let local = text
        .strip_prefix("localhost:")
        .map(|port| format!("127.0.0.1:{port}"));
    local.as_deref().unwrap_or(text).parse().map_err(|_| {
        format!("'{text}' is not ip:port (names other than localhost are not looked up)")
    })
}

/// Checks the probe keys of one group; the error names the key.
pub(super) fn validate(g: &GroupSpec) -> Result<(), (String, String)> {
    for (name, probe) in [
        ("readiness_probe", &g.readiness_probe),
        ("liveness_probe", &g.liveness_probe),
    ] {
        if let Some(probe) = probe {
            validate_probe(g, probe).map_err(|(key, why)| (format!("{name}{key}"), why))?;
        }
    }
    if g.readiness == super::Readiness::Probe && g.readiness_probe.is_none() {
        return Err((
            "readiness".into(),
            "\"probe\" needs a readiness_probe".into(),
        ));
    }
    if g.port_base
        .is_some_and(|b| u32::from(b) + g.workers - 1 > 65_535)
    {
        return Err((
            "port_base".into(),
            format!(
                "the group's ports would go past 65535 ({} workers)",
                g.workers
            ),
        ));
    }
    for (key, value) in &g.env {
        if value.contains("{port}") && g.port_base.is_none() {
            return Err((format!("env.{key}"), "{port} needs port_base".into()));
        }
    }
    Ok(())
}

/// One probe: its kind, its bounds, its target as the first worker would have it.
fn validate_probe(g: &GroupSpec, p: &Probe) -> Result<(), (String, String)> {
    let kinds = [p.exec.is_some(), p.tcp.is_some(), p.http.is_some()];
    if kinds.iter().filter(|k| **k).count() != 1 {
        return Err((
            String::new(),
            "needs exactly one of exec, tcp and http".into(),
        ));
    }
    for (key, value, min) in [
        ("period_ms", p.period_ms, MIN_PERIOD_MS),
        ("timeout_ms", p.timeout_ms, 1),
        ("initial_delay_ms", p.initial_delay_ms, 0),
    ] {
        if value > MAX_MS {
            return Err((format!(".{key}"), format!("{value} is more than {MAX_MS}")));
        }
        if value < min {
            return Err((format!(".{key}"), format!("{value} is less than {min}")));
        }
    }
    for (key, value) in [
        ("failure_threshold", p.failure_threshold),
        ("success_threshold", p.success_threshold),
    ] {
        if !(1..=MAX_THRESHOLD).contains(&value) {
            return Err((
                format!(".{key}"),
                format!("{value} is out of range 1..={MAX_THRESHOLD}"),
            ));
        }
    }
    let (key, texts): (&str, Vec<&String>) = match (&p.exec, &p.tcp, &p.http) {
        (Some(argv), _, _) => ("exec", argv.iter().collect()),
        (_, Some(tcp), _) => ("tcp", vec![tcp]),
        (_, _, Some(http)) => ("http", vec![http]),
        _ => unreachable!("one kind, checked above"),
    };
    if texts.iter().any(|t| t.contains("{port}")) && g.port_base.is_none() {
        return Err((format!(".{key}"), "{port} needs port_base".into()));
    }
    if texts.iter().any(|t| t.contains('\0')) {
        return Err((format!(".{key}"), "contains a NUL byte".into()));
    }
    if p.exec
        .as_ref()
        .is_some_and(|a| a.is_empty() || a[0].is_empty())
    {
        return Err((".exec".into(), "needs a program".into()));
    }
    p.target(&Placeholders::of(g, 1, Some(1)))
        .map(drop)
        .map_err(|why| (format!(".{key}"), why))
}

#[cfg(test)]
mod tests {
    use crate::config::{error_of, parse_groups};

    #[test]
    fn probe_errors_name_their_path() {
        let e = error_of(r#""readiness": "probe""#);
        assert!(e.contains("groups[0].readiness:"), "{e}");
        let e = error_of(r#""readiness_probe": {"tcp": "127.0.0.1:1", "http": "http://x/"}"#);
        assert!(e.contains("groups[0].readiness_probe:"), "{e}");
        let e = error_of(r#""liveness_probe": {"tcp": "127.0.0.1:{port}"}"#);
        assert!(
            e.contains("groups[0].liveness_probe.tcp:") && e.contains("port_base"),
            "{e}"
        );
        let e = error_of(r#""env": {"PORT": "{port}"}"#);
        assert!(e.contains("groups[0].env.PORT:"), "{e}");
        let e = error_of(r#""liveness_probe": {"tcp": "example.com:80"}"#);
        assert!(e.contains("groups[0].liveness_probe.tcp:"), "{e}");
        let e = error_of(r#""readiness_probe": {"http": "https://127.0.0.1/"}"#);
        assert!(e.contains("groups[0].readiness_probe.http:"), "{e}");
        let e = error_of(r#""readiness_probe": {"tcp": "127.0.0.1:1", "period_ms": 9}"#);
        assert!(e.contains("groups[0].readiness_probe.period_ms:"), "{e}");
        let e = error_of(r#""port_base": 65535, "workers": 2"#);
        assert!(e.contains("groups[0].port_base:"), "{e}");
        let e = error_of(r#""readiness_probe": {"tcp": "127.0.0.1:1", "bogus": 1}"#);
        assert!(e.contains("groups[0].readiness_probe"), "{e}");
    }

    #[test]
    fn the_last_workers_port_may_be_65535_and_no_more() {
        let ok = |keys: &str| {
            let json = format!(r#"[{{"name": "g", "argv": ["/bin/true"], {keys}}}]"#);
            parse_groups(&json).is_ok()
        };
        assert!(ok(r#""port_base": 65532, "workers": 4"#));
        assert!(ok(r#""port_base": 65535, "workers": 1"#));
        let e = error_of(r#""port_base": 65533, "workers": 4"#);
        assert!(e.contains("groups[0].port_base:"), "{e}");
    }

    #[test]
    fn a_probes_durations_are_bounded_by_a_year_and_an_exec_needs_a_program() {
        let year = crate::config::MAX_MS;
        let probe = |extra: &str| format!(r#""liveness_probe": {{"tcp": "127.0.0.1:1"{extra}}}"#);
        let json = |keys: &str| format!(r#"[{{"name": "g", "argv": ["/bin/true"], {keys}}}]"#);
        for key in ["period_ms", "timeout_ms", "initial_delay_ms"] {
            let inside = probe(&format!(r#", "{key}": {year}"#));
            assert!(parse_groups(&json(&inside)).is_ok(), "{key}");
            let e = error_of(&probe(&format!(r#", "{key}": {}"#, year + 1)));
            assert!(e.contains(&format!("liveness_probe.{key}:")), "{e}");
        }
        for argv in ["[]", r#"[""]"#, r#"["", "x"]"#] {
            let e = error_of(&format!(r#""liveness_probe": {{"exec": {argv}}}"#));
            assert!(
                e.contains("liveness_probe.exec: needs a program"),
                "{argv}: {e}"
            );
        }
    }

    #[test]
    fn an_http_target_takes_its_port_or_80() {
        use super::{Placeholders, Target};
        let target = |url: &str| {
            let json = format!(
                r#"[{{"name": "g", "argv": ["/bin/true"], "liveness_probe": {{"http": "{url}"}}}}]"#
            );
            let g = &parse_groups(&json).unwrap()[0];
            let p = Placeholders::of(g, 1, Some(1));
            match g.liveness_probe.as_ref().unwrap().target(&p).unwrap() {
                Target::Http { address, host, .. } => (address.to_string(), host),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(target("http://127.0.0.1/x").0, "127.0.0.1:80");
        assert_eq!(target("http://127.0.0.1:8080/x").0, "127.0.0.1:8080");
        assert_eq!(target("http://[::1]:9/").0, "[::1]:9");
        // The colons of an IPv6 address are not a port.
        assert_eq!(target("http://[::1]/").0, "[::1]:80");
        // A request line cannot carry them.
        for path in ["/a b", "/a\\u0001b"] {
            let e = error_of(&format!(
                r#""liveness_probe": {{"http": "http://127.0.0.1{path}"}}"#
            ));
            assert!(e.contains("holds a space or a control character"), "{e}");
        }
    }

    #[test]
    fn placeholders_give_each_worker_its_own_target() {
        use super::{Placeholders, Target};
        let g = &parse_groups(
            r#"[{"name": "g", "argv": ["/bin/true"], "workers": 3, "port_base": 9000,
                 "readiness": "probe",
                 "readiness_probe": {"http": "http://localhost:{port}/ready?i={index}"},
                 "liveness_probe": {"exec": ["/bin/test", "{pid}", "{index}"]}}]"#,
        )
        .unwrap()[0];
        let p = Placeholders::of(g, 3, Some(77));
        let ready = g.readiness_probe.as_ref().unwrap().target(&p).unwrap();
        assert_eq!(
            ready,
            Target::Http {
                address: "127.0.0.1:9002".parse().unwrap(),
                host: "localhost:9002".into(),
                path: "/ready?i=3".into()
            }
        );
        let live = g.liveness_probe.as_ref().unwrap().target(&p).unwrap();
        assert_eq!(
            live,
            Target::Exec(vec!["/bin/test".into(), "77".into(), "3".into()])
        );
        let probe = g.readiness_probe.as_ref().unwrap();
        assert_eq!((probe.period_ms, probe.timeout_ms), (1000, 1000));
        assert_eq!((probe.failure_threshold, probe.success_threshold), (3, 1));
    }
}
