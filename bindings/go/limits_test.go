package mpsupervisor

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

// A Limit of digits goes to the library as a JSON number, anything else as a string, and
// both come back.
func TestLimitJSON(t *testing.T) {
	g := Group{Name: "g", Argv: []string{"/bin/true"}, MemoryMax: "1048576", MemoryHigh: "512M",
		PidsMax: "max", CpuMax: "50%"}
	data, err := json.Marshal(g)
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	want := `"memory_max":1048576,"memory_high":"512M","pids_max":"max","cpu_max":"50%"`
	if !strings.Contains(string(data), want) {
		t.Fatalf("Marshal = %s; want it to contain %s", data, want)
	}
	var back Group
	if err := json.Unmarshal(data, &back); err != nil || back.MemoryMax != "1048576" || back.PidsMax != "max" {
		t.Fatalf("Unmarshal = %+v, %v", back, err)
	}
	if data, err := json.Marshal(Group{Name: "g"}); err != nil || strings.Contains(string(data), "_max") {
		t.Fatalf("an empty Limit is left out: %s, %v", data, err)
	}
}

// A worker past MemoryMax (real cgroups: this machine runs its tests as root) is killed by the
// OOM killer and fails with ReasonOOMKilled.
func TestMemoryMaxFailsAWorkerWithOOMKilled(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("no python3 to allocate with")
	}
	s := newSupervisor(t)
	st, err := s.Status()
	if err != nil || (st.Guarantees.Limits != "cgroup1" && st.Guarantees.Limits != "cgroup2") {
		t.Fatalf("Status = %+v, %v; want limits held by cgroups", st, err)
	}
	// b"x" * n writes every page: 256 MiB against 32 MiB.
	g := Group{Name: "mem", Argv: []string{python, "-c", "b = b'x' * (256 << 20)"},
		ControlChannel: ControlChannelOff, WarmupMs: Ptr(uint64(1)), MemoryMax: "33554432"}
	if err := s.Configure([]Group{g}); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	if err := s.Start("mem"); err != nil {
		t.Fatalf("Start: %v", err)
	}
	events := collect(t, s, func(seen []Event) bool { return len(ofKind(seen, EventWorkerFailed)) == 1 })
	failed := ofKind(events, EventWorkerFailed)[0]
	if failed.Reason != string(ReasonOOMKilled) || failed.Signal == nil || *failed.Signal != 9 {
		t.Fatalf("worker_failed = %+v; want reason oom_killed, signal 9", failed)
	}
}
