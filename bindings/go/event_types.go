package mpsupervisor

import (
	"encoding/json"
	"time"
)

// EventKind is an event's "kind".
type EventKind string

// The event kinds the library emits (schema/events.schema.json; a test checks that every kind
// there has a constant here and a type in Event.Data).
const (
	EventWorkerSpawned         EventKind = "worker_spawned"
	EventSupervisorStartGroups EventKind = "supervisor_start_groups"
	EventWorkerReady           EventKind = "worker_ready"
	EventWorkerStopping        EventKind = "worker_stopping"
	EventWorkerStopped         EventKind = "worker_stopped"
	EventWorkerFailed          EventKind = "worker_failed"
	EventWorkerStatus          EventKind = "worker_status"
	EventWorkerSpawnFailed     EventKind = "worker_spawn_failed"
	EventStopEventUnavailable  EventKind = "stop_event_unavailable"
	EventWorkerProtocolError   EventKind = "worker_protocol_error"
	EventWorkerUnkillable      EventKind = "worker_unkillable"
	EventEventsDropped         EventKind = "events_dropped"
	EventWorkerRestarting      EventKind = "worker_restarting"
	EventGroupFailed           EventKind = "group_failed"
	EventSupervisorStartWork   EventKind = "supervisor_start_work"
	EventGroupScaled           EventKind = "group_scaled"
	EventRolloutStarted        EventKind = "rollout_started"
	EventWorkerReplaced        EventKind = "worker_replaced"
	EventRolloutFinished       EventKind = "rollout_finished"
	EventRolloutFailed         EventKind = "rollout_failed"
	EventWorkerSignaled        EventKind = "worker_signaled"
	EventWorkerReloading       EventKind = "worker_reloading"
	EventWorkerReloaded        EventKind = "worker_reloaded"
	EventWorkerRecycled        EventKind = "worker_recycled"
	EventGroupWaiting          EventKind = "group_waiting"
	EventGroupCompleted        EventKind = "group_completed"
	EventProbeFailed           EventKind = "probe_failed"
	EventWorkerUnready         EventKind = "worker_unready"
	EventSupervisorAdopted     EventKind = "supervisor_adopted"
)

// StopMode says how a stop was asked for, in worker_stopping and worker_stopped events.
type StopMode string

// Stop modes of worker_stopping and worker_stopped events.
const (
	ModeGraceful StopMode = "graceful" // STOP over the control channel, or the group's stop signal
	ModeForced   StopMode = "forced"   // SIGKILL to the worker's process group (and cgroup)
)

// Event is one lifecycle event. Seq, TsMs and Kind are always set. Data holds the event's own
// fields as the type of its kind (*WorkerSpawned, *WorkerFailed, ...: one per EventKind), nil
// only for a kind this package does not know. The other fields are the same fields, flat, for
// quick access: each is set when the event's kind has it and is zero otherwise. Raw holds the
// event's complete JSON object.
type Event struct {
	Seq  uint64    `json:"seq"`   // from 1, +1 each, gapless
	TsMs int64     `json:"ts_ms"` // Unix epoch milliseconds
	Kind EventKind `json:"kind"`

	GroupName         string   `json:"group_name,omitempty"`
	WorkerID          string   `json:"worker_id,omitempty"`
	PID               int      `json:"pid,omitempty"`
	Generation        int      `json:"generation,omitempty"`         // every event of a worker, rollouts
	StopStrategy      string   `json:"stop_strategy,omitempty"`      // worker_spawned
	ControlChannel    string   `json:"control_channel,omitempty"`    // worker_spawned
	Readiness         string   `json:"readiness,omitempty"`          // worker_spawned
	Mode              StopMode `json:"mode,omitempty"`               // worker_stopping, worker_stopped
	ExitCode          *int     `json:"exit_code,omitempty"`          // worker_stopped, worker_failed
	Signal            *int     `json:"signal,omitempty"`             // worker_stopped, worker_failed, worker_signaled, worker_reloading
	StatusUnavailable bool     `json:"status_unavailable,omitempty"` // worker_stopped, worker_failed
	Reason            string   `json:"reason,omitempty"`             // worker_failed, rollout_failed, worker_recycled, group_failed
	StderrTail        []string `json:"stderr_tail,omitempty"`        // worker_failed
	Status            string   `json:"status,omitempty"`             // worker_status
	Fallback          string   `json:"fallback,omitempty"`           // stop_event_unavailable
	Error             string   `json:"error,omitempty"`              // worker_spawn_failed, stop_event_unavailable, worker_protocol_error, worker_unkillable
	Count             uint64   `json:"count,omitempty"`              // events_dropped
	Attempt           int      `json:"attempt,omitempty"`            // worker_restarting
	DelayMs           uint64   `json:"delay_ms,omitempty"`           // worker_restarting
	Restarts          int      `json:"restarts,omitempty"`           // group_failed
	WindowMs          uint64   `json:"window_ms,omitempty"`          // group_failed
	Dependency        *string  `json:"dependency,omitempty"`         // group_failed
	WaitingFor        []string `json:"waiting_for,omitempty"`        // group_waiting
	GroupCount        int      `json:"group_count,omitempty"`        // supervisor_start_groups, supervisor_start_work
	WorkerCount       int      `json:"worker_count,omitempty"`       // supervisor_start_groups, supervisor_start_work
	From              int      `json:"from,omitempty"`               // group_scaled
	To                int      `json:"to,omitempty"`                 // group_scaled
	Workers           int      `json:"workers,omitempty"`            // rollout_started, group_completed, supervisor_adopted
	ExitedMeanwhile   int      `json:"exited_meanwhile,omitempty"`   // supervisor_adopted
	OldPID            *int     `json:"old_pid,omitempty"`            // worker_replaced, worker_recycled
	NewPID            int      `json:"new_pid,omitempty"`            // worker_replaced, worker_recycled
	DurationMs        uint64   `json:"duration_ms,omitempty"`        // rollout_finished, worker_reloaded
	RSSBytes          *uint64  `json:"rss_bytes,omitempty"`          // worker_recycled
	AgeMs             uint64   `json:"age_ms,omitempty"`             // worker_recycled
	Probe             string   `json:"probe,omitempty"`              // probe_failed
	Detail            string   `json:"detail,omitempty"`             // probe_failed
	Failures          int      `json:"failures,omitempty"`           // probe_failed

	Data EventData       `json:"-"`
	Raw  json.RawMessage `json:"-"`
}

// Time returns TsMs as a time.Time.
func (e Event) Time() time.Time { return time.UnixMilli(e.TsMs) }

// UnmarshalJSON decodes an event, its Data as the type of its kind, and keeps its JSON in Raw.
func (e *Event) UnmarshalJSON(data []byte) error {
	type plain Event // no methods, so no recursion
	var p plain
	if err := json.Unmarshal(data, &p); err != nil {
		return err
	}
	p.Raw = append(json.RawMessage(nil), data...)
	if newData, ok := eventData[p.Kind]; ok {
		d := newData()
		if err := json.Unmarshal(data, d); err != nil {
			return err
		}
		p.Data = d
	}
	*e = Event(p)
	return nil
}

// EventData is the typed content of an event: a pointer to one of the types below, the one
// of its kind. Switch on it:
//
//	switch d := e.Data.(type) {
//	case *mpsupervisor.WorkerFailed:
//		log.Println(d.WorkerID, d.Reason, d.StderrTail)
//	case *mpsupervisor.RolloutFinished:
//		log.Println(d.GroupName, d.DurationMs)
//	}
type EventData interface {
	EventKind() EventKind
}

// eventData makes the Data of each kind.
var eventData = map[EventKind]func() EventData{
	EventWorkerSpawned:         func() EventData { return new(WorkerSpawned) },
	EventSupervisorStartGroups: func() EventData { return new(SupervisorStartGroups) },
	EventWorkerReady:           func() EventData { return new(WorkerReady) },
	EventWorkerStopping:        func() EventData { return new(WorkerStopping) },
	EventWorkerStopped:         func() EventData { return new(WorkerStopped) },
	EventWorkerFailed:          func() EventData { return new(WorkerFailed) },
	EventWorkerStatus:          func() EventData { return new(WorkerStatus) },
	EventWorkerSpawnFailed:     func() EventData { return new(WorkerSpawnFailed) },
	EventStopEventUnavailable:  func() EventData { return new(StopEventUnavailable) },
	EventWorkerProtocolError:   func() EventData { return new(WorkerProtocolError) },
	EventWorkerUnkillable:      func() EventData { return new(WorkerUnkillable) },
	EventEventsDropped:         func() EventData { return new(EventsDropped) },
	EventWorkerRestarting:      func() EventData { return new(WorkerRestarting) },
	EventGroupFailed:           func() EventData { return new(GroupFailed) },
	EventSupervisorStartWork:   func() EventData { return new(SupervisorStartWork) },
	EventGroupScaled:           func() EventData { return new(GroupScaled) },
	EventRolloutStarted:        func() EventData { return new(RolloutStarted) },
	EventWorkerReplaced:        func() EventData { return new(WorkerReplaced) },
	EventRolloutFinished:       func() EventData { return new(RolloutFinished) },
	EventRolloutFailed:         func() EventData { return new(RolloutFailed) },
	EventWorkerSignaled:        func() EventData { return new(WorkerSignaled) },
	EventWorkerReloading:       func() EventData { return new(WorkerReloading) },
	EventWorkerReloaded:        func() EventData { return new(WorkerReloaded) },
	EventWorkerRecycled:        func() EventData { return new(WorkerRecycled) },
	EventGroupWaiting:          func() EventData { return new(GroupWaiting) },
	EventGroupCompleted:        func() EventData { return new(GroupCompleted) },
	EventProbeFailed:           func() EventData { return new(ProbeFailed) },
	EventWorkerUnready:         func() EventData { return new(WorkerUnready) },
	EventSupervisorAdopted:     func() EventData { return new(SupervisorAdopted) },
}

// WorkerSpawned is the Data of a worker_spawned event: a worker's process was spawned.
type WorkerSpawned struct {
	GroupName      string    `json:"group_name"`
	WorkerID       string    `json:"worker_id"`
	PID            int       `json:"pid"`
	Generation     int       `json:"generation"`
	StopStrategy   string    `json:"stop_strategy"`
	ControlChannel string    `json:"control_channel"`
	Readiness      Readiness `json:"readiness"`
}

// EventKind returns EventWorkerSpawned.
func (*WorkerSpawned) EventKind() EventKind { return EventWorkerSpawned }

// SupervisorStartGroups is the Data of a supervisor_start_groups event: Start spawned the workers of the named groups.
type SupervisorStartGroups struct {
	GroupCount  int `json:"group_count"`
	WorkerCount int `json:"worker_count"`
}

// EventKind returns EventSupervisorStartGroups.
func (*SupervisorStartGroups) EventKind() EventKind { return EventSupervisorStartGroups }

// WorkerReady is the Data of a worker_ready event: a worker became ready.
type WorkerReady struct {
	GroupName  string `json:"group_name"`
	WorkerID   string `json:"worker_id"`
	PID        int    `json:"pid"`
	Generation int    `json:"generation"`
}

// EventKind returns EventWorkerReady.
func (*WorkerReady) EventKind() EventKind { return EventWorkerReady }

// WorkerStopping is the Data of a worker_stopping event: a worker was asked to stop.
type WorkerStopping struct {
	GroupName  string   `json:"group_name"`
	WorkerID   string   `json:"worker_id"`
	PID        int      `json:"pid"`
	Generation int      `json:"generation"`
	Mode       StopMode `json:"mode"`
}

// EventKind returns EventWorkerStopping.
func (*WorkerStopping) EventKind() EventKind { return EventWorkerStopping }

// WorkerStopped is the Data of a worker_stopped event: a worker asked to stop has been reaped.
type WorkerStopped struct {
	GroupName         string   `json:"group_name"`
	WorkerID          string   `json:"worker_id"`
	PID               int      `json:"pid"`
	Generation        int      `json:"generation"`
	Mode              StopMode `json:"mode"`
	ExitCode          *int     `json:"exit_code"`
	Signal            *int     `json:"signal"`
	StatusUnavailable bool     `json:"status_unavailable,omitempty"`
}

// EventKind returns EventWorkerStopped.
func (*WorkerStopped) EventKind() EventKind { return EventWorkerStopped }

// WorkerFailed is the Data of a worker_failed event: a worker ended unasked (or timed out).
type WorkerFailed struct {
	GroupName         string     `json:"group_name"`
	WorkerID          string     `json:"worker_id"`
	PID               int        `json:"pid"`
	Generation        int        `json:"generation"`
	Reason            ExitReason `json:"reason"`
	ExitCode          *int       `json:"exit_code"`
	Signal            *int       `json:"signal"`
	StatusUnavailable bool       `json:"status_unavailable,omitempty"`
	StderrTail        []string   `json:"stderr_tail"`
}

// EventKind returns EventWorkerFailed.
func (*WorkerFailed) EventKind() EventKind { return EventWorkerFailed }

// WorkerStatus is the Data of a worker_status event: an sd_notify worker sent STATUS=.
type WorkerStatus struct {
	GroupName  string `json:"group_name"`
	WorkerID   string `json:"worker_id"`
	PID        int    `json:"pid"`
	Generation int    `json:"generation"`
	Status     string `json:"status"`
}

// EventKind returns EventWorkerStatus.
func (*WorkerStatus) EventKind() EventKind { return EventWorkerStatus }

// WorkerSpawnFailed is the Data of a worker_spawn_failed event: a process for the worker could not be spawned (a respawn, a scale-up or a rollout).
type WorkerSpawnFailed struct {
	GroupName  string `json:"group_name"`
	WorkerID   string `json:"worker_id"`
	Generation int    `json:"generation"`
	Error      string `json:"error"`
}

// EventKind returns EventWorkerSpawnFailed.
func (*WorkerSpawnFailed) EventKind() EventKind { return EventWorkerSpawnFailed }

// StopEventUnavailable is the Data of a stop_event_unavailable event: a STOP line could not be sent; the stop fell back.
type StopEventUnavailable struct {
	GroupName  string `json:"group_name"`
	WorkerID   string `json:"worker_id"`
	Generation int    `json:"generation"`
	Fallback   string `json:"fallback"`
	Error      string `json:"error"`
}

// EventKind returns EventStopEventUnavailable.
func (*StopEventUnavailable) EventKind() EventKind { return EventStopEventUnavailable }

// WorkerProtocolError is the Data of a worker_protocol_error event: a worker broke the control protocol.
type WorkerProtocolError struct {
	GroupName  string `json:"group_name"`
	WorkerID   string `json:"worker_id"`
	PID        int    `json:"pid"`
	Generation int    `json:"generation"`
	Error      string `json:"error"`
}

// EventKind returns EventWorkerProtocolError.
func (*WorkerProtocolError) EventKind() EventKind { return EventWorkerProtocolError }

// WorkerUnkillable is the Data of a worker_unkillable event: SIGKILL did not end the worker within the bound; it stays tracked.
type WorkerUnkillable struct {
	GroupName  string `json:"group_name"`
	WorkerID   string `json:"worker_id"`
	PID        int    `json:"pid"`
	Generation int    `json:"generation"`
	Error      string `json:"error"`
}

// EventKind returns EventWorkerUnkillable.
func (*WorkerUnkillable) EventKind() EventKind { return EventWorkerUnkillable }

// EventsDropped is the Data of a events_dropped event: the queue was full and this many events were dropped.
type EventsDropped struct {
	Count uint64 `json:"count"`
}

// EventKind returns EventEventsDropped.
func (*EventsDropped) EventKind() EventKind { return EventEventsDropped }

// WorkerRestarting is the Data of a worker_restarting event: a worker will be respawned after DelayMs.
type WorkerRestarting struct {
	GroupName  string `json:"group_name"`
	WorkerID   string `json:"worker_id"`
	Generation int    `json:"generation"`
	Attempt    int    `json:"attempt"`
	DelayMs    uint64 `json:"delay_ms"`
}

// EventKind returns EventWorkerRestarting.
func (*WorkerRestarting) EventKind() EventKind { return EventWorkerRestarting }

// GroupFailed is the Data of a group_failed event: a group failed for too many restarts within
// its window (Reason "too_many_restarts"), or because a group it depends on failed before it
// could start (Reason "dependency_failed", naming Dependency).
type GroupFailed struct {
	GroupName  string  `json:"group_name"`
	Restarts   int     `json:"restarts"`
	WindowMs   uint64  `json:"window_ms"`
	Reason     string  `json:"reason"`
	Dependency *string `json:"dependency"`
}

// GroupWaiting is the Data of a group_waiting event: a started group waits for dependencies.
type GroupWaiting struct {
	GroupName  string   `json:"group_name"`
	WaitingFor []string `json:"waiting_for"`
}

// EventKind returns EventGroupWaiting.
func (*GroupWaiting) EventKind() EventKind { return EventGroupWaiting }

// GroupCompleted is the Data of a group_completed event: every worker of a group exited 0 and
// none is respawned.
type GroupCompleted struct {
	GroupName string `json:"group_name"`
	Workers   int    `json:"workers"`
}

// EventKind returns EventGroupCompleted.
func (*GroupCompleted) EventKind() EventKind { return EventGroupCompleted }

// EventKind returns EventGroupFailed.
func (*GroupFailed) EventKind() EventKind { return EventGroupFailed }

// SupervisorStartWork is the Data of a supervisor_start_work event: StartWork sent START to the workers of the named groups.
type SupervisorStartWork struct {
	GroupCount  int `json:"group_count"`
	WorkerCount int `json:"worker_count"`
}

// EventKind returns EventSupervisorStartWork.
func (*SupervisorStartWork) EventKind() EventKind { return EventSupervisorStartWork }

// GroupScaled is the Data of a group_scaled event: Scale changed a group's worker count.
type GroupScaled struct {
	GroupName string `json:"group_name"`
	From      int    `json:"from"`
	To        int    `json:"to"`
}

// EventKind returns EventGroupScaled.
func (*GroupScaled) EventKind() EventKind { return EventGroupScaled }

// RolloutStarted is the Data of a rollout_started event: Restart began a rolling restart.
type RolloutStarted struct {
	GroupName  string `json:"group_name"`
	Generation int    `json:"generation"`
	Workers    int    `json:"workers"`
}

// EventKind returns EventRolloutStarted.
func (*RolloutStarted) EventKind() EventKind { return EventRolloutStarted }

// WorkerReplaced is the Data of a worker_replaced event: a rolling restart replaced a worker.
type WorkerReplaced struct {
	GroupName  string `json:"group_name"`
	WorkerID   string `json:"worker_id"`
	Generation int    `json:"generation"`
	OldPID     *int   `json:"old_pid"`
	NewPID     int    `json:"new_pid"`
}

// EventKind returns EventWorkerReplaced.
func (*WorkerReplaced) EventKind() EventKind { return EventWorkerReplaced }

// RolloutFinished is the Data of a rollout_finished event: a rolling restart replaced every worker.
type RolloutFinished struct {
	GroupName  string `json:"group_name"`
	Generation int    `json:"generation"`
	DurationMs uint64 `json:"duration_ms"`
}

// EventKind returns EventRolloutFinished.
func (*RolloutFinished) EventKind() EventKind { return EventRolloutFinished }

// RolloutFailed is the Data of a rollout_failed event: a rolling restart halted: a new worker failed.
type RolloutFailed struct {
	GroupName  string `json:"group_name"`
	WorkerID   string `json:"worker_id"`
	Generation int    `json:"generation"`
	Reason     string `json:"reason"`
}

// EventKind returns EventRolloutFailed.
func (*RolloutFailed) EventKind() EventKind { return EventRolloutFailed }

// WorkerSignaled is the Data of a worker_signaled event: SignalGroup sent a worker a signal
// (or ReloadGroups its reload_signal, to a worker that is not sd_notify).
type WorkerSignaled struct {
	GroupName  string `json:"group_name"`
	WorkerID   string `json:"worker_id"`
	PID        int    `json:"pid"`
	Generation int    `json:"generation"`
	Signal     int    `json:"signal"`
}

// EventKind returns EventWorkerSignaled.
func (*WorkerSignaled) EventKind() EventKind { return EventWorkerSignaled }

// WorkerReloading is the Data of a worker_reloading event: ReloadGroups sent an sd_notify
// worker its reload_signal; it is reloading until READY=1 follows its RELOADING=1.
type WorkerReloading struct {
	GroupName  string `json:"group_name"`
	WorkerID   string `json:"worker_id"`
	PID        int    `json:"pid"`
	Generation int    `json:"generation"`
	Signal     int    `json:"signal"`
}

// EventKind returns EventWorkerReloading.
func (*WorkerReloading) EventKind() EventKind { return EventWorkerReloading }

// WorkerReloaded is the Data of a worker_reloaded event: a reloading worker is ready again.
type WorkerReloaded struct {
	GroupName  string `json:"group_name"`
	WorkerID   string `json:"worker_id"`
	PID        int    `json:"pid"`
	Generation int    `json:"generation"`
	DurationMs uint64 `json:"duration_ms"`
}

// EventKind returns EventWorkerReloaded.
func (*WorkerReloaded) EventKind() EventKind { return EventWorkerReloaded }

// RecycleReason says why a worker was recycled: "max_rss", "max_lifetime" or "requested".
type RecycleReason string

// Reasons of worker_recycled events.
const (
	RecycleMaxRSS      RecycleReason = "max_rss"
	RecycleMaxLifetime RecycleReason = "max_lifetime"
	RecycleRequested   RecycleReason = "requested"
)

// WorkerRecycled is the Data of a worker_recycled event: a worker was replaced as one slot of
// a rolling restart (max_rss_bytes, max_lifetime_ms, or ReplaceWorker).
type WorkerRecycled struct {
	GroupName  string        `json:"group_name"`
	WorkerID   string        `json:"worker_id"`
	Generation int           `json:"generation"`
	Reason     RecycleReason `json:"reason"`
	OldPID     int           `json:"old_pid"`
	NewPID     int           `json:"new_pid"`
	RSSBytes   *uint64       `json:"rss_bytes"`
	AgeMs      uint64        `json:"age_ms"`
}

// EventKind returns EventWorkerRecycled.
func (*WorkerRecycled) EventKind() EventKind { return EventWorkerRecycled }

// ProbeKind says which probe of a worker: "readiness" or "liveness".
type ProbeKind string

// The probes of a worker.
const (
	ProbeReadiness ProbeKind = "readiness" // Group.ReadinessProbe
	ProbeLiveness  ProbeKind = "liveness"  // Group.LivenessProbe
)

// ProbeFailed is the Data of a probe_failed event: a worker's probe failed, on its first
// failure after a success and when its failures reached FailureThreshold (never once per
// period). Detail says what failed ("connect: Connection refused", "HTTP 503", ...).
type ProbeFailed struct {
	GroupName  string    `json:"group_name"`
	WorkerID   string    `json:"worker_id"`
	PID        int       `json:"pid"`
	Generation int       `json:"generation"`
	Probe      ProbeKind `json:"probe"`
	Detail     string    `json:"detail"`
	Failures   int       `json:"failures"`
}

// EventKind returns EventProbeFailed.
func (*ProbeFailed) EventKind() EventKind { return EventProbeFailed }

// WorkerUnready is the Data of a worker_unready event: a ready worker's readiness probe failed
// FailureThreshold times in a row; it is not ready until the probe passes again (worker_ready).
type WorkerUnready struct {
	GroupName  string `json:"group_name"`
	WorkerID   string `json:"worker_id"`
	PID        int    `json:"pid"`
	Generation int    `json:"generation"`
}

// EventKind returns EventWorkerUnready.
func (*WorkerUnready) EventKind() EventKind { return EventWorkerUnready }

// SupervisorAdopted is the Data of a supervisor_adopted event: Adopt rebuilt the supervisor in
// the host's new image (a handover).
type SupervisorAdopted struct {
	Workers         int `json:"workers"`
	ExitedMeanwhile int `json:"exited_meanwhile"`
}

// EventKind returns EventSupervisorAdopted.
func (*SupervisorAdopted) EventKind() EventKind { return EventSupervisorAdopted }
