//! One worker's spawn: its listen sockets, control socket, environment, the exec shim.

use super::table::View;
use super::*;
use crate::protocol::env;

/// `NAME=value`, for a worker's environment.
fn env_var(name: &str, value: &str) -> CString {
    config::cstring(&format!("{name}={value}"))
}

/// What a worker of `spec` needs to know of its group's listen sockets (None when it has none).
fn listen_info(
    shared: &Shared,
    spec: &config::GroupSpec,
) -> std::io::Result<Option<Arc<ListenInfo>>> {
    if spec.listen.is_empty() {
        return Ok(None);
    }
    shared.listeners.info(&spec.name).map(Some).ok_or_else(|| {
        std::io::Error::other(format!(
            "the listen sockets of group '{}' are closed",
            spec.name
        ))
    })
}

/// Spawns one worker process: its listen sockets (carried by the submission, or with
/// `reuse_port` its own) and control socket, its own environment variables, the spawn.
/// Descriptors 3, 4, ... are the listen sockets, then the control socket, then the exec shim's
/// report descriptor.
pub(super) fn spawn_one(
    shared: &Shared,
    job: &SpawnJob,
    attrs: &SpawnAttributes,
    given: &View<'_>,
) -> std::io::Result<Child> {
    let spec = &job.plan.spec;
    let listen = listen_info(shared, spec)?;
    let own_sockets = match &listen {
        Some(l) => l.own_sockets()?,
        None => Vec::new(),
    };
    let listen_fds: Vec<&OwnedFd> = given.carried.iter().chain(own_sockets.iter()).collect();
    let listening = listen.as_ref().map_or(0, |l| l.count);
    if listen_fds.len() != listening {
        return Err(std::io::Error::other(format!(
            "{} of the {listening} listen sockets of group '{}' reached the spawner",
            listen_fds.len(),
            spec.name
        )));
    }
    let listen_pid = listening > 0;
    let extra = i32::from(shared.lifeline.uses_shim(listen_pid));
    // The highest descriptor number the spawn assigns.
    let last_target = FIRST_INHERITED + listening as i32 + extra;
    let control_fd = FIRST_INHERITED + listening as i32;
    let (ours, theirs, channel_error) = match spec.control_channel {
        ControlChannelMode::Off => (None, None, None),
        ControlChannelMode::Auto => match os::control_socketpair(last_target) {
            Ok((ours, theirs)) => (Some(ours), Some(theirs), None),
            Err(e) => (None, None, Some(e.to_string())),
        },
    };
    let mut envp: Vec<CString> = Vec::with_capacity(job.plan.env.len() + 8);
    envp.extend(job.plan.env.iter().cloned());
    envp.push(env_var(env::GROUP, &spec.name));
    envp.push(env_var(env::WORKER_ID, &job.id));
    if let Some(l) = &listen {
        // systemd's socket activation; the exec shim adds LISTEN_PID, the worker's own pid.
        envp.push(env_var(env::LISTEN_FDS, &listening.to_string()));
        envp.push(env_var(env::LISTEN_FDNAMES, &l.names));
        envp.push(env_var(env::EXEC_LISTEN_PID, "1"));
    }
    if theirs.is_some() {
        envp.push(env_var(env::CONTROL_FD, &control_fd.to_string()));
        if spec.bootstrap.is_some() {
            envp.push(env_var(env::BOOTSTRAP, "1"));
        }
        if spec.start_gate {
            envp.push(env_var(env::START_GATE, "1"));
        }
    }
    let (captured, writes) = crate::runtime::output::pipes(spec, &job.id)?;
    let mut inherit: Vec<&OwnedFd> = listen_fds.iter().copied().chain(theirs.iter()).collect();
    let placement = shared.lifeline.prepare(
        &spec.name,
        &job.plan.program,
        &job.plan.argv,
        FIRST_INHERITED + inherit.len() as i32,
        listen_pid,
    )?;
    let (program, argv) = match &placement {
        Some(p) => {
            inherit.extend(p.report.as_ref());
            (p.program.as_c_str(), &p.argv[..])
        }
        None => (job.plan.program.as_c_str(), &job.plan.argv[..]),
    };
    let cmd = Command {
        program,
        argv,
        envp: &envp,
        cwd: job.plan.cwd.as_deref(),
        stdout: &spec.stdout,
        stderr: &spec.stderr,
        stdout_pipe: writes[0].as_ref(),
        stderr_pipe: writes[1].as_ref(),
        stdio: given.stdio,
        inherit: &inherit,
    };
    let pid = spawn::spawn(&cmd, attrs)?;
    // From here on the child is owned: whatever happens, it is killed and reaped or adopted.
    let mut child = Child::new(pid, Instant::now(), clock::now_ms());
    drop(theirs);
    drop(listen_fds);
    drop(own_sockets);
    drop(writes);
    child.output = captured;
    child.control = ours;
    child.channel_error = channel_error;
    if shared.use_pidfd {
        child.pidfd = os::pidfd_open(pid).ok();
    }
    shared
        .lifeline
        .spawned(placement, pid, child.pidfd.as_ref())?;
    // The worker's own program runs from now on (after the exec shim's).
    child.spawned_at = Instant::now();
    child.spawned_at_ms = clock::now_ms();
    if let Some(hook) = shared.hook {
        hook(pid);
    }
    Ok(child)
}
