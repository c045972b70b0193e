package mpsupervisor

import (
	"encoding/json"
	"errors"
	"strings"
	"time"
)

// Readiness says how a worker proves it is ready.
type Readiness string

const (
	// ReadinessWarmup: ready once alive WarmupMs after spawn (the library's default).
	ReadinessWarmup Readiness = "warmup"
	// ReadinessNotify: ready once it sends READY on its control channel.
	ReadinessNotify Readiness = "notify"
	// ReadinessSdNotify: ready once it sends READY=1 to NOTIFY_SOCKET (systemd's protocol).
	ReadinessSdNotify Readiness = "sd_notify"
	// ReadinessProbe: ready once its ReadinessProbe succeeds (SuccessThreshold times in a row).
	ReadinessProbe Readiness = "probe"
)

// ControlChannel says whether workers get a control socket.
type ControlChannel string

const (
	// ControlChannelAuto: a socket pair when one can be made (the default).
	ControlChannelAuto ControlChannel = "auto"
	// ControlChannelOff: always stop by StopSignal.
	ControlChannelOff ControlChannel = "off"
)

// Restart is a group's restart policy.
type Restart string

const (
	RestartNever     Restart = "never"      // the default
	RestartOnFailure Restart = "on-failure" // non-zero exit, signal or timeout
	RestartAlways    Restart = "always"     // also after exit 0
)

// DependsCondition is what a dependency (Group.DependsOn) must have reached before its
// dependent starts.
type DependsCondition string

// The conditions of Group.DependsOn.
const (
	DependsStarted   DependsCondition = "started"   // every worker of the dependency spawned
	DependsReady     DependsCondition = "ready"     // every worker of the dependency ready
	DependsCompleted DependsCondition = "completed" // every worker exited 0, none respawned
)

// OnDependencyRestart is what a group does when a worker of a group it depends on ends.
type OnDependencyRestart string

// The values of Group.OnDependencyRestart.
const (
	OnDependencyIgnore  OnDependencyRestart = "ignore"  // nothing (the default)
	OnDependencyReplace OnDependencyRestart = "restart" // rolling restart once the dependency is ready again
	OnDependencyStop    OnDependencyRestart = "stop"    // stop the group (systemd's BindsTo=)
)

// RestartStrategy says which workers of a group a respawn replaces (OTP's strategies).
type RestartStrategy string

const (
	RestartOneForOne RestartStrategy = "one_for_one" // only the worker that ended (the default)
	RestartOneForAll RestartStrategy = "one_for_all" // every running worker of the group with it
)

// KillMode says who gets a graceful stop's signal (systemd's KillMode). SIGKILL always goes
// to the whole process group (and cgroup).
type KillMode string

const (
	KillModeProcessGroup KillMode = "process_group" // the worker's whole process group (the default)
	KillModeMixed        KillMode = "mixed"         // the worker's own process only
)

// NotifyAccess says which processes may send sd_notify messages for a worker.
type NotifyAccess string

const (
	NotifyAccessMain NotifyAccess = "main" // only the worker's own process (the default)
	NotifyAccessAll  NotifyAccess = "all"  // any process of the worker's process group
)

// Signal is a signal by its name, for StopSignal.
type Signal string

// The signals a group may stop its workers with.
const (
	SIGTERM  Signal = "SIGTERM" // the default
	SIGINT   Signal = "SIGINT"
	SIGQUIT  Signal = "SIGQUIT"
	SIGHUP   Signal = "SIGHUP"
	SIGUSR1  Signal = "SIGUSR1"
	SIGUSR2  Signal = "SIGUSR2"
	SIGKILL  Signal = "SIGKILL"
	SIGALRM  Signal = "SIGALRM"
	SIGPWR   Signal = "SIGPWR"
	SIGWINCH Signal = "SIGWINCH"
)

// Group configures one process group. It mirrors the library's group JSON key for key
// (schema/groups.schema.json; a test checks that); a zero or nil field is left out, so the
// library's default applies. Fields whose zero value is meaningful but differs from the
// default (InheritEnv, WarmupMs, OutputTailLines, the restart tuning) are pointers: nil means
// the default, Ptr(false) or Ptr(uint64(0)) says so explicitly.
type Group struct {
	Name           string            `json:"name"`
	Argv           []string          `json:"argv,omitempty"`    // required; omitempty so that a missing one is reported as such
	Workers        int               `json:"workers,omitempty"` // default 1; 1 to 4096
	Env            map[string]string `json:"env,omitempty"`
	InheritEnv     *bool             `json:"inherit_env,omitempty"` // default true
	Cwd            string            `json:"cwd,omitempty"`         // default: the host's
	Readiness      Readiness         `json:"readiness,omitempty"`   // default "warmup"
	WarmupMs       *uint64           `json:"warmup_ms,omitempty"`   // default 20
	ControlChannel ControlChannel    `json:"control_channel,omitempty"`
	StopSignal     Signal            `json:"stop_signal,omitempty"`   // default SIGTERM
	KillMode       KillMode          `json:"kill_mode,omitempty"`     // default "process_group"
	NotifyAccess   NotifyAccess      `json:"notify_access,omitempty"` // default "main" (sd_notify readiness)
	Stdout         *Output           `json:"stdout,omitempty"`        // default: inherit
	Stderr         *Output           `json:"stderr,omitempty"`        // default: inherit
	// OutputTailLines is how many of the last lines of each captured stream are kept per
	// worker (a failed worker's stderr_tail); default 20, at most 10000.
	OutputTailLines *uint32 `json:"output_tail_lines,omitempty"`

	// Listen sockets are opened once for the group and passed to every worker (descriptors
	// 3, 4, ...; LISTEN_FDS and LISTEN_FDNAMES as systemd sets them). Status reports their
	// bound addresses.
	Listen []Listen `json:"listen,omitempty"`
	// ReusePort gives each worker its own SO_REUSEPORT socket instead of one shared socket
	// (TCP only).
	ReusePort bool `json:"reuse_port,omitempty"`

	// Identity, limits and environment (identity.go), applied to every worker between its
	// spawn and its program's exec. User and Group: "" leaves them the host's; User without
	// SupplementaryGroups brings that user's groups, and without Group its primary group.
	User  ID `json:"user,omitempty"`
	Group ID `json:"group,omitempty"`
	// SupplementaryGroups: nil leaves them (User's, or the host's); &[]ID{} clears them.
	SupplementaryGroups *[]ID    `json:"supplementary_groups,omitempty"`
	Umask               string   `json:"umask,omitempty"` // 3 or 4 octal digits, "0027"
	NoNewPrivileges     bool     `json:"no_new_privileges,omitempty"`
	Rlimits             *Rlimits `json:"rlimits,omitempty"`
	// EnvFiles are absolute paths of systemd EnvironmentFile= files ("-" before the path: may
	// be missing), read at every spawn, applied after the host's environment and before Env.
	EnvFiles []string `json:"env_files,omitempty"`

	Restart            Restart         `json:"restart,omitempty"`              // default "never"
	RestartStrategy    RestartStrategy `json:"restart_strategy,omitempty"`     // default "one_for_one"
	RestartDelayMs     *uint64         `json:"restart_delay_ms,omitempty"`     // default 100
	RestartDelayMaxMs  *uint64         `json:"restart_delay_max_ms,omitempty"` // default 30000
	BackoffResetMs     *uint64         `json:"backoff_reset_ms,omitempty"`     // default 10000
	MaxRestarts        *uint32         `json:"max_restarts,omitempty"`         // default 5
	RestartWindowMs    *uint64         `json:"restart_window_ms,omitempty"`    // default 60000
	ReadyTimeoutMs     uint64          `json:"ready_timeout_ms,omitempty"`     // default 0: off
	HeartbeatTimeoutMs uint64          `json:"heartbeat_timeout_ms,omitempty"` // default 0: off
	// Bootstrap is sent to each worker as its first line, BOOTSTRAP <compact JSON>. nil sends
	// nothing; to send a JSON null, use json.RawMessage("null"). (Decoding a Group from JSON
	// turns "bootstrap": null into nil, that is, absent.)
	Bootstrap interface{} `json:"bootstrap,omitempty"`
	StartGate bool        `json:"start_gate,omitempty"` // workers wait for START (StartWork)
	// StopTimeoutMs bounds the graceful stop of a worker that Scale or Restart retires.
	StopTimeoutMs *uint64 `json:"stop_timeout_ms,omitempty"` // default 10000

	// Resource limits, each per worker process with its descendants, held by cgroups (v2, or
	// the controller's v1 hierarchy); "" is no limit. A limit that cannot be enforced fails
	// Start with ErrUnsupported. MemoryMax and MemoryHigh: bytes ("1048576"), a size ("512M";
	// K, M, G, T are powers of 1024) or "max"; a worker past MemoryMax is killed by the OOM
	// killer and fails with ReasonOOMKilled; MemoryHigh needs cgroup v2. PidsMax: "64" or
	// "max". CpuMax: "50%" of one core, "QUOTA PERIOD" in microseconds, or "max".
	MemoryMax  Limit  `json:"memory_max,omitempty"`
	MemoryHigh Limit  `json:"memory_high,omitempty"`
	PidsMax    Limit  `json:"pids_max,omitempty"`
	CpuMax     string `json:"cpu_max,omitempty"`

	// One group at a time and recycling (API.md part 7).
	ReloadSignal Signal `json:"reload_signal,omitempty"` // what ReloadGroups sends; default "SIGHUP"
	// MaxRSSBytes recycles a worker whose resident set stays above it for two samples, taken
	// every RSSSampleMs; 0: off.
	MaxRSSBytes uint64  `json:"max_rss_bytes,omitempty"`
	RSSSampleMs *uint64 `json:"rss_sample_ms,omitempty"` // default 5000, 10 or more
	// MaxLifetimeMs recycles a worker older than its lifetime, drawn once per worker in
	// [MaxLifetimeMs, MaxLifetimeMs + LifetimeJitterMs]; 0: off.
	MaxLifetimeMs    uint64 `json:"max_lifetime_ms,omitempty"`
	LifetimeJitterMs uint64 `json:"lifetime_jitter_ms,omitempty"`

	// Dependencies between groups (API.md part 8). DependsOn maps group names to the condition
	// each must reach before this group starts; Start starts them too when they are not
	// running. OnDependencyRestart: "ignore" (default) or "stop".
	DependsOn           map[string]DependsCondition `json:"depends_on,omitempty"`
	OnDependencyRestart OnDependencyRestart         `json:"on_dependency_restart,omitempty"`

	// Probes (API.md part 8). ReadinessProbe: with ReadinessProbe readiness it makes a worker
	// ready; with any readiness, a ready worker whose probe then fails FailureThreshold times
	// in a row is unready until it passes again. LivenessProbe: FailureThreshold failures in a
	// row kill the worker (ReasonLivenessFailed). PortBase: {port} in probes and Env values is
	// PortBase + index - 1 ({index} from 1, {pid} in probes only).
	ReadinessProbe *Probe  `json:"readiness_probe,omitempty"`
	LivenessProbe  *Probe  `json:"liveness_probe,omitempty"`
	PortBase       *uint16 `json:"port_base,omitempty"`
}

// Probe is one probe of a worker, as Kubernetes defines them: exactly one of Exec (success:
// exit status 0), TCP ("ip:port"; success: the connection is accepted) and HTTP
// ("http://ip:port/path"; success: a status from 200 to 399). Zero values are the defaults:
// PeriodMs 1000 (10 or more), TimeoutMs 1000, InitialDelayMs 0, FailureThreshold 3,
// SuccessThreshold 1.
type Probe struct {
	Exec             []string `json:"exec,omitempty"`
	TCP              string   `json:"tcp,omitempty"`
	HTTP             string   `json:"http,omitempty"`
	PeriodMs         uint64   `json:"period_ms,omitempty"`
	TimeoutMs        uint64   `json:"timeout_ms,omitempty"`
	InitialDelayMs   uint64   `json:"initial_delay_ms,omitempty"`
	FailureThreshold uint32   `json:"failure_threshold,omitempty"`
	SuccessThreshold uint32   `json:"success_threshold,omitempty"`
}

// Limit is a size or a count: decimal digits go to the library as a JSON number, anything
// else ("512M", "max") as a string.
type Limit string

// MarshalJSON gives a number for digits, else the string.
func (l Limit) MarshalJSON() ([]byte, error) {
	s := string(l)
	if s != "" && strings.Trim(s, "0123456789") == "" {
		if n := strings.TrimLeft(s, "0"); n != "" {
			return []byte(n), nil
		}
		return []byte("0"), nil
	}
	return json.Marshal(s)
}

// UnmarshalJSON accepts a number or a string (null: no limit).
func (l *Limit) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err == nil {
		*l = Limit(s)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(data, &n); err != nil {
		return err
	}
	*l = Limit(n)
	return nil
}

// Listen is one listen socket of a group: a name (its entry in LISTEN_FDNAMES) and either
// TCP ("IP:PORT" or "[IPV6]:PORT"; port 0 binds a free port) or Unix (a path, or an abstract
// socket's name after "@"). Backlog 0 means the library's default, 1024.
type Listen struct {
	Name    string `json:"name"`
	TCP     string `json:"tcp,omitempty"`
	Unix    string `json:"unix,omitempty"`
	Backlog uint32 `json:"backlog,omitempty"`
}

// Ptr returns a pointer to v, for the optional fields of Group: Ptr(false), Ptr(uint64(0)).
func Ptr[T any](v T) *T { return &v }

// Output says where a worker's stdout or stderr goes:
//
//   - the zero value inherits the host's stream ("inherit");
//   - Discard sends it to /dev/null ("null");
//   - Capture makes it a pipe the supervisor reads: lines become worker.output log records
//     and the worker's stderr_tail ("capture");
//   - File alone: a file the worker writes itself, appended to unless Append is Ptr(false)
//     ({"file": ..., "append": ...});
//   - File with MaxBytes: a file the supervisor writes and rotates when it reaches MaxBytes,
//     keeping Keep older files (default 3) ({"file": ..., "max_bytes": ..., "keep": ...}).
type Output struct {
	Discard  bool    `json:"-"`
	Capture  bool    `json:"-"`
	File     string  `json:"file,omitempty"`
	Append   *bool   `json:"append,omitempty"`    // a written file: default true
	MaxBytes uint64  `json:"max_bytes,omitempty"` // a rotated file: rotate at this size
	Keep     *uint32 `json:"keep,omitempty"`      // a rotated file: older files kept, default 3
}

// MarshalJSON gives "inherit", "null", "capture", {"file", "append"} or {"file",
// "max_bytes", "keep"}; an Output that mixes these forms is an error.
func (o Output) MarshalJSON() ([]byte, error) {
	forms := 0
	for _, set := range []bool{o.Discard, o.Capture, o.File != ""} {
		if set {
			forms++
		}
	}
	switch {
	case forms > 1:
		return nil, errors.New("mpsupervisor: Output sets more than one of Discard, Capture and File")
	case o.File == "" && (o.Append != nil || o.MaxBytes != 0 || o.Keep != nil):
		return nil, errors.New("mpsupervisor: Output's Append, MaxBytes and Keep need a File")
	case o.MaxBytes != 0 && o.Append != nil:
		return nil, errors.New("mpsupervisor: Output's Append is for a file the worker writes, not a rotated one (MaxBytes)")
	case o.MaxBytes == 0 && o.Keep != nil:
		return nil, errors.New("mpsupervisor: Output's Keep needs MaxBytes")
	case o.File != "":
		type object Output // no methods, so no recursion
		return json.Marshal(object(o))
	case o.Discard:
		return []byte(`"null"`), nil
	case o.Capture:
		return []byte(`"capture"`), nil
	default:
		return []byte(`"inherit"`), nil
	}
}

// UnmarshalJSON accepts what MarshalJSON gives.
func (o *Output) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err == nil {
		switch s {
		case "inherit":
			*o = Output{}
		case "null":
			*o = Output{Discard: true}
		case "capture":
			*o = Output{Capture: true}
		default:
			return errors.New(`mpsupervisor: Output must be "inherit", "null", "capture" or {"file": ...}, got "` + s + `"`)
		}
		return nil
	}
	type object Output
	var f object
	if err := json.Unmarshal(data, &f); err != nil {
		return err
	}
	*o = Output(f)
	return nil
}

// WorkerState is where a worker is in its life.
type WorkerState string

// Worker states in a snapshot.
const (
	StateStarting   WorkerState = "starting"   // spawned, not ready yet
	StateReady      WorkerState = "ready"      // running and ready
	StateReloading  WorkerState = "reloading"  // ready, reloading since ReloadGroups (sd_notify)
	StateStopping   WorkerState = "stopping"   // asked to stop, not reaped yet
	StateRestarting WorkerState = "restarting" // ended unasked; waiting for its respawn delay
	StateFailed     WorkerState = "failed"     // ended without being asked, not to be respawned
)

// ExitReason is why a worker's process ended.
type ExitReason string

const (
	ReasonExited           ExitReason = "exited"            // it exited (or was killed by a signal) unasked
	ReasonReadyTimeout     ExitReason = "ready_timeout"     // not ready within ReadyTimeoutMs
	ReasonHeartbeatTimeout ExitReason = "heartbeat_timeout" // no HEARTBEAT within HeartbeatTimeoutMs
	ReasonStopped          ExitReason = "stopped"           // asked to stop (only in LastExit)
	ReasonOOMKilled        ExitReason = "oom_killed"        // killed by the OOM killer past MemoryMax
	ReasonLivenessFailed   ExitReason = "liveness_failed"   // its LivenessProbe failed FailureThreshold times
)

// Worker is one worker's entry in a Snapshot (schema/snapshot.schema.json).
type Worker struct {
	WorkerID        string       `json:"worker_id"` // "<group>#<index>", index from 1
	PID             int          `json:"pid"`
	OSPID           int          `json:"os_pid"` // equals PID
	Alive           bool         `json:"alive"`
	Ready           bool         `json:"ready"`
	State           WorkerState  `json:"state"` // one of the State* constants
	PGID            int          `json:"pgid"`
	ExitCode        *int         `json:"exit_code"` // set once the worker has exited with a code
	Signal          *int         `json:"signal"`    // set once the worker was ended by a signal
	HasStopEvent    bool         `json:"has_stop_event"`
	StopStrategy    string       `json:"stop_strategy"`   // "event" or "terminate_fallback"
	ControlChannel  string       `json:"control_channel"` // "socketpair" or "unavailable"
	StartedAtMs     int64        `json:"started_at_ms"`   // Unix epoch milliseconds
	Restarts        int          `json:"restarts"`
	LastHeartbeatMs *int64       `json:"last_heartbeat_ms"` // nil until the first HEARTBEAT
	Generation      int          `json:"generation"`        // of the configuration it runs
	UptimeMs        *int64       `json:"uptime_ms"`         // nil when it has no process
	LastExit        *LastExit    `json:"last_exit"`         // how its previous process ended, or nil
	Status          *string      `json:"status"`            // the last STATUS= of an sd_notify worker, or nil
	RSSBytes        *uint64      `json:"rss_bytes"`         // resident memory; nil when not alive
	CPUMs           *uint64      `json:"cpu_ms"`            // user + system CPU time; nil when not alive
	StderrTail      []string     `json:"stderr_tail"`       // a failed (or restarting) worker's last captured stderr lines, else nil
	Notify          *NotifyFacts `json:"notify"`            // what an sd_notify worker said of itself, or nil
}

// LastExit is how a worker's previous process ended.
type LastExit struct {
	ExitCode *int       `json:"exit_code"`
	Signal   *int       `json:"signal"`
	Reason   ExitReason `json:"reason"`
	AtMs     int64      `json:"at_ms"` // Unix epoch milliseconds
}

// NotifyFacts is what an sd_notify worker said of itself.
type NotifyFacts struct {
	Stopping   bool    `json:"stopping"`    // it sent STOPPING=1
	Reloading  bool    `json:"reloading"`   // it sent RELOADING=1 and no READY=1 since
	Errno      *int    `json:"errno"`       // the last ERRNO= it sent
	ExitStatus *string `json:"exit_status"` // the last EXIT_STATUS= it sent
}

// StartedAt returns StartedAtMs as a time.Time.
func (w Worker) StartedAt() time.Time { return time.UnixMilli(w.StartedAtMs) }

// LoggingSettings is what ConfigureLifecycleLogging takes (schema/logging.schema.json): which
// events are logged and where the records go. Nil fields take the library's defaults
// (enabled, level "info", no exporter).
type LoggingSettings struct {
	LifecycleEvents *LifecycleEvents `json:"lifecycle_events,omitempty"`
	Exporters       []Exporter       `json:"exporters,omitempty"`
}

// LifecycleEvents says whether events are logged, and from which level.
type LifecycleEvents struct {
	Enabled *bool    `json:"enabled,omitempty"` // default true
	Level   LogLevel `json:"level,omitempty"`   // default "info"
}

// LogLevel is a record's severity.
type LogLevel string

const (
	LevelDebug LogLevel = "debug"
	LevelInfo  LogLevel = "info"
	LevelWarn  LogLevel = "warn"
	LevelError LogLevel = "error"
)

// Exporter is one place records go: JSON lines on the host's stdout or stderr, JSON lines
// appended to a file (Settings.Path), or lines for people on the console (Settings.Stream).
type Exporter struct {
	Kind     ExporterKind      `json:"kind"`
	Settings *ExporterSettings `json:"settings,omitempty"` // "jsonl": required; "console": optional
}

// ExporterKind is an exporter's kind.
type ExporterKind string

const (
	ExporterStdout  ExporterKind = "stdout"
	ExporterStderr  ExporterKind = "stderr"
	ExporterJSONL   ExporterKind = "jsonl"
	ExporterConsole ExporterKind = "console"
)

// ExporterSettings are the settings of a "jsonl" exporter (Path, the file, created if missing)
// or of a "console" one (Stream, default "stdout").
type ExporterSettings struct {
	Path   string        `json:"path,omitempty"`
	Stream ConsoleStream `json:"stream,omitempty"`
}

// ConsoleStream is which of the host's streams console lines go to.
type ConsoleStream string

const (
	ConsoleStdout ConsoleStream = "stdout"
	ConsoleStderr ConsoleStream = "stderr"
)
