//! The runtime: the threads and descriptors of a supervisor. It feeds what the kernel says into
//! the core and carries out the effects the core records.
//!
//! One lock guards the core and the descriptors together (`Engine`, in `engine.rs` with `Shared`,
//! what the host's calls and the runtime's threads share); it is held only for transitions and
//! non-blocking system calls, never across a spawn or a wait. Every spawn runs on the spawner's
//! threads; the monitor thread watches every descriptor in one epoll set, whose token table
//! (`tokens.rs`) names each descriptor's source; the reaper thread finishes the exits the monitor
//! sees; lines to workers are sent with the lock let go (`sending.rs`); the probe thread runs
//! the workers' probes in an epoll set of its own (`probes/`).
//!
//! No two files here use each other (but `spawner/mod.rs` and `spawner/table.rs`, the spawner's
//! threads and their descriptor table): `engine.rs` uses `io.rs`, which uses `reaper.rs`; the
//! monitor and the reaper reach the engine through `Shared`, the reaper only as `reaper::Told`;
//! `io.rs` hands probe jobs to `probes/`, whose thread reports to the engine only as
//! `probes::Report`.
//!
//! Which thread owns which descriptor (every one close-on-exec; every thread the library starts
//! blocks all signals, `threads.rs`):
//!
//! | thread | makes | uses | closes |
//! | --- | --- | --- | --- |
//! | the host's (each call) | the epoll set and its wake eventfd, the event fd (`events_out.rs`); the keeper's socket and process, the supervisor's cgroup (`lifeline/`); listen sockets (`listen.rs`); the log's jsonl files (`logging/`); the sd_notify socket (`notify.rs`); the link to the spawner's private table (`spawner/table.rs`) | lines to workers' control sockets, sent without the lock (`sending.rs`); the host's 0, 1, 2 and listen sockets, sent to the spawner with each submission | listen sockets of groups no longer started; everything at `free` |
//! | monitor (`monitor.rs`) | — | the epoll set; pidfds (readable once), control sockets (read, and written when room comes), the sd_notify socket, output pipes (under the captures' own lock, `output.rs`); the arrivals socket of the spawner's table, whose messages bring the descriptors of spawned children into the host's table; like any thread that lets go of the lock, lines to control sockets (`sending.rs`) | a control socket that broke the protocol or ended, through the reaper |
//! | reaper (`reaper.rs`) | — | the keeper's socket (`D` messages, `lifeline/keeper.rs`) | an exited worker's pidfd, control socket and output pipes (drained first) |
//! | spawner threads (`spawner/`) | in their own descriptor table: each child's control socket pair, output pipes, the exec shim's report pipe, `reuse_port` listen sockets, its pidfd (`spawner/worker.rs`); a child gets them at the numbers of its one layout, `os::spawn::ChildFds` | the keeper's socket (`A` messages); what a submission sent them | their copies, once a child is spawned and its descriptors sent to the host's table |
//! | probes (`probes/`), from the first probe | the probes' TCP and HTTP sockets, exec probes' pidfds | its own epoll set and wake eventfd (made with the `Io`) | its sockets and pidfds, once each run ends; at `free`, every run (exec probes killed and reaped) |
//! | log writer (`logging/`) | — | the jsonl files, stdout and stderr of the exporters | its files, when the logger is replaced or freed |
//! | rotating-file writer (`rotate.rs`) | the rotating output files | them | them |
//! | cgroup remover (`lifeline/cgroup.rs`) | — | none (cgroup directories, by path) | — |
//! | the keeper process (`src/bin/mpsup-keeper.rs`) | pidfds of the host and of workers without one | its end of the keeper socket (its descriptor 3) | all, when it exits |

pub(crate) mod child;
pub(crate) mod engine;
pub(crate) mod events_out;
pub(crate) mod figures;
pub(crate) mod identity;
pub(crate) mod io;
pub(crate) mod lifeline;
pub(crate) mod listen;
pub(crate) mod monitor;
pub(crate) mod notify;
pub(crate) mod output;
pub(crate) mod plan;
pub(crate) mod probes;
pub(crate) mod reaper;
pub(crate) mod rotate;
pub(crate) mod sending;
pub(crate) mod spawner;
pub(crate) mod tokens;
