package mpsupervisor

import (
	"encoding/json"
	"errors"
	"time"
)

// Readiness says how a worker proves it is ready.
type Readiness string

const (
	// ReadinessWarmup: ready once alive WarmupMs after spawn (the library's default).
	ReadinessWarmup Readiness = "warmup"
	// ReadinessNotify: ready once it sends READY on its control channel.
	ReadinessNotify Readiness = "notify"
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

// Group configures one process group. It mirrors the library's group JSON key for key; a
// zero or nil field is left out, so the library's default applies. Fields whose zero value
// is meaningful but differs from the default (InheritEnv, WarmupMs, the restart tuning) are
// pointers: nil means the default, Ptr(false) or Ptr(uint64(0)) says so explicitly.
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
	StopSignal     string            `json:"stop_signal,omitempty"` // default "SIGTERM"
	Stdout         *Output           `json:"stdout,omitempty"`      // default: inherit
	Stderr         *Output           `json:"stderr,omitempty"`      // default: inherit

	Restart            Restart `json:"restart,omitempty"`              // default "never"
	RestartDelayMs     *uint64 `json:"restart_delay_ms,omitempty"`     // default 100
	RestartDelayMaxMs  *uint64 `json:"restart_delay_max_ms,omitempty"` // default 30000
	BackoffResetMs     *uint64 `json:"backoff_reset_ms,omitempty"`     // default 10000
	MaxRestarts        *uint32 `json:"max_restarts,omitempty"`         // default 5
	RestartWindowMs    *uint64 `json:"restart_window_ms,omitempty"`    // default 60000
	ReadyTimeoutMs     uint64  `json:"ready_timeout_ms,omitempty"`     // default 0: off
	HeartbeatTimeoutMs uint64  `json:"heartbeat_timeout_ms,omitempty"` // default 0: off
	// Bootstrap is sent to each worker as its first line, BOOTSTRAP <compact JSON>. nil sends
	// nothing; to send a JSON null, use json.RawMessage("null"). (Decoding a Group from JSON
	// turns "bootstrap": null into nil, that is, absent.)
	Bootstrap interface{} `json:"bootstrap,omitempty"`
	StartGate bool        `json:"start_gate,omitempty"` // workers wait for START (StartWork)
	// StopTimeoutMs bounds the graceful stop of a worker that Scale or Restart retires.
	StopTimeoutMs *uint64 `json:"stop_timeout_ms,omitempty"` // default 10000
}

// Ptr returns a pointer to v, for the optional fields of Group: Ptr(false), Ptr(uint64(0)).
func Ptr[T any](v T) *T { return &v }

// Output says where a worker's stdout or stderr goes. The zero value inherits the host's
// stream; Discard sends it to /dev/null ("null"); File appends to a file, or truncates it
// first with Truncate.
type Output struct {
	Discard  bool
	File     string
	Truncate bool
}

// MarshalJSON gives "inherit", "null" or {"file": PATH, "append": BOOL}.
func (o Output) MarshalJSON() ([]byte, error) {
	switch {
	case o.File != "" && o.Discard:
		return nil, errors.New("mpsupervisor: Output has both File and Discard")
	case o.File != "":
		return json.Marshal(struct {
			File   string `json:"file"`
			Append bool   `json:"append"`
		}{o.File, !o.Truncate})
	case o.Discard:
		return []byte(`"null"`), nil
	default:
		return []byte(`"inherit"`), nil
	}
}

// UnmarshalJSON accepts what MarshalJSON gives (a missing "append" means true).
func (o *Output) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err == nil {
		switch s {
		case "inherit":
			*o = Output{}
		case "null":
			*o = Output{Discard: true}
		default:
			return errors.New(`mpsupervisor: Output must be "inherit", "null" or {"file": ..., "append": ...}, got "` + s + `"`)
		}
		return nil
	}
	var f struct {
		File   string `json:"file"`
		Append *bool  `json:"append"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		return err
	}
	*o = Output{File: f.File, Truncate: f.Append != nil && !*f.Append}
	return nil
}

// Worker states in a snapshot.
const (
	StateStarting   = "starting"
	StateReady      = "ready"
	StateStopping   = "stopping"
	StateRestarting = "restarting"
	StateFailed     = "failed" // ended without being asked
)

// Worker is one worker's entry in a Snapshot.
type Worker struct {
	WorkerID        string    `json:"worker_id"` // "<group>#<index>", index from 1
	PID             int       `json:"pid"`
	OSPID           int       `json:"os_pid"` // equals PID
	Alive           bool      `json:"alive"`
	Ready           bool      `json:"ready"`
	State           string    `json:"state"` // one of the State* constants
	PGID            int       `json:"pgid"`
	ExitCode        *int      `json:"exit_code"` // set once the worker has exited with a code
	Signal          *int      `json:"signal"`    // set once the worker was ended by a signal
	HasStopEvent    bool      `json:"has_stop_event"`
	StopStrategy    string    `json:"stop_strategy"`   // "event" or "terminate_fallback"
	ControlChannel  string    `json:"control_channel"` // "socketpair" or "unavailable"
	StartedAtMs     int64     `json:"started_at_ms"`   // Unix epoch milliseconds
	Restarts        int       `json:"restarts"`
	LastHeartbeatMs *int64    `json:"last_heartbeat_ms"` // nil until the first HEARTBEAT
	Generation      int       `json:"generation"`        // of the configuration it runs
	UptimeMs        *int64    `json:"uptime_ms"`         // nil when it has no process
	LastExit        *LastExit `json:"last_exit"`         // how its previous process ended, or nil
	Status          *string   `json:"status"`            // the last status it reported, or nil
}

// LastExit is how a worker's previous process ended.
type LastExit struct {
	ExitCode *int   `json:"exit_code"`
	Signal   *int   `json:"signal"`
	Reason   string `json:"reason"` // as in worker_failed, or "stopped"
	AtMs     int64  `json:"at_ms"`  // Unix epoch milliseconds
}

// StartedAt returns StartedAtMs as a time.Time.
func (w Worker) StartedAt() time.Time { return time.UnixMilli(w.StartedAtMs) }

// EventKind is an event's "kind".
type EventKind string

// The event kinds the library emits.
const (
	EventWorkerSpawned         EventKind = "worker_spawned"
	EventSupervisorStartGroups EventKind = "supervisor_start_groups"
	EventWorkerReady           EventKind = "worker_ready"
	EventWorkerStopping        EventKind = "worker_stopping"
	EventWorkerStopped         EventKind = "worker_stopped"
	EventWorkerFailed          EventKind = "worker_failed"
	EventStopEventUnavailable  EventKind = "stop_event_unavailable"
	EventWorkerProtocolError   EventKind = "worker_protocol_error"
	EventEventsDropped         EventKind = "events_dropped"
	EventWorkerRestarting      EventKind = "worker_restarting"
	EventGroupFailed           EventKind = "group_failed"
	EventSupervisorStartWork   EventKind = "supervisor_start_work"
	EventWorkerSpawnFailed     EventKind = "worker_spawn_failed"
	EventWorkerUnkillable      EventKind = "worker_unkillable"
	EventGroupScaled           EventKind = "group_scaled"
	EventRolloutStarted        EventKind = "rollout_started"
	EventWorkerReplaced        EventKind = "worker_replaced"
	EventRolloutFinished       EventKind = "rollout_finished"
	EventRolloutFailed         EventKind = "rollout_failed"
)

// Stop modes of worker_stopping and worker_stopped events.
const (
	ModeGraceful = "graceful"
	ModeForced   = "forced"
)

// Event is one lifecycle event. Seq, TsMs and Kind are always set; the other fields are those
// of the event's kind (see docs/reference.md) and are zero when the kind has no such field. Raw holds the
// event's complete JSON object, for fields this package does not know.
type Event struct {
	Seq  uint64    `json:"seq"`   // from 1, +1 each, gapless
	TsMs int64     `json:"ts_ms"` // Unix epoch milliseconds
	Kind EventKind `json:"kind"`

	GroupName      string `json:"group_name,omitempty"`
	WorkerID       string `json:"worker_id,omitempty"`
	PID            int    `json:"pid,omitempty"`
	StopStrategy   string `json:"stop_strategy,omitempty"`   // worker_spawned
	ControlChannel string `json:"control_channel,omitempty"` // worker_spawned
	Readiness      string `json:"readiness,omitempty"`       // worker_spawned
	Mode           string `json:"mode,omitempty"`            // worker_stopping, worker_stopped
	ExitCode       *int   `json:"exit_code,omitempty"`       // worker_stopped, worker_failed
	Signal         *int   `json:"signal,omitempty"`          // worker_stopped, worker_failed
	Reason         string `json:"reason,omitempty"`          // worker_failed
	Fallback       string `json:"fallback,omitempty"`        // stop_event_unavailable
	Error          string `json:"error,omitempty"`           // stop_event_unavailable, worker_protocol_error
	Count          uint64 `json:"count,omitempty"`           // events_dropped
	Attempt        int    `json:"attempt,omitempty"`         // worker_restarting
	DelayMs        uint64 `json:"delay_ms,omitempty"`        // worker_restarting
	Restarts       int    `json:"restarts,omitempty"`        // group_failed
	WindowMs       uint64 `json:"window_ms,omitempty"`       // group_failed
	GroupCount     int    `json:"group_count,omitempty"`     // supervisor_start_groups, supervisor_start_work
	WorkerCount    int    `json:"worker_count,omitempty"`    // supervisor_start_groups, supervisor_start_work
	Generation     int    `json:"generation,omitempty"`      // every event of a worker, rollouts
	From           int    `json:"from,omitempty"`            // group_scaled
	To             int    `json:"to,omitempty"`              // group_scaled
	Workers        int    `json:"workers,omitempty"`         // rollout_started
	OldPID         *int   `json:"old_pid,omitempty"`         // worker_replaced
	NewPID         int    `json:"new_pid,omitempty"`         // worker_replaced
	DurationMs     uint64 `json:"duration_ms,omitempty"`     // rollout_finished

	Raw json.RawMessage `json:"-"`
}

// Time returns TsMs as a time.Time.
func (e Event) Time() time.Time { return time.UnixMilli(e.TsMs) }

// UnmarshalJSON decodes an event and keeps its JSON in Raw.
func (e *Event) UnmarshalJSON(data []byte) error {
	type plain Event // no methods, so no recursion
	var p plain
	if err := json.Unmarshal(data, &p); err != nil {
		return err
	}
	p.Raw = append(json.RawMessage(nil), data...)
	*e = Event(p)
	return nil
}
