//! mpsup-keeper: the helper that kills a supervisor's workers when its host dies.
//!
//! The library spawns one per supervisor: `mpsup-keeper HOST_PID CGROUP_DIR|- [DIR ...]` (the
//! supervisor's cgroup v2 for tree kill, then its cgroups in the limits' hierarchies, which may
//! not exist yet: made when a group with limits starts), with descriptor 3
//! its end of a `SOCK_SEQPACKET` socket pair. The keeper watches the host through a pidfd of its
//! parent (`pidfd_open(getppid())`, after checking that the parent is `HOST_PID`), or, where
//! pidfds are missing, by checking `getppid()` every 50 ms (re-parenting changes it). It never
//! relies on the end of the socket: a child the host forked without exec holds a copy of it.
//!
//! Messages from the host (one per datagram):
//! - `A PID [CGROUP_DIR]`, with the host's pidfd of the worker attached (`SCM_RIGHTS`) where the
//!   host has one: a worker was spawned. The pidfd names that very process, so a pid the host has
//!   reaped meanwhile and the kernel reused is never mistaken for it. Without one, the keeper
//!   opens its own; the host sends `D` before it reaps, so while the keeper has not read the `D`
//!   the pid is still the worker's (a zombie at worst).
//! - `D PID [PID ...]`: the host is about to reap them, or has reaped them (only those whose
//!   pidfd it attached to their `A`: the pidfd then tells a reused pid from the worker).
//! - `Q`: the supervisor is being freed: kill whatever is left, remove the cgroups, exit.
//!
//! To the host, once: `K pidfd` or `K ppid` (how it watches), or `E reason` before exiting.
//!
//! When the host is gone (or the socket ends, or `Q` arrives), it first reads every message
//! still queued, then SIGKILLs each remaining worker that its pidfd shows still there (running or
//! a zombie, whose process group id is then still reserved) and that worker's process group,
//! writes `1` to `cgroup.kill` of the supervisor's cgroups (which reaches descendants that left
//! the process group; a cgroup v1 has none, its processes are killed one by one), removes the
//! cgroups once empty (bounded), and exits. It blocks every
//! signal and leads its own process group, so signals meant for the host's group never reach it.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, SigSet, Signal};
use nix::unistd::{getppid, Pid};

// The library's own pidfd wrappers (std and libc only), rather than a copy of them.
#[path = "../os/pidfd.rs"]
mod pidfd;

const SOCKET_FD: RawFd = 3;
const PPID_TICK_MS: i32 = 50;

struct Worker {
    pidfd: Option<OwnedFd>,
}

/// True when the process behind the pidfd is still there (running or a zombie).
fn pidfd_kill(fd: &OwnedFd) -> bool {
    matches!(pidfd::pidfd_signal(fd, libc::SIGKILL), Ok(true))
}

fn send(text: &str) {
    // SAFETY: a valid buffer; MSG_NOSIGNAL: a closed peer is no signal.
    unsafe {
        libc::send(
            SOCKET_FD,
            text.as_ptr().cast(),
            text.len(),
            libc::MSG_NOSIGNAL,
        );
    }
}

/// One datagram and the descriptor it carried. None: the socket ended (or failed).
fn receive(buf: &mut [u8; 512]) -> Option<(usize, Option<OwnedFd>)> {
    // Room for one descriptor.
    let mut cmsg = [0u64; 4];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: zeroed msghdr is valid; its pointers are set to live buffers below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cmsg.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cmsg) as _;
    let n = loop {
        // SAFETY: msg points to live buffers.
        let n = unsafe { libc::recvmsg(SOCKET_FD, &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        break n;
    };
    let mut fd = None;
    // SAFETY: walking the control messages the kernel wrote into `cmsg`.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let raw = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const RawFd);
                fd = Some(OwnedFd::from_raw_fd(raw));
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    if n <= 0 {
        return None;
    }
    Some((n as usize, fd))
}

enum Step {
    Go,
    End,
}

fn handle(text: &str, fd: Option<OwnedFd>, workers: &mut HashMap<i32, Worker>) -> Step {
    let mut words = text.split_ascii_whitespace();
    let verb = words.next().unwrap_or("");
    let pid = words.next().and_then(|p| p.parse::<i32>().ok());
    match (verb, pid) {
        ("A", Some(pid)) if pid > 1 => {
            let pidfd = fd.or_else(|| pidfd::pidfd_open(pid).ok());
            workers.insert(pid, Worker { pidfd });
            Step::Go
        }
        ("D", Some(pid)) => {
            workers.remove(&pid);
            for pid in words.filter_map(|p| p.parse::<i32>().ok()) {
                workers.remove(&pid);
            }
            Step::Go
        }
        ("Q", _) => Step::End,
        _ => Step::Go,
    }
}

/// Handles the message that is there and every one queued behind it: one wake-up for a burst
/// of spawns. End: `Q`, or the socket ended.
fn receive_queued(buf: &mut [u8; 512], workers: &mut HashMap<i32, Worker>) -> Step {
    loop {
        match receive(buf) {
            Some((len, fd)) => {
                let text = String::from_utf8_lossy(&buf[..len]).into_owned();
                if let Step::End = handle(&text, fd, workers) {
                    return Step::End;
                }
            }
            None => return Step::End,
        }
        let mut p = libc::pollfd {
            fd: SOCKET_FD,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut p, 1, 0) } <= 0 || p.revents & libc::POLLIN == 0 {
            return Step::Go;
        }
    }
}

/// Reads every message already queued, without waiting.
fn drain(workers: &mut HashMap<i32, Worker>) {
    let mut buf = [0u8; 512];
    loop {
        let mut p = libc::pollfd {
            fd: SOCKET_FD,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut p, 1, 0) } <= 0 || p.revents & libc::POLLIN == 0 {
            return;
        }
        match receive(&mut buf) {
            Some((n, fd)) => {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                handle(&text, fd, workers);
            }
            None => return,
        }
    }
}

fn kill_all(workers: &HashMap<i32, Worker>, cgroups: &[PathBuf]) {
    for (&pid, w) in workers {
        let there = match &w.pidfd {
            Some(fd) => pidfd_kill(fd),
            // No pidfd anywhere: the host sends D before it reaps, so the pid is still ours.
            None => true,
        };
        if there {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            if w.pidfd.is_none() {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
    for dir in cgroups {
        let _ = std::fs::write(dir.join("cgroup.kill"), "1");
    }
}

/// SIGKILLs each process of one cgroup (a v1 cgroup has no `cgroup.kill`).
fn kill_procs(dir: &Path) {
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

/// Removes a cgroup and every cgroup below it, retrying while their processes die (bounded).
fn remove_tree(dir: &Path, until: Instant) {
    loop {
        let mut subdirs = Vec::new();
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    subdirs.push(e.path());
                }
            }
        }
        for sub in &subdirs {
            remove_tree(sub, until);
        }
        match std::fs::remove_dir(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(_) if Instant::now() < until => {
                kill_procs(dir);
                std::thread::sleep(Duration::from_millis(2))
            }
            Err(_) => return,
        }
    }
}

fn block_all_signals() {
    // Applied to this (only) thread.
    let _ = SigSet::all().thread_set_mask();
}

/// One pidfd per worker: the soft descriptor limit goes up to the hard one.
/// Raw: the nix features this crate builds with have no rlimit calls.
fn raise_descriptor_limit() {
    // SAFETY: plain system calls on a local struct.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn main() {
    block_all_signals();
    raise_descriptor_limit();
    let args: Vec<String> = std::env::args().collect();
    let host: i32 = match args.get(1).and_then(|a| a.parse().ok()) {
        Some(pid) => pid,
        None => {
            eprintln!(
                "usage: mpsup-keeper HOST_PID CGROUP_DIR|- [DIR ...] (started by libmpsupervisor)"
            );
            std::process::exit(2);
        }
    };
    let cgroups: Vec<PathBuf> = args
        .iter()
        .skip(2)
        .filter(|a| a.as_str() != "-")
        .map(PathBuf::from)
        .collect();
    // Open first, then check: if the host died before the open and its pid was reused, the
    // parent is no longer the host.
    let host_fd = pidfd::pidfd_open(host).ok();
    if getppid().as_raw() != host {
        send("E the host is not the parent");
        std::process::exit(1);
    }
    send(if host_fd.is_some() {
        "K pidfd"
    } else {
        "K ppid"
    });
    let mut workers: HashMap<i32, Worker> = HashMap::new();
    let mut buf = [0u8; 512];
    loop {
        let mut fds = [
            libc::pollfd {
                fd: SOCKET_FD,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: host_fd.as_ref().map_or(-1, |f| f.as_raw_fd()),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let timeout = if host_fd.is_some() { -1 } else { PPID_TICK_MS };
        // SAFETY: two valid pollfds (a negative fd is ignored).
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout) };
        if n < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            break;
        }
        if fds[1].revents != 0 || getppid().as_raw() != host {
            break;
        }
        if fds[0].revents & libc::POLLIN != 0 {
            if let Step::End = receive_queued(&mut buf, &mut workers) {
                break;
            }
        } else if fds[0].revents & (libc::POLLHUP | libc::POLLERR) != 0 {
            break;
        }
    }
    drain(&mut workers);
    kill_all(&workers, &cgroups);
    let until = Instant::now() + Duration::from_secs(2);
    for dir in &cgroups {
        remove_tree(dir, until);
    }
}
