package mpsupervisor

import (
	"os"
	"path/filepath"
	"testing"
)

// An exec readiness probe with {index}: each worker is ready once its own file exists, and
// unready again once it is gone (typed probe_failed and worker_unready events).
func TestAnExecReadinessProbeTakesEachWorkersIndex(t *testing.T) {
	dir := t.TempDir()
	g := shellGroup("job", 2, "exec sleep 100000")
	g.Readiness = ReadinessProbe
	g.ControlChannel = ControlChannelOff
	g.ReadinessProbe = &Probe{
		Exec:             []string{"/bin/sh", "-c", "test -e " + filepath.Join(dir, "ok-{index}")},
		PeriodMs:         50,
		FailureThreshold: 1,
	}
	if err := os.WriteFile(filepath.Join(dir, "ok-1"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	s := newSupervisor(t)
	if err := s.Configure([]Group{g}); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	if err := s.Start("job"); err != nil {
		t.Fatalf("Start: %v", err)
	}
	events := collect(t, s, func(seen []Event) bool {
		ready, failed := false, false
		for _, e := range seen {
			ready = ready || (e.Kind == EventWorkerReady && e.WorkerID == "job#1")
			failed = failed || (e.Kind == EventProbeFailed && e.WorkerID == "job#2")
		}
		return ready && failed
	})
	for _, e := range ofKind(events, EventProbeFailed) {
		d, ok := e.Data.(*ProbeFailed)
		if !ok || d.WorkerID != "job#2" || d.Probe != ProbeReadiness || d.Detail != "exec: exit status 1" || d.Failures != 1 {
			t.Fatalf("probe_failed = %+v", e.Data)
		}
	}
	snap, err := s.Snapshot()
	if err != nil || !snap["job"][0].Ready || snap["job"][1].Ready {
		t.Fatalf("Snapshot = %+v, %v", snap, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ok-2"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if ready, err := s.WaitReady(within(t, patience)); err != nil || !ready {
		t.Fatalf("WaitReady = %v, %v", ready, err)
	}
	drain(t, s)
	if err := os.Remove(filepath.Join(dir, "ok-1")); err != nil {
		t.Fatal(err)
	}
	events = collect(t, s, func(seen []Event) bool { return len(ofKind(seen, EventWorkerUnready)) == 1 })
	if d, ok := ofKind(events, EventWorkerUnready)[0].Data.(*WorkerUnready); !ok || d.WorkerID != "job#1" {
		t.Fatalf("worker_unready = %+v", events)
	}
}
