package mpsupervisor

// #include <stdlib.h>
// #include <mpsupervisor.h>
import "C"

import (
	"encoding/json"
)

// Status is what mpsup_status_json reports: every group, and what holds on this host.
type Status struct {
	Groups     map[string]GroupStatus `json:"groups"`
	Guarantees Guarantees             `json:"guarantees"`
	// NotifySocket is the NOTIFY_SOCKET of sd_notify workers, nil before the first one starts;
	// NotifyReceived counts the datagrams read from it, NotifyDropped those dropped.
	NotifySocket   *string `json:"notify_socket"`
	NotifyReceived uint64  `json:"notify_received"`
	NotifyDropped  uint64  `json:"notify_dropped"`
	// Captured output that did not fit in the log writer's queue (lines) or in the rotating-file
	// writer's queue (bytes).
	OutputLinesDropped uint64 `json:"output_lines_dropped"`
	OutputBytesDropped uint64 `json:"output_bytes_dropped"`
}

// GroupStatus is one group's entry in a Status.
type GroupStatus struct {
	Started    bool           `json:"started"`
	Failed     bool           `json:"failed"`
	Generation int            `json:"generation"`
	Target     int            `json:"target"`
	Running    int            `json:"running"`
	Ready      int            `json:"ready"`
	Rollout    *RolloutStatus `json:"rollout"` // nil when no rollout is in progress or failed
	Listen     []ListenSocket `json:"listen"`  // the group's open listen sockets
	// WaitingFor names the dependencies a started group still waits for (empty otherwise).
	WaitingFor []string `json:"waiting_for"`
}

// ListenSocket is one open listen socket of a group: its name and bound address (IP:PORT with
// the port chosen for port 0, or the Unix path).
type ListenSocket struct {
	Name    string `json:"name"`
	Address string `json:"address"`
}

// RolloutStatus is a rolling restart in progress ("running") or halted ("failed").
type RolloutStatus struct {
	Generation int     `json:"generation"`
	State      string  `json:"state"`
	Replaced   int     `json:"replaced"`
	Remaining  int     `json:"remaining"`
	WorkerID   *string `json:"worker_id"`
	Reason     *string `json:"reason"`
}

// Guarantees says what holds on this host, never more.
type Guarantees struct {
	ExitWatch     string `json:"exit_watch"`     // "pidfd" or "poll"
	Spawn         string `json:"spawn"`          // "posix_spawn"
	HostDeath     string `json:"host_death"`     // the mechanism that kills workers with the host, or "none"
	TreeKill      string `json:"tree_kill"`      // "cgroup" or "process_group"
	ParallelSpawn int    `json:"parallel_spawn"` // spawner threads
	// "migrate" or "reset": what a worker closing its reuse_port socket does to the
	// connections queued on it.
	ReusePortHandoff string `json:"reuse_port_handoff"`
	// Which cgroups hold the groups' limits (MemoryMax, PidsMax, ...): "cgroup2", "cgroup1"
	// (some or all v1 hierarchies, as on hybrid hosts) or "none".
	Limits string `json:"limits"`
}

// RolloutOptions are the options of Restart. Every field is sent as it is (nil options: the
// library's defaults, MaxSurge 1, MaxUnavailable 0, ReadyTimeoutMs 30000); a zero MaxSurge
// with a zero MaxUnavailable is refused by the library, and a zero ReadyTimeoutMs means no
// limit.
type RolloutOptions struct {
	MaxSurge       int `json:"max_surge"`
	MaxUnavailable int `json:"max_unavailable"`
	ReadyTimeoutMs int `json:"ready_timeout_ms"`
}

// Status returns every group's target, running and ready workers, generation and rollout,
// and the guarantees in force.
func (s *Supervisor) Status() (Status, error) {
	var out *C.char
	err := s.call(func(h C.mpsup_supervisor) C.enum_mpsup_result {
		return C.mpsup_status_json(h, &out)
	})
	if err != nil {
		return Status{}, err
	}
	var st Status
	err = json.Unmarshal(takeString(out), &st)
	return st, err
}

// Scale sets the worker count of a started group and returns at once: new workers take the
// next indices, the highest ones are stopped gracefully (and killed after stop_timeout_ms).
func (s *Supervisor) Scale(name string, workers int) error {
	if workers < 0 || workers > 4096 {
		return &Error{Code: CodeInvalidArgument, Message: "workers must be from 0 to 4096"}
	}
	return withCString(name, func(cs *C.char) error {
		return s.call(func(h C.mpsup_supervisor) C.enum_mpsup_result {
			return C.mpsup_scale_group(h, cs, C.uint32_t(workers))
		})
	})
}

// Restart rolls the named started groups out to their current configuration, slot by slot,
// and returns at once; opts nil means the library's defaults (max_surge 1, max_unavailable
// 0, ready_timeout_ms 30000). WaitReady waits for the rollouts and answers false when one
// failed.
func (s *Supervisor) Restart(opts *RolloutOptions, names ...string) error {
	options := ""
	if opts != nil {
		data, err := json.Marshal(opts)
		if err != nil {
			return &Error{Code: CodeInvalidArgument, Message: err.Error()}
		}
		options = string(data)
	}
	return withNames(names, func(p **C.char, n C.size_t) error {
		if opts == nil {
			return s.call(func(h C.mpsup_supervisor) C.enum_mpsup_result {
				return C.mpsup_restart_groups(h, p, n, nil)
			})
		}
		return withCString(options, func(cs *C.char) error {
			return s.call(func(h C.mpsup_supervisor) C.enum_mpsup_result {
				return C.mpsup_restart_groups(h, p, n, cs)
			})
		})
	})
}
