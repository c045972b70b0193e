//! One worker's spawn: its listen sockets, control socket, environment, the exec shim.

use std::ffi::CString;
use std::os::fd::{OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Instant;

use super::table::View;
use crate::clock;
use crate::config::{self, ControlChannelMode};
use crate::core::effects::SpawnJob;
use crate::os;
use crate::os::spawn::{self, ChildFds, Command, SpawnAttributes, Stdio};
use crate::protocol::env;
use crate::runtime::child::Child;
use crate::runtime::lifeline::{Lifeline, Placement};
use crate::runtime::listen::{ListenInfo, Listeners};

/// Called with the pid of every process just spawned, before it is handed over: lets a test
/// inject a panic between a spawn and its adoption.
pub type SpawnHook = fn(i32);

/// What a worker's spawn needs of the spawner.
pub(super) struct Spawning {
    pub(super) use_pidfd: bool,
    pub(super) hook: Option<SpawnHook>,
    /// Every spawned process goes to it (its cgroup, the keeper) before it is handed over.
    pub(super) lifeline: Arc<Lifeline>,
    /// The groups' listen sockets, passed to their workers.
    pub(super) listeners: Arc<Listeners>,
}

/// `NAME=value`, for a worker's environment.
fn env_var(name: &str, value: &str) -> CString {
    config::cstring(&format!("{name}={value}"))
}

/// What a worker of `spec` needs to know of its group's listen sockets (None when it has none).
fn listen_info(
    shared: &Spawning,
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

/// A worker's listen sockets, in order: those its submission carried, then (`reuse_port`) its
/// own; all of them, or the spawn's error.
fn listen_fds<'a>(
    spec: &config::GroupSpec,
    listen: Option<&ListenInfo>,
    given: &'a View<'_>,
    own_sockets: &'a [OwnedFd],
) -> std::io::Result<Vec<&'a OwnedFd>> {
    let listen_fds: Vec<&OwnedFd> = given.carried.iter().chain(own_sockets).collect();
    let listening = listen.map_or(0, |l| l.count);
    if listen_fds.len() != listening {
        return Err(std::io::Error::other(format!(
            "{} of the {listening} listen sockets of group '{}' reached the spawner",
            listen_fds.len(),
            spec.name
        )));
    }
    Ok(listen_fds)
}

/// A worker's control socket: both ends, or why there is none though one was wanted.
struct ControlSocket {
    ours: Option<OwnedFd>,
    theirs: Option<OwnedFd>,
    error: Option<String>,
}

impl ControlSocket {
    /// Makes the pair when `spec` wants one, the worker's end numbered above `room`
    /// (`ChildFds::room`).
    fn open(spec: &config::GroupSpec, room: RawFd) -> ControlSocket {
        let (ours, theirs, error) = match spec.control_channel {
            ControlChannelMode::Off => (None, None, None),
            ControlChannelMode::Auto => match os::control_socketpair(room - 1) {
                Ok((ours, theirs)) => (Some(ours), Some(theirs), None),
                Err(e) => (None, None, Some(e.to_string())),
            },
        };
        ControlSocket {
            ours,
            theirs,
            error,
        }
    }
}

/// Adds the variables of the group's `env_files`, read now (so a rewritten file reaches the next
/// respawn), to `envp`: over the host's, under the group's `env` (which wins); reserved `MPSUP_`
/// names are ignored as in `env`. A missing file without `-` fails the spawn.
fn add_env_files(spec: &config::GroupSpec, envp: &mut Vec<CString>) -> std::io::Result<()> {
    for file in &spec.env_files {
        for (key, value) in crate::env_file::read(file)? {
            if key.starts_with(env::PREFIX) || spec.env.contains_key(&key) {
                continue;
            }
            let prefix = format!("{key}=");
            envp.retain(|e| !e.as_bytes().starts_with(prefix.as_bytes()));
            match CString::new(format!("{key}={value}")) {
                Ok(entry) => envp.push(entry),
                Err(_) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("env_files: {file}: {key} holds a NUL byte"),
                    ))
                }
            }
        }
    }
    Ok(())
}

/// The group's `env` values that hold `{index}` or `{port}` (API.md part 8), with this
/// worker's values; `{pid}`, not known before the spawn, is left to the exec shim (which runs
/// for such a group), told by `MPSUP_EXEC_PID_VARS` which variables hold it.
fn substitute_env(job: &SpawnJob, envp: &mut Vec<CString>) {
    let spec = &job.plan.spec;
    // A group's name holds no `#`: the index follows the only one of the id.
    let Some(index) = job.id.rsplit_once('#').and_then(|(_, i)| i.parse().ok()) else {
        return;
    };
    let places = config::Placeholders::of(spec, index, None);
    let mut pid_vars = Vec::new();
    for (key, value) in spec.env.iter().filter(|(_, v)| v.contains('{')) {
        let prefix = format!("{key}=");
        if let Some(entry) = envp
            .iter_mut()
            .find(|e| e.as_bytes().starts_with(prefix.as_bytes()))
        {
            *entry = env_var(key, &places.apply(value));
            if value.contains("{pid}") {
                pid_vars.push(key.as_str());
            }
        }
    }
    if !pid_vars.is_empty() {
        envp.push(env_var(env::EXEC_PID_VARS, &pid_vars.join(",")));
    }
}

/// A worker's environment: its plan's, with its group's `env_files`, then the variables that tell
/// it its group, its id, its listen sockets (`names`) and its control socket, at their numbers
/// in `fds`.
fn environment(
    job: &SpawnJob,
    names: Option<&str>,
    fds: &ChildFds<'_>,
) -> std::io::Result<Vec<CString>> {
    let spec = &job.plan.spec;
    let mut envp: Vec<CString> = Vec::with_capacity(job.plan.env.len() + 8);
    envp.extend(job.plan.env.iter().cloned());
    add_env_files(spec, &mut envp)?;
    substitute_env(job, &mut envp);
    envp.push(env_var(env::GROUP, &spec.name));
    envp.push(env_var(env::WORKER_ID, &job.id));
    if let Some(names) = names {
        // systemd's socket activation; the exec shim adds LISTEN_PID, the worker's own pid.
        envp.push(env_var(env::LISTEN_FDS, &fds.listen.len().to_string()));
        envp.push(env_var(env::LISTEN_FDNAMES, names));
        envp.push(env_var(env::EXEC_LISTEN_PID, "1"));
    }
    if let Some(control_fd) = fds.control_fd() {
        envp.push(env_var(env::CONTROL_FD, &control_fd.to_string()));
        if spec.bootstrap.is_some() {
            envp.push(env_var(env::BOOTSTRAP, "1"));
        }
        if spec.start_gate {
            envp.push(env_var(env::START_GATE, "1"));
        }
    }
    Ok(envp)
}

/// Spawns one worker process: its listen sockets (carried by the submission, or with
/// `reuse_port` its own) and control socket, its own environment variables, the spawn, through
/// the exec shim where the lifeline wants one. Its descriptors are laid out as `ChildFds` says.
pub(super) fn spawn_one(
    shared: &Spawning,
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
    let stdio = Stdio {
        stdout: &spec.stdout,
        stderr: &spec.stderr,
        stdout_pipe: None,
        stderr_pipe: None,
        host: given.stdio,
    };
    let mut fds = ChildFds {
        stdio,
        listen: listen_fds(spec, listen.as_deref(), given, &own_sockets)?,
        control: None,
        report: None,
    };
    let control = ControlSocket::open(spec, fds.room());
    fds.control = control.theirs.as_ref();
    let envp = environment(job, listen.as_ref().map(|l| l.names.as_str()), &fds)?;
    let (captured, writes) = crate::runtime::output::pipes(spec, &job.id)?;
    fds.stdio.stdout_pipe = writes[0].as_ref();
    fds.stdio.stderr_pipe = writes[1].as_ref();
    let (pid, placement) = launch(shared, job, attrs, fds, &envp)?;
    // From here on the child is owned: whatever happens, it is killed and reaped or adopted.
    let mut child = Child::new(pid, Instant::now(), clock::now_ms());
    let ControlSocket {
        ours,
        theirs,
        error,
    } = control;
    drop(theirs);
    drop(own_sockets);
    drop(writes);
    child.output = captured;
    child.control = ours;
    child.channel_error = error;
    placed(shared, child, placement)
}

/// The spawn itself, placed as the lifeline says. Where the kernel refuses to spawn into a
/// cgroup (a seccomp filter, an older kernel), once: the lifeline places the worker another way
/// from then on, and this spawn is made again that way.
fn launch(
    shared: &Spawning,
    job: &SpawnJob,
    attrs: &SpawnAttributes,
    fds: ChildFds<'_>,
    envp: &[CString],
) -> std::io::Result<(i32, Option<Placement>)> {
    match launch_once(shared, job, attrs, &fds, envp)? {
        Some(spawned) => Ok(spawned),
        None => launch_once(shared, job, attrs, &fds, envp)?.ok_or_else(|| {
            std::io::Error::other("the kernel refused to spawn into a cgroup twice")
        }),
    }
}

/// One attempt of `launch`: None when the kernel refused the spawn into a cgroup.
fn launch_once(
    shared: &Spawning,
    job: &SpawnJob,
    attrs: &SpawnAttributes,
    fds: &ChildFds<'_>,
    envp: &[CString],
) -> std::io::Result<Option<(i32, Option<Placement>)>> {
    let plan = &job.plan;
    let placement =
        shared
            .lifeline
            .prepare(&plan.spec, &plan.program, &plan.argv, fds, &plan.attrs)?;
    let mut fds = fds.clone();
    fds.report = placement.as_ref().and_then(Placement::report);
    let (program, argv) = placement
        .as_ref()
        .and_then(Placement::command)
        .unwrap_or((plan.program.as_c_str(), &plan.argv[..]));
    let cmd = Command {
        program,
        argv,
        envp,
        cwd: plan.cwd.as_deref(),
        fds,
    };
    let spawned = match &placement {
        Some(Placement::Born(b)) => os::born_in::spawn_into(&cmd, attrs, &b.cgroup),
        _ => spawn::spawn(&cmd, attrs).map(Some),
    };
    match spawned {
        Ok(pid) => Ok(pid.map(|pid| (pid, placement))),
        Err(e) => {
            if let Some(p) = placement {
                p.abandon();
            }
            Err(e)
        }
    }
}

/// After the spawn: the lifeline told (which waits for the exec shim, and gives the child the
/// pid of the worker the shim forked, and its pidfd), the test hook.
fn placed(
    shared: &Spawning,
    mut child: Child,
    placement: Option<Placement>,
) -> std::io::Result<Child> {
    shared
        .lifeline
        .spawned(placement, &mut child, shared.use_pidfd)?;
    let pid = child.pid;
    // The worker's own program runs from now on (after the exec shim's).
    child.spawned_at = Instant::now();
    child.spawned_at_ms = clock::now_ms();
    if let Some(hook) = shared.hook {
        hook(pid);
    }
    Ok(child)
}
