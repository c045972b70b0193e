//! A group's listen sockets: the `"listen"` key, checked here so that a bad address fails
//! `configure_process_groups`, not a later start.

use std::net::SocketAddr;

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

/// The most listen sockets one group may have.
pub(crate) const MAX_LISTEN: usize = 64;
/// The most a listen queue may hold (the kernel caps it at `net.core.somaxconn` too).
pub(crate) const MAX_BACKLOG: u32 = 4096;
/// systemd's bound on a descriptor name (`LISTEN_FDNAMES`).
pub(crate) const MAX_NAME: usize = 255;
/// The room for a path in `sockaddr_un`, its NUL included.
const SUN_PATH: usize = 108;

/// Where a listen socket is bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddress {
    /// `"IP:PORT"` (`"[IPV6]:PORT"`); port 0 binds any free port.
    Tcp(SocketAddr),
    /// A filesystem path, or an abstract name when it starts with `@`.
    Unix(String),
}

/// One listen socket of a group (an element of `"listen"`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "RawListen", into = "ListenJson")]
pub struct Listen {
    /// Its name in `LISTEN_FDNAMES`: 1 to 255 printable ASCII characters without `:`.
    pub name: String,
    /// Where it is bound.
    pub address: ListenAddress,
    /// The length of its accept queue, 1 to 4096 (default 1024).
    pub backlog: u32,
}

impl Listen {
    /// A TCP socket with the default backlog.
    pub fn tcp(name: &str, address: SocketAddr) -> Listen {
        Listen {
            name: name.into(),
            address: ListenAddress::Tcp(address),
            backlog: default_backlog(),
        }
    }
}

/// A listen socket as written in JSON: the shape the schema describes.
#[derive(Serialize, JsonSchema)]
#[serde(untagged)]
enum ListenJson {
    Tcp(TcpListen),
    Unix(UnixListen),
}

#[derive(Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct TcpListen {
    #[schemars(length(min = 1, max = MAX_NAME), pattern(r"^[!-9;-~]+$"))]
    name: String,
    /// `"IP:PORT"` (`"[IPV6]:PORT"`); port 0 binds any free port.
    tcp: String,
    #[serde(default = "default_backlog")]
    #[schemars(range(min = 1, max = MAX_BACKLOG))]
    backlog: u32,
}

#[derive(Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct UnixListen {
    #[schemars(length(min = 1, max = MAX_NAME), pattern(r"^[!-9;-~]+$"))]
    name: String,
    /// A filesystem path, or an abstract socket's name after `@`.
    #[schemars(length(min = 1, max = 107))]
    unix: String,
    #[serde(default = "default_backlog")]
    #[schemars(range(min = 1, max = MAX_BACKLOG))]
    backlog: u32,
}

impl From<Listen> for ListenJson {
    fn from(l: Listen) -> Self {
        match l.address {
            ListenAddress::Tcp(addr) => ListenJson::Tcp(TcpListen {
                name: l.name,
                tcp: addr.to_string(),
                backlog: l.backlog,
            }),
            ListenAddress::Unix(path) => ListenJson::Unix(UnixListen {
                name: l.name,
                unix: path,
                backlog: l.backlog,
            }),
        }
    }
}

impl JsonSchema for Listen {
    fn schema_name() -> Cow<'static, str> {
        "Listen".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        ListenJson::json_schema(generator)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListen {
    name: String,
    tcp: Option<String>,
    unix: Option<String>,
    #[serde(default = "default_backlog")]
    backlog: u32,
}

fn default_backlog() -> u32 {
    1024
}

impl TryFrom<RawListen> for Listen {
    type Error = String;

    fn try_from(raw: RawListen) -> Result<Self, String> {
        let name = raw.name;
        // LISTEN_FDNAMES joins the names with ':'.
        if name.is_empty()
            || name.len() > MAX_NAME
            || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
        {
            return Err(format!(
                "name '{name}' must be 1 to {MAX_NAME} printable ASCII characters without ':' or spaces"
            ));
        }
        if !(1..=MAX_BACKLOG).contains(&raw.backlog) {
            return Err(format!(
                "backlog {} is out of range 1..={MAX_BACKLOG}",
                raw.backlog
            ));
        }
        let address = match (raw.tcp, raw.unix) {
            (Some(tcp), None) => ListenAddress::Tcp(tcp.parse().map_err(|_| {
                format!("tcp '{tcp}' is not IP:PORT (such as 127.0.0.1:8080 or [::1]:0)")
            })?),
            (None, Some(unix)) => {
                if unix.is_empty() || unix == "@" || unix.contains('\0') {
                    return Err("unix must be a non-empty path (or @name) without NUL".into());
                }
                if unix.len() >= SUN_PATH {
                    return Err(format!(
                        "unix path is {} bytes, more than a socket address holds ({})",
                        unix.len(),
                        SUN_PATH - 1
                    ));
                }
                ListenAddress::Unix(unix)
            }
            _ => return Err("give exactly one of tcp and unix".into()),
        };
        Ok(Listen {
            name,
            address,
            backlog: raw.backlog,
        })
    }
}

/// Checks a group's sockets together: unique names, a bounded count, `reuse_port` only for TCP.
pub(crate) fn validate(listen: &[Listen], reuse_port: bool) -> Result<(), (String, String)> {
    if listen.len() > MAX_LISTEN {
        return Err((
            "listen".into(),
            format!("{} sockets, more than {MAX_LISTEN}", listen.len()),
        ));
    }
    for (j, l) in listen.iter().enumerate() {
        if listen[..j].iter().any(|o| o.name == l.name) {
            return Err((
                format!("listen[{j}].name"),
                format!("duplicate name '{}'", l.name),
            ));
        }
        if reuse_port && matches!(l.address, ListenAddress::Unix(_)) {
            return Err((
                "reuse_port".into(),
                format!("'{}' is a unix socket: reuse_port needs TCP", l.name),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Listen, String> {
        serde_json::from_str::<Listen>(json).map_err(|e| e.to_string())
    }

    fn named(name: &str) -> Result<Listen, String> {
        parse(&serde_json::json!({"name": name, "tcp": "127.0.0.1:0"}).to_string())
    }

    #[test]
    fn names_are_printable_ascii_without_colon_up_to_255() {
        assert!(named("web").is_ok());
        assert!(named("!").is_ok());
        assert!(named(&"n".repeat(MAX_NAME)).is_ok());
        for bad in ["", "a:b", "a b", "é", &"n".repeat(MAX_NAME + 1)] {
            let e = named(bad).unwrap_err();
            assert!(e.contains("must be 1 to 255 printable"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn the_backlog_is_1024_by_default_and_1_to_4096() {
        let l = parse(r#"{"name":"a","tcp":"127.0.0.1:0"}"#).unwrap();
        assert_eq!(l.backlog, 1024);
        assert_eq!(l, Listen::tcp("a", "127.0.0.1:0".parse().unwrap()));
        for ok in [1, MAX_BACKLOG] {
            let l = parse(&format!(r#"{{"name":"a","tcp":"[::1]:0","backlog":{ok}}}"#)).unwrap();
            assert_eq!(l.backlog, ok);
        }
        for bad in [0, MAX_BACKLOG + 1] {
            let e = parse(&format!(
                r#"{{"name":"a","tcp":"[::1]:0","backlog":{bad}}}"#
            ));
            assert!(e.unwrap_err().contains("out of range"), "{bad}");
        }
    }

    #[test]
    fn exactly_one_address_tcp_or_unix() {
        let tcp = parse(r#"{"name":"a","tcp":"127.0.0.1:8080"}"#).unwrap();
        assert_eq!(
            tcp.address,
            ListenAddress::Tcp("127.0.0.1:8080".parse().unwrap())
        );
        let unix = parse(r#"{"name":"a","unix":"@abstract"}"#).unwrap();
        assert_eq!(unix.address, ListenAddress::Unix("@abstract".into()));
        for both_or_none in [
            r#"{"name":"a"}"#,
            r#"{"name":"a","tcp":"127.0.0.1:1","unix":"/s"}"#,
        ] {
            let e = parse(both_or_none).unwrap_err();
            assert!(e.contains("exactly one of tcp and unix"), "{e}");
        }
        assert!(parse(r#"{"name":"a","tcp":"localhost:80"}"#)
            .unwrap_err()
            .contains("is not IP:PORT"));
    }

    #[test]
    fn a_unix_path_is_non_empty_without_nul_and_fits_a_socket_address() {
        let unix = |path: &str| parse(&serde_json::json!({"name": "a", "unix": path}).to_string());
        assert!(unix(&"p".repeat(SUN_PATH - 1)).is_ok());
        assert!(unix(&"p".repeat(SUN_PATH))
            .unwrap_err()
            .contains("more than"));
        for bad in ["", "@", "a\0b"] {
            let e = unix(bad).unwrap_err();
            assert!(e.contains("non-empty path"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn a_groups_sockets_have_unique_names_a_bounded_count_and_reuse_port_only_on_tcp() {
        let tcp = |name: &str| Listen::tcp(name, "127.0.0.1:0".parse().unwrap());
        let many: Vec<Listen> = (0..MAX_LISTEN).map(|i| tcp(&format!("s{i}"))).collect();
        assert_eq!(validate(&many, true), Ok(()));
        let mut too_many = many.clone();
        too_many.push(tcp("one-more"));
        assert_eq!(validate(&too_many, false).unwrap_err().0, "listen");
        let twice = [tcp("a"), tcp("b"), tcp("a")];
        assert_eq!(validate(&twice, false).unwrap_err().0, "listen[2].name");
        let unix = Listen {
            name: "u".into(),
            address: ListenAddress::Unix("/s".into()),
            backlog: 1,
        };
        assert_eq!(validate(&[tcp("a"), unix.clone()], false), Ok(()));
        assert_eq!(
            validate(&[tcp("a"), unix], true).unwrap_err().0,
            "reuse_port"
        );
    }
}
