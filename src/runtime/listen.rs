//! The groups' listen sockets. Each group's are opened once, on the host's calling thread at its
//! first start, kept while it runs (respawns, scaling and rollouts all pass the same sockets),
//! and closed when it is stopped or the supervisor is freed.
//!
//! With `reuse_port`, the supervisor keeps for each address a socket bound with `SO_REUSEPORT`
//! but not listening: it holds the port (the one chosen for port 0 too) and never takes a
//! connection, since the kernel spreads connections over listening sockets only. Each worker
//! gets a listening socket of its own bound to that address, closed with it.
//!
//! The spawner threads may run in a descriptor table of their own, where the numbers of the
//! host's table mean nothing: shared sockets reach them as duplicates carried by each
//! submission (`carried`), and they see only `ListenInfo`, plain data, of a group's sockets.

use crate::status::ListenStatus;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};

use crate::config::{GroupSpec, ListenAddress};
use crate::os;
use crate::os::listen::SocketFile;
use crate::sync::lock;

/// Descriptors of the host's table that a submission carries to its spawns, by group name: every
/// spawn of that group inherits them, in order, as its descriptors 3, 4, ... (the control socket
/// comes after them). The submission owns them; in a private table they travel in one message
/// and the host's copies are closed at once.
pub type Carried = Vec<(String, Vec<OwnedFd>)>;

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

/// A group's sockets as they cross an `exec` of the host (`handover`): by number.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ListenState {
    pub group: String,
    pub sockets: Vec<SocketState>,
    /// The sockets hold `reuse_port` addresses (bound, not listening): each worker has its
    /// own listening socket, which lives in the worker alone, and each spawn makes a new one.
    #[serde(default)]
    pub reuse_port: bool,
}

/// One listen socket by number (`ListenState`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SocketState {
    pub name: String,
    pub fd: RawFd,
    pub address: String,
    pub tcp: Option<SocketAddr>,
    pub backlog: u32,
    pub file: Option<(String, SocketFile)>,
}

/// What a spawner thread knows of a group's sockets: no descriptor of the host's table.
#[derive(Debug)]
pub struct ListenInfo {
    /// How many sockets each worker gets.
    pub count: usize,
    /// `LISTEN_FDNAMES`: the names joined by `:`.
    pub names: String,
    /// With `reuse_port`: the bound address and backlog of each socket, for the worker's own.
    pub reuse_port: Option<Vec<(SocketAddr, u32)>>,
}

impl ListenInfo {
    /// With `reuse_port`, new listening sockets for one worker (on the spawner's thread).
    pub fn own_sockets(&self) -> io::Result<Vec<OwnedFd>> {
        let Some(addresses) = &self.reuse_port else {
            return Ok(Vec::new());
        };
        addresses
            .iter()
            .map(|&(addr, backlog)| {
                let fd = os::listen::bind_tcp(addr, true)?;
                os::listen::listen(&fd, backlog)?;
                Ok(fd)
            })
            .collect::<io::Result<Vec<_>>>()
            .map_err(|e| io::Error::new(e.kind(), format!("listen sockets: {e}")))
    }
}

/// One group's sockets.
pub struct GroupSockets {
    sockets: Vec<Socket>,
    info: Arc<ListenInfo>,
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
        let reuse_port = spec.reuse_port.then(|| {
            sockets
                .iter()
                .filter_map(|s| s.tcp.map(|a| (a, s.backlog)))
                .collect()
        });
        Ok(GroupSockets {
            info: Arc::new(ListenInfo {
                count: sockets.len(),
                names,
                reuse_port,
            }),
            sockets,
            owner: std::process::id(),
        })
    }

    /// What a submission carries for the group's workers: a duplicate of each shared socket
    /// (none with `reuse_port`: each worker gets sockets of its own).
    fn carried(&self) -> io::Result<Vec<OwnedFd>> {
        if self.info.reuse_port.is_some() {
            return Ok(Vec::new());
        }
        self.sockets
            .iter()
            .map(|s| s.fd.try_clone())
            .collect::<io::Result<Vec<_>>>()
            .map_err(|e| io::Error::new(e.kind(), format!("listen sockets: {e}")))
    }

    /// `[{"name", "address"}]` for `status_json`.
    pub fn status(&self) -> Vec<ListenStatus> {
        self.sockets
            .iter()
            .map(|s| ListenStatus {
                name: s.name.clone(),
                address: s.address.clone(),
            })
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
    fn get(&self, group: &str) -> Option<Arc<GroupSockets>> {
        lock(&self.0).get(group).cloned()
    }

    /// What a spawner thread may know of a group's open sockets.
    pub fn info(&self, group: &str) -> Option<Arc<ListenInfo>> {
        lock(&self.0).get(group).map(|s| Arc::clone(&s.info))
    }

    /// The descriptors a submission of spawns for `groups` carries (on a thread of the host's
    /// table): the shared sockets of each that has some open. What cannot be duplicated is
    /// left out, and the spawns of that group fail.
    pub fn carried<'a>(&self, groups: impl IntoIterator<Item = &'a str>) -> Carried {
        let mut carried: Carried = Vec::new();
        for group in groups {
            if carried.iter().any(|(g, _)| g == group) {
                continue;
            }
            if let Some(fds) = self.get(group).and_then(|s| s.carried().ok()) {
                if !fds.is_empty() {
                    carried.push((group.to_string(), fds));
                }
            }
        }
        carried
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

    /// Every group's sockets by number, for the next image of the host (`handover`). With
    /// `reuse_port`, the sockets that hold the addresses: the workers' own listening sockets
    /// are theirs alone (the spawner closes its copy), so they never close across the `exec`.
    pub fn export(&self) -> Vec<ListenState> {
        let map = lock(&self.0);
        let mut out = Vec::new();
        for (group, g) in map.iter() {
            let sockets = g
                .sockets
                .iter()
                .map(|s| SocketState {
                    name: s.name.clone(),
                    fd: s.fd.as_raw_fd(),
                    address: s.address.clone(),
                    tcp: s.tcp,
                    backlog: s.backlog,
                    file: s.file.clone(),
                })
                .collect();
            out.push(ListenState {
                group: group.clone(),
                sockets,
                reuse_port: g.info.reuse_port.is_some(),
            });
        }
        out
    }

    /// Takes over the sockets the previous image of the host left open (`export`); `take`
    /// turns each number into the descriptor it names.
    pub fn import(
        &self,
        groups: Vec<ListenState>,
        take: impl Fn(RawFd) -> io::Result<OwnedFd>,
    ) -> io::Result<()> {
        for g in groups {
            let mut sockets = Vec::new();
            for s in g.sockets {
                sockets.push(Socket {
                    name: s.name,
                    fd: take(s.fd)?,
                    address: s.address,
                    tcp: s.tcp,
                    backlog: s.backlog,
                    file: s.file,
                });
            }
            let names = sockets
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(":");
            // A respawn binds its worker's own socket to the same address, as before.
            let reuse_port = g.reuse_port.then(|| {
                sockets
                    .iter()
                    .filter_map(|s| s.tcp.map(|a| (a, s.backlog)))
                    .collect()
            });
            let info = Arc::new(ListenInfo {
                count: sockets.len(),
                names,
                reuse_port,
            });
            let group = GroupSockets {
                sockets,
                info,
                owner: std::process::id(),
            };
            lock(&self.0).insert(g.group, Arc::new(group));
        }
        Ok(())
    }

    /// The `listen` entry of a group's status.
    pub fn status(&self, group: &str) -> Vec<ListenStatus> {
        self.get(group).map_or_else(Vec::new, |s| s.status())
    }
}
