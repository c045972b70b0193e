//! The keeper process: what kills the workers when the host dies.
//!
//! The keeper (`src/bin/mpsup-keeper.rs`) is spawned once per supervisor, on the thread that
//! makes the supervisor, into a process group of its own, with one end of a `SOCK_SEQPACKET`
//! pair as its descriptor 3 (our end is close-on-exec). It watches the host through a pidfd of
//! its parent: the parent of a process is the host *process* whichever thread spawned it, so a
//! host thread that exits changes nothing (`PR_SET_PDEATHSIG` would fire then, so it is not
//! used), and no descriptor that a child forked from the host could hold keeps it from seeing
//! the death. Each worker is announced with `A pid` and the host's pidfd of it (so the keeper
//! can never mistake a reused pid for the worker), right after the spawn and before the child is
//! handed over, so before it can be reaped; `D pid` goes before the reap (for a worker whose pidfd
//! the keeper got, it may wait to go with others in one message, but always goes before an `A`
//! that reuses its pid). Sends never block for long: a keeper that takes no message for a
//! second is killed and reported gone.

use std::ffi::CString;
use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::socket::{self, ControlMessage, MsgFlags};

use crate::config::Output;
use crate::os::spawn::{self, ChildFds, Command, SpawnAttributes, Stdio};
use crate::os::{self, ChildState};
use crate::sync::lock;

/// The keeper's file name, next to the library (or in `mpsupervisor/` next to it).
pub const KEEPER_NAME: &str = "mpsup-keeper";

/// How long a send to the keeper may wait for room before the keeper is given up.
const SEND_BOUND: Duration = Duration::from_secs(1);
/// How long the keeper has to say hello, and to exit when told.
const KEEPER_BOUND: Duration = Duration::from_secs(3);

/// The host holds one descriptor for it, the socket (no pidfd: its end of the socket closing says
/// it has exited).
struct Keeper {
    pid: i32,
    sock: OwnedFd,
    /// False once it failed to take a message or exited.
    alive: AtomicBool,
}

/// Sends one datagram (and a descriptor), waiting at most `SEND_BOUND` for room.
fn send_bounded(sock: &OwnedFd, bytes: &[u8], fd: Option<&OwnedFd>) -> std::io::Result<()> {
    let until = Instant::now() + SEND_BOUND;
    let raw = fd.map(|f| [f.as_raw_fd()]);
    loop {
        let iov = [IoSlice::new(bytes)];
        let cmsgs: Vec<ControlMessage<'_>> = raw
            .as_ref()
            .map(|r| ControlMessage::ScmRights(r))
            .into_iter()
            .collect();
        match socket::sendmsg::<()>(
            sock.as_raw_fd(),
            &iov,
            &cmsgs,
            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(nix::errno::Errno::EAGAIN) => {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(std::io::Error::from(nix::errno::Errno::EAGAIN));
                }
                let ms = left.as_millis().clamp(1, 1000) as u16;
                let mut fds = [PollFd::new(
                    std::os::fd::AsFd::as_fd(sock),
                    PollFlags::POLLOUT,
                )];
                let _ = poll(&mut fds, PollTimeout::from(ms));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Waits (bounded) for the keeper to exit and reaps it; kills it when it does not.
fn wait_exit(k: &Keeper, until: Instant) {
    loop {
        match os::peek_exit(k.pid) {
            ChildState::Running => {}
            ChildState::Exited(_) => {
                os::try_reap(k.pid);
                return;
            }
            ChildState::Gone => return,
        }
        if Instant::now() >= until {
            let _ = os::kill_pid(k.pid, Signal::SIGKILL as i32);
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(k.pid), None);
            return;
        }
        // Its end of the socket closes when it exits (POLLHUP); anything it may have sent makes
        // the poll return at once, hence the short sleep while it still runs.
        let mut fds = [PollFd::new(
            std::os::fd::AsFd::as_fd(&k.sock),
            PollFlags::POLLIN,
        )];
        let _ = poll(&mut fds, PollTimeout::from(100u16));
        if matches!(os::peek_exit(k.pid), ChildState::Running) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Spawns the keeper and waits for its hello.
fn start_keeper(program: &Path, cgroups: &[PathBuf]) -> std::io::Result<Keeper> {
    let (ours, theirs) = os::passing::message_pair()?;
    let theirs = os::dup_at_least(&theirs, spawn::FIRST_INHERITED + 1)?;
    let path = CString::new(program.as_os_str().as_encoded_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let mut argv = vec![
        path.clone(),
        crate::config::cstring(&std::process::id().to_string()),
    ];
    if cgroups.is_empty() {
        argv.push(c"-".to_owned());
    }
    argv.extend(
        cgroups
            .iter()
            .map(|p| crate::config::cstring(&p.to_string_lossy())),
    );
    let attrs = SpawnAttributes::new()?;
    let cmd = Command {
        program: &path,
        argv: &argv,
        envp: &[],
        cwd: Some(c"/"),
        // Its socket in the control socket's place: its descriptor 3.
        fds: ChildFds {
            stdio: Stdio {
                stdout: &Output::Null,
                stderr: &Output::Inherit,
                stdout_pipe: None,
                stderr_pipe: None,
                host: None,
            },
            listen: Vec::new(),
            control: Some(&theirs),
            report: None,
        },
    };
    let pid = spawn::spawn(&cmd, &attrs)?;
    drop(theirs);
    let keeper = Keeper {
        pid,
        sock: ours,
        alive: AtomicBool::new(true),
    };
    let mut hello = [0u8; 128];
    let mut fds = [PollFd::new(
        std::os::fd::AsFd::as_fd(&keeper.sock),
        PollFlags::POLLIN,
    )];
    let ready = poll(&mut fds, PollTimeout::from(KEEPER_BOUND.as_millis() as u16));
    let n = match ready {
        Ok(1..) => {
            socket::recv(keeper.sock.as_raw_fd(), &mut hello, MsgFlags::MSG_DONTWAIT).unwrap_or(0)
        }
        _ => 0,
    };
    if !hello[..n].starts_with(b"K ") {
        let said = String::from_utf8_lossy(&hello[..n]).into_owned();
        keeper.alive.store(false, Ordering::Release);
        wait_exit(&keeper, Instant::now());
        return Err(std::io::Error::other(if said.is_empty() {
            "the keeper did not start".to_string()
        } else {
            format!("the keeper said: {said}")
        }));
    }
    let _ = socket::setsockopt(&keeper.sock, socket::sockopt::SndBuf, &(1 << 20));
    Ok(keeper)
}

/// The most pids in one `D` message: the keeper reads datagrams of up to 512 bytes.
const REAPED_PER_MESSAGE: usize = 50;

/// The keeper and what it has yet to be told.
pub(super) struct KeeperLink {
    keeper: Keeper,
    /// Reaped workers whose `D` has not gone to the keeper yet.
    reaped: Mutex<Vec<i32>>,
}

impl KeeperLink {
    /// Spawns the keeper (`program`), which kills and removes `cgroups` too when the host dies
    /// (the supervisor's cgroup in each hierarchy; those not made yet are skipped then).
    pub(super) fn start(program: &Path, cgroups: &[PathBuf]) -> std::io::Result<KeeperLink> {
        Ok(KeeperLink {
            keeper: start_keeper(program, cgroups)?,
            reaped: Mutex::new(Vec::new()),
        })
    }

    /// The keeper the previous image of the host started (`handover`): its pid and its socket.
    pub(super) fn resume(pid: i32, sock: OwnedFd) -> KeeperLink {
        KeeperLink {
            keeper: Keeper {
                pid,
                sock,
                alive: AtomicBool::new(true),
            },
            reaped: Mutex::new(Vec::new()),
        }
    }

    /// The keeper's pid and socket, for the next image; the waiting `D`s go first.
    pub(super) fn export(&self) -> (i32, RawFd) {
        self.send_reaped(&mut lock(&self.reaped));
        (self.keeper.pid, self.keeper.sock.as_raw_fd())
    }

    /// Whether the keeper still runs (and so keeps its promise).
    pub(super) fn alive(&self) -> bool {
        let k = &self.keeper;
        if !k.alive.load(Ordering::Acquire) {
            return false;
        }
        if matches!(os::peek_exit(k.pid), ChildState::Running) {
            return true;
        }
        k.alive.store(false, Ordering::Release);
        false
    }

    /// The socket to the keeper: a spawner thread with a descriptor table of its own keeps it.
    pub(super) fn socket(&self) -> RawFd {
        self.keeper.sock.as_raw_fd()
    }

    /// Worker `pid` was just spawned (not handed over yet, so not reaped): `A`, with its pidfd.
    pub(super) fn spawned(&self, pid: i32, pidfd: Option<&OwnedFd>) {
        {
            let mut reaped = lock(&self.reaped);
            if reaped.contains(&pid) {
                // A reaped worker's pid, reused already: its D goes first.
                self.send_reaped(&mut reaped);
            }
        }
        self.tell(&format!("A {pid}"), pidfd);
    }

    /// Worker `pid` has exited and is about to be reaped: the keeper forgets it.
    /// `keeper_has_pidfd`: the keeper got the host's pidfd of it with its `A`; it can then never
    /// mistake a reused pid for it (a reaped worker's pidfd signals nothing), so its `D` waits to
    /// go with others in one message, which spares the keeper a wake-up per reap: when
    /// `REAPED_PER_MESSAGE` wait, before an `A` that reuses one of their pids, and at `close`.
    /// Meanwhile the keeper holds a few pidfds of reaped workers. Without a pidfd the keeper
    /// opened its own from the pid, which is the worker's only until the reap: the `D` goes now.
    pub(super) fn reaping(&self, pid: i32, keeper_has_pidfd: bool) {
        if keeper_has_pidfd && self.keeper.alive.load(Ordering::Acquire) {
            let full = {
                let mut reaped = lock(&self.reaped);
                reaped.push(pid);
                reaped.len() >= REAPED_PER_MESSAGE
            };
            if full {
                self.send_reaped(&mut lock(&self.reaped));
            }
        } else {
            self.tell(&format!("D {pid}"), None);
        }
    }

    /// Sends the waiting `D`s, under the lock of their list: a spawn that reuses one of their
    /// pids (`spawned`) sends its `A` only after them, or the keeper would forget the new worker.
    fn send_reaped(&self, reaped: &mut Vec<i32>) {
        if reaped.is_empty() {
            return;
        }
        let mut text = String::from("D");
        for pid in reaped.drain(..) {
            text.push_str(&format!(" {pid}"));
        }
        self.tell(&text, None);
    }

    fn tell(&self, text: &str, fd: Option<&OwnedFd>) {
        let k = &self.keeper;
        if !k.alive.load(Ordering::Acquire) {
            return;
        }
        if send_bounded(&k.sock, text.as_bytes(), fd).is_err() {
            // It does not take messages: it can no longer keep its promise, and must not act
            // on an outdated list. Ours and unreaped, so its pid is its own.
            k.alive.store(false, Ordering::Release);
            let _ = os::kill_pid(k.pid, Signal::SIGKILL as i32);
        }
    }

    /// At free, once every worker is reaped: the keeper is told of the last reaps and to exit,
    /// and is reaped (bounded).
    pub(super) fn close(&self) {
        self.send_reaped(&mut lock(&self.reaped));
        let k = &self.keeper;
        if k.alive.load(Ordering::Acquire) {
            let _ = send_bounded(&k.sock, b"Q", None);
        }
        wait_exit(k, Instant::now() + KEEPER_BOUND);
    }
}
