//! The groups' listen sockets. Each group's are opened once, on the host's calling thread at its
//! first start, kept while it runs (respawns, scaling and rollouts all pass the same sockets),
//! and closed when it is stopped or the supervisor is freed.
//!
//! With `reuse_port`, the supervisor keeps for each address a socket bound with `SO_REUSEPORT`
//! but not listening: it holds the port (the one chosen for port 0 too) and never takes a
//! connection, since the kernel spreads connections over listening sockets only. Each worker
//! gets a listening socket of its own bound to that address, closed with it.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{OwnedFd, RawFd};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use crate::config::{GroupSpec, ListenAddress};
use crate::os;
use crate::os::listen::SocketFile;
use crate::sync::lock;

struct Socket {
    name: String,
    fd: OwnedFd,
    /// What `status_json` shows: `IP:PORT` with the bound port, or the Unix path.
    address: String,
    /// The bound TCP address (for the per-worker sockets of `reuse_port`).
    tcp: Option<SocketAddr>,
    backlog: u32,
    /// The socket file this supervisor made, removed when the socket is closed.
    file: Option<(String, SocketFile)>,
}

/// One group's sockets.
pub struct GroupSockets {
    sockets: Vec<Socket>,
    reuse_port: bool,
    /// `LISTEN_FDNAMES`: the names joined by `:`.
    names: String,
    /// The process that opened them: a child the host forked must not remove the socket files.
    owner: u32,
}

impl GroupSockets {
    /// Binds (and, unless `reuse_port`, listens on) every socket of `spec`. The error names the
    /// socket that failed.
    pub fn open(spec: &GroupSpec) -> io::Result<GroupSockets> {
        let mut sockets = Vec::with_capacity(spec.listen.len());
        for l in &spec.listen {
            let opened = match &l.address {
                ListenAddress::Tcp(addr) => os::listen::bind_tcp(*addr, spec.reuse_port)
                    .and_then(|fd| Ok((os::listen::tcp_address(&fd)?, fd)))
                    .map(|(bound, fd)| Socket {
                        name: l.name.clone(),
                        fd,
                        address: bound.to_string(),
                        tcp: Some(bound),
                        backlog: l.backlog,
                        file: None,
                    }),
                ListenAddress::Unix(path) => os::listen::bind_unix(path).map(|(fd, file)| Socket {
                    name: l.name.clone(),
                    fd,
                    address: path.clone(),
                    tcp: None,
                    backlog: l.backlog,
                    file: file.map(|f| (path.clone(), f)),
                }),
            };
            let socket = opened
                .and_then(|s| {
                    if !spec.reuse_port {
                        os::listen::listen(&s.fd, s.backlog)?;
                    }
                    Ok(s)
                })
                .map_err(|e| {
                    let to = match &l.address {
                        ListenAddress::Tcp(a) => a.to_string(),
                        ListenAddress::Unix(p) => p.clone(),
                    };
                    io::Error::new(
                        e.kind(),
                        format!("group '{}' listen '{}' on {to}: {e}", spec.name, l.name),
                    )
                })?;
            sockets.push(socket);
        }
        let names = spec
            .listen
            .iter()
            .map(|l| l.name.as_str())
            .collect::<Vec<_>>()
            .join(":");
        Ok(GroupSockets {
            sockets,
            reuse_port: spec.reuse_port,
            names,
            owner: std::process::id(),
        })
    }

    pub fn len(&self) -> usize {
        self.sockets.len()
    }

    pub fn names(&self) -> &str {
        &self.names
    }

    /// The descriptors one worker gets, in order, each numbered at least `min` (above the
    /// spawn's targets): duplicates of the shared sockets, or with `reuse_port` new listening
    /// sockets of its own.
    pub fn for_worker(&self, min: RawFd) -> io::Result<Vec<OwnedFd>> {
        self.sockets
            .iter()
            .map(|s| match (self.reuse_port, s.tcp) {
                (true, Some(addr)) => {
                    let fd = os::listen::bind_tcp(addr, true)?;
                    os::listen::listen(&fd, s.backlog)?;
                    os::dup_at_least(&fd, min)
                }
                _ => os::dup_at_least(&s.fd, min),
            })
            .collect::<io::Result<Vec<_>>>()
            .map_err(|e| io::Error::new(e.kind(), format!("listen sockets: {e}")))
    }

    /// `[{"name", "address"}]` for `status_json`.
    pub fn status(&self) -> Value {
        self.sockets
            .iter()
            .map(|s| json!({"name": s.name, "address": s.address}))
            .collect()
    }
}

impl Drop for GroupSockets {
    fn drop(&mut self) {
        if self.owner != std::process::id() {
            return;
        }
        for s in &self.sockets {
            if let Some((path, file)) = &s.file {
                os::listen::remove_unix(path, *file);
            }
        }
    }
}

/// Every group's open sockets, by group name.
#[derive(Default)]
pub struct Listeners(Mutex<HashMap<String, Arc<GroupSockets>>>);

impl Listeners {
    pub fn get(&self, group: &str) -> Option<Arc<GroupSockets>> {
        lock(&self.0).get(group).cloned()
    }

    /// Opens the sockets of each of `specs` that has some and none open yet. Returns the names
    /// of the groups it opened; on an error, what this call opened is closed again.
    pub fn open(&self, specs: &[GroupSpec]) -> io::Result<Vec<String>> {
        let mut opened = Vec::new();
        for spec in specs.iter().filter(|s| !s.listen.is_empty()) {
            if self.get(&spec.name).is_some() {
                continue;
            }
            match GroupSockets::open(spec) {
                Ok(sockets) => {
                    lock(&self.0).insert(spec.name.clone(), Arc::new(sockets));
                    opened.push(spec.name.clone());
                }
                Err(e) => {
                    self.close(&opened);
                    return Err(e);
                }
            }
        }
        Ok(opened)
    }

    /// Closes the sockets of `groups` (a spawn still using them holds them until it is done).
    pub fn close(&self, groups: &[String]) {
        let closed: Vec<_> = {
            let mut map = lock(&self.0);
            groups.iter().filter_map(|g| map.remove(g)).collect()
        };
        drop(closed);
    }

    /// Closes the sockets of every group for which `keep` is false.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        let closed: Vec<_> = {
            let mut map = lock(&self.0);
            let gone: Vec<String> = map.keys().filter(|g| !keep(g)).cloned().collect();
            gone.iter().filter_map(|g| map.remove(g)).collect()
        };
        drop(closed);
    }

    /// The `listen` entry of a group's status.
    pub fn status(&self, group: &str) -> Value {
        self.get(group).map_or_else(|| json!([]), |s| s.status())
    }
}
