package mpsupervisor

import (
	"syscall"
	"testing"
)

// One worker killed under one_for_all: every worker of the group is replaced, the others
// stopped gracefully first.
func TestOneForAllReplacesEveryWorker(t *testing.T) {
	g := shellGroup("g", 3, politeScript)
	g.Restart = RestartAlways
	g.RestartStrategy = RestartOneForAll
	delay := uint64(1)
	g.RestartDelayMs = &delay
	s := started(t, g)
	snap, err := s.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	before := map[int]bool{}
	for _, w := range snap["g"] {
		before[w.PID] = true
	}
	drain(t, s)
	if err := syscall.Kill(snap["g"][1].PID, syscall.SIGKILL); err != nil {
		t.Fatalf("kill: %v", err)
	}
	var stopped, restarting, ready int
	for e := range s.Events(within(t, patience)) {
		switch e.Kind {
		case EventWorkerStopped:
			stopped++
		case EventWorkerRestarting:
			restarting++
		case EventWorkerReady:
			ready++
		}
		if ready == 3 {
			break
		}
	}
	if stopped != 2 || restarting != 3 || ready != 3 {
		t.Fatalf("stopped %d, restarting %d, ready %d; want 2, 3, 3", stopped, restarting, ready)
	}
	snap, err = s.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	for _, w := range snap["g"] {
		if before[w.PID] {
			t.Fatalf("worker %s kept its pid %d", w.WorkerID, w.PID)
		}
	}
}
