package mpsupervisor

import (
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

func TestStopNamedLeavesTheOtherGroupsRunning(t *testing.T) {
	s := started(t, shellGroup("a", 2, politeScript), shellGroup("b", 1, politeScript))
	snap, err := s.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	bPID := snap["b"][0].PID
	drain(t, s)
	wantCode(t, s.StopNamed(within(t, patience), true, "nope"), ErrUnknownGroup)
	if err := s.StopNamed(within(t, patience), true, "a"); err != nil {
		t.Fatalf("StopNamed: %v", err)
	}
	stopped := ofKind(drain(t, s), EventWorkerStopped)
	if len(stopped) != 2 || stopped[0].GroupName != "a" || stopped[0].Mode != ModeGraceful {
		t.Fatalf("worker_stopped = %+v", stopped)
	}
	snap, err = s.Snapshot()
	if err != nil || len(snap["a"]) != 0 || snap["b"][0].PID != bPID {
		t.Fatalf("Snapshot = %+v, %v", snap, err)
	}
	if err := s.Start("a"); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if ready, err := s.WaitReady(within(t, patience)); err != nil || !ready {
		t.Fatalf("WaitReady = %v, %v", ready, err)
	}
}

// A worker that writes <dir>/usr1.<pid> for each SIGUSR1, ready once its trap is set.
const usr1Script = `trap 'touch "$DIR/usr1.$$"' USR1; echo READY >&3; while :; do sleep 0.05; done`

func TestSignalGroupReachesEveryWorker(t *testing.T) {
	dir := t.TempDir()
	g := shellGroup("w", 2, usr1Script)
	g.Env = map[string]string{"DIR": dir}
	s := started(t, g)
	snap, err := s.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	if err := s.SignalGroup("w", syscall.SIGUSR1); err != nil {
		t.Fatalf("SignalGroup: %v", err)
	}
	deadline := time.Now().Add(patience)
	for _, w := range snap["w"] {
		path := filepath.Join(dir, "usr1."+strconv.Itoa(w.PID))
		for {
			if _, err := os.Stat(path); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never came", path)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if n := len(ofKind(drain(t, s), EventWorkerSignaled)); n != 2 {
		t.Fatalf("%d worker_signaled events, want 2", n)
	}
	wantCode(t, s.SignalGroup("nope", syscall.SIGUSR1), ErrUnknownGroup)
	wantCode(t, s.ReloadGroups("nope"), ErrUnknownGroup)
}

func TestReplaceWorkerRecycles(t *testing.T) {
	s := started(t, shellGroup("r", 1, politeScript))
	snap, err := s.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	old := snap["r"][0].PID
	drain(t, s)
	if err := s.ReplaceWorker("r#1"); err != nil {
		t.Fatalf("ReplaceWorker: %v", err)
	}
	events := collect(t, s, func(seen []Event) bool { return len(ofKind(seen, EventWorkerStopped)) == 1 })
	recycled := ofKind(events, EventWorkerRecycled)
	if len(recycled) != 1 {
		t.Fatalf("worker_recycled = %+v", recycled)
	}
	d, ok := recycled[0].Data.(*WorkerRecycled)
	if !ok || d.Reason != RecycleRequested || d.OldPID != old || d.NewPID == old {
		t.Fatalf("worker_recycled = %+v", recycled[0].Data)
	}
	wantCode(t, s.ReplaceWorker("r#2"), ErrUnknownGroup)
}
