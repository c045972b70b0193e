package mpsupervisor

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
)

// collect reads events from the channel until done(all so far) holds.
func collect(t *testing.T, s *Supervisor, done func([]Event) bool) []Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*patience)
	defer cancel()
	var seen []Event
	for e := range s.Events(ctx) {
		seen = append(seen, e)
		if done(seen) {
			return seen
		}
	}
	t.Fatalf("events did not come; got %d", len(seen))
	return nil
}

func TestScaleUpAndDown(t *testing.T) {
	s := started(t, shellGroup("web", 1, politeScript))
	if err := s.Scale("web", 3); err != nil {
		t.Fatalf("Scale: %v", err)
	}
	if ready, err := s.WaitReady(within(t, patience)); err != nil || !ready {
		t.Fatalf("WaitReady = %v, %v", ready, err)
	}
	snap, err := s.Snapshot()
	if err != nil || len(snap["web"]) != 3 || snap["web"][2].WorkerID != "web#3" {
		t.Fatalf("Snapshot = %v, %v", snap, err)
	}
	drain(t, s)
	if err := s.Scale("web", 1); err != nil {
		t.Fatalf("Scale: %v", err)
	}
	events := collect(t, s, func(seen []Event) bool { return len(ofKind(seen, EventWorkerStopped)) == 2 })
	if scaled := ofKind(events, EventGroupScaled); len(scaled) != 1 || scaled[0].From != 3 || scaled[0].To != 1 {
		t.Fatalf("group_scaled = %+v", scaled)
	}
	wantCode(t, s.Scale("nope", 1), ErrUnknownGroup)
	wantCode(t, s.Scale("web", 5000), ErrInvalidArgument)
	st, err := s.Status()
	if err != nil || st.Groups["web"].Target != 1 || st.Guarantees.Spawn != "posix_spawn" {
		t.Fatalf("Status = %+v, %v", st, err)
	}
}

func TestRollingRestartDeploysTheNewConfiguration(t *testing.T) {
	g := shellGroup("web", 2, politeScript)
	g.Env = map[string]string{"VERSION": "1"}
	s := started(t, g)
	g.Env = map[string]string{"VERSION": "2"}
	if err := s.Configure([]Group{g}); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	drain(t, s)
	if err := s.Restart(&RolloutOptions{MaxSurge: 1, ReadyTimeoutMs: 30000}, "web"); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	events := collect(t, s, func(seen []Event) bool {
		return len(ofKind(seen, EventRolloutFinished)) == 1 && len(ofKind(seen, EventWorkerStopped)) == 2
	})
	if n := len(ofKind(events, EventWorkerReplaced)); n != 2 {
		t.Fatalf("%d worker_replaced", n)
	}
	snap, err := s.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	for _, w := range snap["web"] {
		env, err := os.ReadFile("/proc/" + strconv.Itoa(w.PID) + "/environ")
		vars := strings.Split(string(env), "\x00")
		if err != nil || w.Generation != 2 || !contains(vars, "VERSION=2") {
			t.Fatalf("worker %+v: generation %d, environ read %v", w, w.Generation, err)
		}
	}
	wantCode(t, s.Restart(&RolloutOptions{}, "web"), ErrInvalidArgument)
}

func contains(list []string, want string) bool {
	for _, s := range list {
		if s == want {
			return true
		}
	}
	return false
}
