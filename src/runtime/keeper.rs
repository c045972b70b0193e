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
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{self, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType};

use crate::config::Output;
use crate::os::spawn::{self, Command, SpawnAttributes};
use crate::os::{self, ChildState};

/// How long a send to the keeper may wait for room before the keeper is given up.
const SEND_BOUND: Duration = Duration::from_secs(1);
/// How long the keeper has to say hello, and to exit when told.
pub(crate) const KEEPER_BOUND: Duration = Duration::from_secs(3);

/// The host holds one descriptor for it, the socket (no pidfd: its end of the socket closing says
/// it has exited).
pub(crate) struct Keeper {
    pub(crate) pid: i32,
    pub(crate) sock: OwnedFd,
    /// False once it failed to take a message or exited.
    pub(crate) alive: AtomicBool,
}

/// Sends one datagram (and a descriptor), waiting at most `SEND_BOUND` for room.
pub(crate) fn send_bounded(
    sock: &OwnedFd,
    bytes: &[u8],
    fd: Option<&OwnedFd>,
) -> std::io::Result<()> {
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
pub(crate) fn wait_exit(k: &Keeper, until: Instant) {
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
            let _ = os::kill_pid(k.pid, libc::SIGKILL);
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
pub(crate) fn start_keeper(program: &Path, cgroup: Option<&Path>) -> std::io::Result<Keeper> {
    let (ours, theirs) = socket::socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(std::io::Error::from)?;
    let ours = os::above_stdio(ours)?;
    let theirs = os::dup_at_least(&theirs, spawn::FIRST_INHERITED + 1)?;
    let path = CString::new(program.as_os_str().as_encoded_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let cg = cgroup.map_or_else(|| "-".into(), |p| p.to_string_lossy().into_owned());
    let argv = [
        path.clone(),
        crate::config::cstring(&std::process::id().to_string()),
        crate::config::cstring(&cg),
    ];
    let attrs = SpawnAttributes::new()?;
    let cmd = Command {
        program: &path,
        argv: &argv,
        envp: &[],
        cwd: Some(c"/"),
        stdout: &Output::Null,
        stderr: &Output::Inherit,
        stdout_pipe: None,
        stderr_pipe: None,
        stdio: None,
        inherit: &[&theirs],
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
