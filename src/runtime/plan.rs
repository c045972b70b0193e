//! Works out a group's `Plan` on the host's calling thread: its environment (the only place the
//! library reads the host's `environ`) and the program `argv[0]` names.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use crate::config::{self, GroupSpec};
use crate::core::plan::Plan;
use crate::protocol::env;

/// glibc's search path when `PATH` is not set at all.
const DEFAULT_PATH: &str = "/bin:/usr/bin";

/// `notify_socket`: the supervisor's sd_notify socket, for a group with `sd_notify` readiness.
pub fn prepare(spec: &GroupSpec, notify_socket: Option<&str>) -> io::Result<Plan> {
    let mut env = base_environment(spec);
    if spec.readiness == config::Readiness::SdNotify {
        // The supervisor's socket, never one the host itself was given.
        let theirs = |e: &CString| {
            let b = e.as_bytes();
            [env::NOTIFY_SOCKET, "WATCHDOG_USEC", "WATCHDOG_PID"]
                .iter()
                .any(|k| b.starts_with(k.as_bytes()) && b.get(k.len()) == Some(&b'='))
        };
        env.retain(|e| !theirs(e));
        if let Some(address) = notify_socket {
            env.push(config::cstring(&format!(
                "{}={address}",
                env::NOTIFY_SOCKET
            )));
        }
        if spec.heartbeat_timeout_ms > 0 {
            env.push(config::cstring(&format!(
                "WATCHDOG_USEC={}",
                spec.heartbeat_timeout_ms * 1000
            )));
        }
    }
    let search_path = spec
        .env
        .get("PATH")
        .map(|p| p.as_bytes().to_vec())
        .or_else(|| std::env::var_os("PATH").map(|p| p.as_bytes().to_vec()))
        .unwrap_or_else(|| DEFAULT_PATH.as_bytes().to_vec());
    let program = resolve(&spec.argv[0], &search_path).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{}: not found in PATH", spec.argv[0]),
        )
    })?;
    Ok(Plan {
        program,
        argv: spec.argv.iter().map(|a| config::cstring(a)).collect(),
        env,
        cwd: spec.cwd.as_deref().map(config::cstring),
        attrs: Default::default(),
        spec: spec.clone(),
    })
}

/// `argv[0]` as given when it has a `/`, else the first executable file of that name in
/// `search_path` (what `execvp` does, but with the group's `PATH` when it sets one).
pub(crate) fn resolve(program: &str, search_path: &[u8]) -> Option<CString> {
    if program.contains('/') {
        return Some(config::cstring(program));
    }
    search_path
        .split(|&b| b == b':')
        .map(|dir| if dir.is_empty() { &b"."[..] } else { dir })
        .map(|dir| Path::new(OsStr::from_bytes(dir)).join(program))
        .find(|candidate| is_executable_file(candidate))
        .and_then(|p| CString::new(p.into_os_string().into_vec()).ok())
}

fn is_executable_file(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// What systemd gave the host itself (its notify socket, its watchdog, its socket
/// activation): never passed on, since a worker would speak for the host or take its sockets.
const HOST_ONLY: [&str; 6] = [
    env::NOTIFY_SOCKET,
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    env::LISTEN_FDS,
    env::LISTEN_PID,
    env::LISTEN_FDNAMES,
];

/// The environment a group's workers start from: the host's (unless `inherit_env` is false)
/// without the supervisor's own variables and those of `HOST_ONLY`, then the group's `env`.
fn base_environment(spec: &GroupSpec) -> Vec<CString> {
    fn own(key: &[u8]) -> bool {
        key.starts_with(env::PREFIX.as_bytes())
    }
    let mut env: Vec<CString> = Vec::new();
    if spec.inherit_env {
        for (key, value) in std::env::vars_os() {
            let k = key.as_bytes();
            if own(k)
                || HOST_ONLY.iter().any(|h| h.as_bytes() == k)
                || spec.env.keys().any(|g| g.as_bytes() == k)
            {
                continue;
            }
            let mut entry = k.to_vec();
            entry.push(b'=');
            entry.extend_from_slice(value.as_bytes());
            if let Ok(c) = CString::new(entry) {
                env.push(c);
            }
        }
    }
    for (key, value) in &spec.env {
        if own(key.as_bytes()) {
            continue;
        }
        env.push(config::cstring(&format!("{key}={value}")));
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_name_is_searched_in_the_given_path_in_order() {
        let dir = std::env::temp_dir().join(format!("mpsup-plan-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("a")).unwrap();
        std::fs::create_dir_all(dir.join("b")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(dir.join("a/tool"), "not executable").unwrap();
        std::fs::write(dir.join("b/tool"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(dir.join("b/tool"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        let path = format!("{}:{}", dir.join("a").display(), dir.join("b").display());
        let found = resolve("tool", path.as_bytes());
        let missing = resolve("no-such-tool", path.as_bytes());
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            found.unwrap().to_str().unwrap(),
            dir.join("b/tool").to_str().unwrap()
        );
        assert_eq!(missing, None);
        assert_eq!(resolve("./x", b"").unwrap().to_str().unwrap(), "./x");
    }
}
