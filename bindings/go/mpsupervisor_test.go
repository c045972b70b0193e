package mpsupervisor

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Workers are /bin/sh scripts speaking the line protocol on descriptor 3.
const (
	// Ready at once; exits 0 on the first line from the supervisor (STOP DRAIN / STOP NOW).
	politeScript = `echo READY >&3; read -r l <&3`
	// Ignores SIGTERM and never reads its control channel.
	stubbornScript = `trap '' TERM; echo READY >&3; exec sleep 100000`
	// Generous bound for things that take milliseconds; only reached when a test fails.
	patience = 5 * time.Second
)

// within is a context that ends after d (or with the test).
func within(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func shellGroup(name string, workers int, script string) Group {
	return Group{
		Name:      name,
		Workers:   workers,
		Readiness: ReadinessNotify,
		Argv:      []string{"/bin/sh", "-c", script},
	}
}

func newSupervisor(t *testing.T) *Supervisor {
	t.Helper()
	s, err := New()
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// started configures groups, starts them all and waits until every worker is ready.
func started(t *testing.T, groups ...Group) *Supervisor {
	t.Helper()
	s := newSupervisor(t)
	if err := s.Configure(groups); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	names := make([]string, len(groups))
	for i, g := range groups {
		names[i] = g.Name
	}
	if err := s.Start(names...); err != nil {
		t.Fatalf("Start: %v", err)
	}
	ready, err := s.WaitReady(within(t, patience))
	if err != nil || !ready {
		t.Fatalf("WaitReady = %v, %v; want true, nil", ready, err)
	}
	return s
}

func drain(t *testing.T, s *Supervisor) []Event {
	t.Helper()
	events, err := s.DrainEvents(0)
	if err != nil {
		t.Fatalf("DrainEvents: %v", err)
	}
	return events
}

func ofKind(events []Event, kind EventKind) []Event {
	var out []Event
	for _, e := range events {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

func wantCode(t *testing.T, err error, sentinel *Error) *Error {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Fatalf("error %v; want one matching %v", err, sentinel)
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %T is not an *Error", err)
	}
	if e.Code != sentinel.Code {
		t.Fatalf("Code = %v; want %v", e.Code, sentinel.Code)
	}
	return e
}

func TestVersionAndCodes(t *testing.T) {
	if v := Version(); v == "" {
		t.Error("Version is empty")
	}
	if got := CodeTimeout.String(); got != "MPSUP_ERR_TIMEOUT" {
		t.Errorf("CodeTimeout.String() = %q", got)
	}
	if got := Code(1000).String(); got != "MPSUP_ERR_UNKNOWN" {
		t.Errorf("Code(1000).String() = %q", got)
	}
	err := error(&Error{Code: CodeTimeout, Message: "worker 'a#1' did not stop"})
	if !errors.Is(err, ErrTimeout) || errors.Is(err, ErrOS) {
		t.Error("errors.Is does not match on Code")
	}
	if got := err.Error(); got != "mpsupervisor: MPSUP_ERR_TIMEOUT: worker 'a#1' did not stop" {
		t.Errorf("Error() = %q", got)
	}
}

func TestGroupJSON(t *testing.T) {
	cases := []struct {
		group Group
		want  string
	}{
		{Group{Name: "a", Argv: []string{"x"}}, `{"name":"a","argv":["x"]}`},
		{
			Group{Name: "a", Argv: []string{"x"}, InheritEnv: Ptr(false), WarmupMs: Ptr(uint64(0)),
				MaxRestarts: Ptr(uint32(0)), Stdout: &Output{Discard: true}, Stderr: &Output{}},
			`{"name":"a","argv":["x"],"inherit_env":false,"warmup_ms":0,"stdout":"null","stderr":"inherit","max_restarts":0}`,
		},
		{
			Group{Name: "a", Argv: []string{"x"}, Stdout: &Output{File: "/tmp/o"},
				Stderr: &Output{File: "/tmp/e", Append: Ptr(false)}, Bootstrap: json.RawMessage("null")},
			`{"name":"a","argv":["x"],"stdout":{"file":"/tmp/o"},"stderr":{"file":"/tmp/e","append":false},"bootstrap":null}`,
		},
		{
			Group{Name: "a", Argv: []string{"x"}, KillMode: KillModeMixed, NotifyAccess: NotifyAccessAll,
				Stdout: &Output{File: "/tmp/o", MaxBytes: 4096, Keep: Ptr(uint32(2))}, Stderr: &Output{Capture: true},
				OutputTailLines: Ptr(uint32(0)), ReusePort: true,
				Listen: []Listen{{Name: "http", TCP: "127.0.0.1:0"}, {Name: "admin", Unix: "@adm", Backlog: 8}}},
			`{"name":"a","argv":["x"],"kill_mode":"mixed","notify_access":"all",` +
				`"stdout":{"file":"/tmp/o","max_bytes":4096,"keep":2},"stderr":"capture","output_tail_lines":0,` +
				`"listen":[{"name":"http","tcp":"127.0.0.1:0"},{"name":"admin","unix":"@adm","backlog":8}],"reuse_port":true}`,
		},
	}
	for _, c := range cases {
		got, err := json.Marshal(c.group)
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		if string(got) != c.want {
			t.Errorf("Marshal =\n %s\nwant\n %s", got, c.want)
		}
		var back Group
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("Unmarshal: %v", err)
		}
		again, _ := json.Marshal(back)
		// A decoded null bootstrap is a nil interface, which means absent (see Group.Bootstrap).
		if want := strings.Replace(c.want, `,"bootstrap":null`, "", 1); string(again) != want {
			t.Errorf("round trip =\n %s\nwant\n %s", again, want)
		}
	}
	for _, bad := range []Output{
		{Discard: true, File: "x"}, {Capture: true, Discard: true}, {Append: Ptr(true)},
		{File: "x", MaxBytes: 1, Append: Ptr(true)}, {File: "x", Keep: Ptr(uint32(1))},
	} {
		if got, err := json.Marshal(bad); err == nil {
			t.Errorf("Output %+v marshalled as %s", bad, got)
		}
	}
}

func TestLifecycleGracefulStop(t *testing.T) {
	const n = 3
	s := started(t, shellGroup("ingest", n, politeScript))

	snap, err := s.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	workers := snap["ingest"]
	if len(snap) != 1 || len(workers) != n {
		t.Fatalf("Snapshot = %+v; want %d ingest workers", snap, n)
	}
	for i, w := range workers {
		if want := "ingest#" + string(rune('1'+i)); w.WorkerID != want {
			t.Errorf("worker %d id %q; want %q", i, w.WorkerID, want)
		}
		if !w.Alive || !w.Ready || w.State != StateReady || w.PID <= 0 || w.OSPID != w.PID ||
			w.PGID != w.PID || w.ExitCode != nil || w.Signal != nil ||
			w.ControlChannel != "socketpair" || w.StopStrategy != "event" || !w.HasStopEvent {
			t.Errorf("worker %d = %+v", i, w)
		}
		if time.Since(w.StartedAt()) > time.Minute {
			t.Errorf("worker %d started at %v", i, w.StartedAt())
		}
	}

	if err := s.Stop(within(t, patience), true); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	events := drain(t, s)
	for i, e := range events {
		if e.Seq != uint64(i+1) || e.TsMs <= 0 || len(e.Raw) == 0 {
			t.Errorf("event %d = %+v", i, e)
		}
	}
	if got := len(ofKind(events, EventWorkerSpawned)); got != n {
		t.Errorf("%d worker_spawned events; want %d", got, n)
	}
	if starts := ofKind(events, EventSupervisorStartGroups); len(starts) != 1 ||
		starts[0].GroupCount != 1 || starts[0].WorkerCount != n {
		t.Errorf("supervisor_start_groups events: %+v", starts)
	}
	if got := len(ofKind(events, EventWorkerReady)); got != n {
		t.Errorf("%d worker_ready events; want %d", got, n)
	}
	stopped := ofKind(events, EventWorkerStopped)
	if len(stopped) != n {
		t.Fatalf("%d worker_stopped events; want %d: %+v", len(stopped), n, events)
	}
	for _, e := range stopped {
		if e.Mode != ModeGraceful || e.GroupName != "ingest" || e.ExitCode == nil ||
			*e.ExitCode != 0 || e.Signal != nil {
			t.Errorf("worker_stopped = %+v (%s)", e, e.Raw)
		}
	}
	if snap, err := s.Snapshot(); err != nil || len(snap) != 0 {
		t.Errorf("Snapshot after Stop = %+v, %v; want empty", snap, err)
	}
}

func TestForceTerminate(t *testing.T) {
	s := started(t, shellGroup("g", 2, politeScript))
	drain(t, s)
	if err := s.ForceTerminate("g"); err != nil {
		t.Fatalf("ForceTerminate: %v", err)
	}
	events := drain(t, s)
	if got := ofKind(events, EventWorkerStopping); len(got) != 2 || got[0].Mode != ModeForced {
		t.Errorf("worker_stopping events: %+v", got)
	}
	stopped := ofKind(events, EventWorkerStopped)
	if len(stopped) != 2 {
		t.Fatalf("worker_stopped events: %+v", events)
	}
	for _, e := range stopped {
		if e.Mode != ModeForced || e.Signal == nil || *e.Signal != 9 || e.ExitCode != nil {
			t.Errorf("worker_stopped = %s", e.Raw)
		}
	}
	if snap, err := s.Snapshot(); err != nil || len(snap) != 0 {
		t.Errorf("Snapshot after ForceTerminate = %+v, %v; want empty", snap, err)
	}
	// A configured group without workers is a no-op.
	if err := s.ForceTerminate("g"); err != nil {
		t.Errorf("second ForceTerminate: %v", err)
	}
}

func TestUnknownGroup(t *testing.T) {
	s := newSupervisor(t)
	if err := s.Configure([]Group{shellGroup("known", 1, politeScript)}); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	e := wantCode(t, s.Start("known", "nope"), ErrUnknownGroup)
	if !strings.Contains(e.Message, "nope") {
		t.Errorf("message %q does not name the group", e.Message)
	}
	wantCode(t, s.ForceTerminate("nope"), ErrUnknownGroup)
	wantCode(t, s.StartWork("nope"), ErrUnknownGroup)
	if snap, _ := s.Snapshot(); len(snap) != 0 {
		t.Errorf("something was spawned: %+v", snap)
	}
	wantCode(t, s.Start("bad\x00name"), ErrInvalidArgument)
}

func TestInvalidConfig(t *testing.T) {
	s := newSupervisor(t)
	if err := s.Configure([]Group{shellGroup("good", 1, politeScript)}); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	bad := [][]Group{
		{shellGroup("a", 1, politeScript), {Name: "b"}},                          // no argv
		{shellGroup("a", 1, politeScript), shellGroup("a", 1, politeScript)},     // duplicate
		{{Name: "a#1", Argv: []string{"/bin/true"}}},                             // '#' in name
		{{Name: "a", Argv: []string{"/bin/true"}, StopSignal: "SIGNOPE"}},        // bad signal
		{{Name: "a", Argv: []string{"/bin/true"}, Workers: 5000}},                // too many
		{{Name: "a", Argv: []string{"/bin/true"}, Readiness: Readiness("soon")}}, // bad enum
	}
	for i, groups := range bad {
		e := wantCode(t, s.Configure(groups), ErrInvalidConfig)
		if !strings.Contains(e.Message, "groups[") {
			t.Errorf("case %d: message %q names no JSON path", i, e.Message)
		}
	}
	if e := wantCode(t, s.Configure(bad[0]), ErrInvalidConfig); !strings.Contains(e.Message, "groups[1]: missing field `argv`") {
		t.Errorf("message %q", e.Message)
	}
	e := wantCode(t, s.ConfigureJSON([]byte(`[{"name":"a","argv":["x"],"colour":1}]`)), ErrInvalidConfig)
	if !strings.Contains(e.Message, "colour") {
		t.Errorf("message %q does not name the unknown key", e.Message)
	}
	// The old configuration stays in force.
	if err := s.Start("good"); err != nil {
		t.Fatalf("Start after rejected configurations: %v", err)
	}
	if ready, err := s.WaitReady(within(t, patience)); !ready || err != nil {
		t.Fatalf("WaitReady = %v, %v", ready, err)
	}
}

func TestSpawnFailure(t *testing.T) {
	s := newSupervisor(t)
	if err := s.Configure([]Group{{Name: "ghost", Argv: []string{"/nonexistent/worker"}}}); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	wantCode(t, s.Start("ghost"), ErrSpawn)
	if snap, _ := s.Snapshot(); len(snap["ghost"]) != 0 {
		t.Errorf("Snapshot after a failed spawn = %+v", snap)
	}
}

func TestStubbornWorkerTimesOutThenForceTerminate(t *testing.T) {
	s := started(t, shellGroup("stubborn", 1, stubbornScript))
	drain(t, s)

	err := s.Stop(within(t, 200*time.Millisecond), true)
	e := wantCode(t, err, ErrTimeout)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Stop past its deadline = %v; want it to match context.DeadlineExceeded too", err)
	}
	if !strings.Contains(e.Message, "stubborn#1") {
		t.Errorf("timeout message %q does not name the worker", e.Message)
	}
	snap, err := s.Snapshot()
	if err != nil || len(snap["stubborn"]) != 1 {
		t.Fatalf("Snapshot = %+v, %v", snap, err)
	}
	if w := snap["stubborn"][0]; !w.Alive || w.State != StateStopping {
		t.Errorf("worker after timeout = %+v; want alive and stopping", w)
	}

	if err := s.ForceTerminate("stubborn"); err != nil {
		t.Fatalf("ForceTerminate: %v", err)
	}
	stopped := ofKind(drain(t, s), EventWorkerStopped)
	if len(stopped) != 1 || stopped[0].Mode != ModeForced || stopped[0].Signal == nil ||
		*stopped[0].Signal != 9 {
		t.Errorf("worker_stopped events: %+v", stopped)
	}
	if snap, err := s.Snapshot(); err != nil || len(snap) != 0 {
		t.Errorf("Snapshot after ForceTerminate = %+v, %v; want empty", snap, err)
	}
}

func TestCloseTwiceAndUseAfterClose(t *testing.T) {
	s, err := New()
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := s.Configure([]Group{shellGroup("g", 2, politeScript)}); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	if err := s.Start("g"); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if err := s.Close(); err != nil { // kills and reaps the workers
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	wantCode(t, s.Start("g"), ErrInvalidHandle)
	wantCode(t, s.Configure(nil), ErrInvalidHandle)
	wantCode(t, s.Stop(within(t, time.Second), true), ErrInvalidHandle)
	wantCode(t, s.ForceTerminate("g"), ErrInvalidHandle)
	wantCode(t, s.StartWork("g"), ErrInvalidHandle)
	_, err = s.WaitReady(within(t, time.Second))
	wantCode(t, err, ErrInvalidHandle)
	_, err = s.Snapshot()
	wantCode(t, err, ErrInvalidHandle)
	_, err = s.DrainEvents(0)
	wantCode(t, err, ErrInvalidHandle)
	_, err = s.EventFD()
	wantCode(t, err, ErrInvalidHandle)

	var nilSup *Supervisor
	if err := nilSup.Close(); err != nil {
		t.Errorf("nil Close: %v", err)
	}
	wantCode(t, nilSup.Start("g"), ErrInvalidHandle)
}

func TestStartWorkRefusedBeforeReady(t *testing.T) {
	dir := t.TempDir()
	gate, out := filepath.Join(dir, "gate"), filepath.Join(dir, "out")
	for _, p := range []string{gate, out} {
		if err := syscall.Mkfifo(p, 0o600); err != nil {
			t.Fatalf("mkfifo: %v", err)
		}
	}
	// The worker becomes ready only when the test writes to the gate FIFO; after START it
	// writes the line it got to the out FIFO, then waits for its stop line.
	g := shellGroup("gated", 1, `read -r x < "$DIR/gate"; echo READY >&3; `+
		`read -r l <&3; echo "$l" > "$DIR/out"; read -r l <&3`)
	g.StartGate = true
	g.Env = map[string]string{"DIR": dir}

	s := newSupervisor(t)
	if err := s.Configure([]Group{g}); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	if err := s.Start("gated"); err != nil {
		t.Fatalf("Start: %v", err)
	}
	e := wantCode(t, s.StartWork("gated"), ErrNotReady)
	if !strings.Contains(e.Message, "gated#1") {
		t.Errorf("message %q does not name the worker", e.Message)
	}

	// O_RDWR opens of a FIFO never block.
	gateFile, err := os.OpenFile(gate, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer gateFile.Close()
	outFile, err := os.OpenFile(out, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer outFile.Close()
	if _, err := gateFile.WriteString("go\n"); err != nil {
		t.Fatal(err)
	}
	if ready, err := s.WaitReady(within(t, patience)); !ready || err != nil {
		t.Fatalf("WaitReady = %v, %v", ready, err)
	}
	if err := s.StartWork("gated"); err != nil {
		t.Fatalf("StartWork when ready: %v", err)
	}
	if err := outFile.SetReadDeadline(time.Now().Add(patience)); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(outFile).ReadString('\n')
	if err != nil || line != "START\n" {
		t.Fatalf("worker got %q, %v; want START", line, err)
	}
	if work := ofKind(drain(t, s), EventSupervisorStartWork); len(work) != 1 || work[0].WorkerCount != 1 {
		t.Errorf("supervisor_start_work events: %+v", work)
	}
	if err := s.Stop(within(t, patience), false); err != nil {
		t.Fatalf("Stop: %v", err)
	}
}

// readable polls fd with select(2) for up to timeout.
func readable(t *testing.T, fd int, timeout time.Duration) bool {
	t.Helper()
	for {
		var set syscall.FdSet
		bits := 8 * 128 / len(set.Bits) // FdSet is 1024 bits; its word size depends on the arch
		set.Bits[fd/bits] |= 1 << (uint(fd) % uint(bits))
		tv := syscall.NsecToTimeval(timeout.Nanoseconds())
		n, err := syscall.Select(fd+1, &set, nil, nil, &tv)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			t.Fatalf("select: %v", err)
		}
		return n > 0
	}
}

func TestEventFDAndDrainMax(t *testing.T) {
	s := newSupervisor(t)
	fd, err := s.EventFD()
	if err != nil || fd < 0 {
		t.Fatalf("EventFD = %d, %v", fd, err)
	}
	if readable(t, fd, 0) {
		t.Error("event fd readable before any event")
	}
	if err := s.Configure([]Group{shellGroup("g", 2, politeScript)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Start("g"); err != nil {
		t.Fatal(err)
	}
	if !readable(t, fd, patience) {
		t.Fatal("event fd not readable after Start")
	}
	first, err := s.DrainEvents(1)
	if err != nil || len(first) != 1 || first[0].Seq != 1 || first[0].Kind != EventWorkerSpawned ||
		first[0].WorkerID != "g#1" || first[0].PID <= 0 || first[0].Readiness != "notify" {
		t.Fatalf("DrainEvents(1) = %+v, %v", first, err)
	}
	if _, err := s.DrainEvents(-1); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("DrainEvents(-1) error %v", err)
	}
	if ready, err := s.WaitReady(within(t, patience)); !ready || err != nil {
		t.Fatalf("WaitReady = %v, %v", ready, err)
	}
	if err := s.Stop(within(t, patience), true); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	rest := drain(t, s)
	if len(rest) == 0 || rest[0].Seq != 2 {
		t.Fatalf("rest of the events: %+v", rest)
	}
	if readable(t, fd, 0) {
		t.Error("event fd readable after draining everything")
	}
}

func TestLifecycleLoggingToFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sup.jsonl")
	s := newSupervisor(t)
	err := s.ConfigureLifecycleLogging(map[string]interface{}{
		"lifecycle_events": map[string]interface{}{"enabled": true, "level": "info"},
		"exporters": []interface{}{
			map[string]interface{}{"kind": "jsonl", "settings": map[string]string{"path": path}},
		},
	})
	if err != nil {
		t.Fatalf("ConfigureLifecycleLogging: %v", err)
	}
	wantCode(t, s.ConfigureLifecycleLogging(map[string]int{"bogus": 1}), ErrInvalidConfig)
	if err := s.Configure([]Group{shellGroup("logged", 1, politeScript)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Start("logged"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil { // waits for the log writer
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var first struct {
		Level   string                 `json:"level"`
		Message string                 `json:"message"`
		Fields  map[string]interface{} `json:"fields"`
	}
	line, _, _ := strings.Cut(string(data), "\n")
	if err := json.Unmarshal([]byte(line), &first); err != nil ||
		first.Message != "bootstrap.worker_spawned" || first.Fields["worker_id"] != "logged#1" {
		t.Errorf("first log line %q (%v)", line, err)
	}
}

func TestCloseWhileWaiting(t *testing.T) {
	// A worker that never becomes ready; Close from another goroutine while WaitReady blocks.
	s, err := New()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Configure([]Group{shellGroup("mute", 1, "read -r l <&3")}); err != nil {
		t.Fatal(err)
	}
	if err := s.Start("mute"); err != nil {
		t.Fatal(err)
	}
	type result struct {
		ready bool
		err   error
	}
	done := make(chan result)
	ctx := within(t, patience)
	go func() {
		ready, err := s.WaitReady(ctx)
		done <- result{ready, err}
	}()
	// Snapshot answers while WaitReady blocks.
	if snap, err := s.Snapshot(); err != nil || len(snap["mute"]) != 1 {
		t.Errorf("Snapshot during WaitReady = %+v, %v", snap, err)
	}
	start := time.Now()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	r := <-done
	// Either WaitReady was inside the library, which ends the wait with false, or it had not
	// got there yet and found the handle closed. Either way it must not sit out its timeout.
	if r.ready || (r.err != nil && !errors.Is(r.err, ErrInvalidHandle)) {
		t.Errorf("WaitReady after Close = %v, %v", r.ready, r.err)
	}
	if waited := time.Since(start); waited > patience/2 {
		t.Errorf("WaitReady returned %v after Close", waited)
	}
}

func TestWaitReadyFalse(t *testing.T) {
	s := newSupervisor(t)
	if ready, err := s.WaitReady(within(t, time.Second)); ready || err != nil {
		t.Errorf("WaitReady with no workers = %v, %v; want false at once", ready, err)
	}
	// A worker that exits without being asked fails, and WaitReady says false.
	if err := s.Configure([]Group{shellGroup("dies", 1, "exit 3")}); err != nil {
		t.Fatal(err)
	}
	if err := s.Start("dies"); err != nil {
		t.Fatal(err)
	}
	if ready, err := s.WaitReady(within(t, patience)); ready || err != nil {
		t.Errorf("WaitReady with a failed worker = %v, %v; want false", ready, err)
	}
	failed := ofKind(drain(t, s), EventWorkerFailed)
	if len(failed) != 1 || failed[0].Reason != "exited" || failed[0].ExitCode == nil ||
		*failed[0].ExitCode != 3 {
		t.Errorf("worker_failed events: %+v", failed)
	}
	snap, _ := s.Snapshot()
	if w := snap["dies"]; len(w) != 1 || w[0].Alive || w[0].State != StateFailed {
		t.Errorf("Snapshot = %+v", snap)
	}
}

// cancelSoon cancels ctx after d and says when it did.
func cancelSoon(t *testing.T, d time.Duration) (context.Context, <-chan time.Time) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	at := make(chan time.Time, 1)
	timer := time.AfterFunc(d, func() {
		at <- time.Now()
		cancel()
	})
	t.Cleanup(func() { timer.Stop() })
	return ctx, at
}

// The C calls block, so WaitReady and Stop wait in slices: a cancelled context ends them within
// a slice (50 ms), well under this bound (which leaves room for a loaded machine).
const cancelBound = 300 * time.Millisecond

func TestWaitReadyAndStopHonourTheirContext(t *testing.T) {
	s := started(t, shellGroup("stubborn", 1, stubbornScript))
	// Already done: one answer without waiting.
	done, cancel := context.WithCancel(context.Background())
	cancel()
	if ready, err := s.WaitReady(done); !ready || err != nil {
		t.Errorf("WaitReady(done ctx) with a ready worker = %v, %v; want true, nil", ready, err)
	}

	// A worker that is never ready: cancellation and deadline end the wait.
	if err := s.Configure([]Group{shellGroup("stubborn", 1, stubbornScript), shellGroup("mute", 1, "read -r l <&3")}); err != nil {
		t.Fatal(err)
	}
	if err := s.Start("mute"); err != nil {
		t.Fatal(err)
	}
	ctx, cancelled := cancelSoon(t, 100*time.Millisecond)
	ready, err := s.WaitReady(ctx)
	late := time.Since(<-cancelled)
	if ready || !errors.Is(err, context.Canceled) {
		t.Errorf("WaitReady cancelled = %v, %v; want false, context.Canceled", ready, err)
	}
	if late > cancelBound {
		t.Errorf("WaitReady returned %v after its context was cancelled", late)
	}
	t.Logf("WaitReady returned %v after the cancel", late)
	deadline := time.Now().Add(100 * time.Millisecond)
	ctx, cancel = context.WithDeadline(context.Background(), deadline)
	defer cancel()
	if ready, err := s.WaitReady(ctx); ready || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitReady past its deadline = %v, %v; want false, context.DeadlineExceeded", ready, err)
	}
	if late := time.Since(deadline); late > cancelBound {
		t.Errorf("WaitReady returned %v after its deadline", late)
	}

	// A worker that ignores its stop: cancelling Stop leaves it stopping.
	if err := s.ForceTerminate("mute"); err != nil {
		t.Fatal(err)
	}
	ctx, cancelled = cancelSoon(t, 100*time.Millisecond)
	err = s.Stop(ctx, true)
	late = time.Since(<-cancelled)
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.Canceled) {
		t.Errorf("Stop cancelled = %v; want an error matching ErrTimeout and context.Canceled", err)
	}
	if late > cancelBound {
		t.Errorf("Stop returned %v after its context was cancelled", late)
	}
	t.Logf("Stop returned %v after the cancel", late)
	if snap, err := s.Snapshot(); err != nil || len(snap["stubborn"]) != 1 || snap["stubborn"][0].State != StateStopping {
		t.Errorf("Snapshot after a cancelled Stop = %+v, %v; want stubborn#1 stopping", snap, err)
	}
	// Waiting again asks nothing new of the worker: one worker_stopping event in all.
	if err := s.ForceTerminate("stubborn"); err != nil {
		t.Fatal(err)
	}
	graceful := 0
	for _, e := range ofKind(drain(t, s), EventWorkerStopping) {
		if e.Mode == ModeGraceful {
			graceful++
		}
	}
	if graceful != 1 {
		t.Errorf("%d graceful worker_stopping events; want 1 (the slices of Stop ask once)", graceful)
	}
}

// A Stop that is still waiting for a stubborn worker must not stop a group another goroutine
// starts meanwhile: the stop asks the workers running when it is called, once.
func TestStopWaitingLeavesAGroupStartedMeanwhile(t *testing.T) {
	s := started(t, shellGroup("stubborn", 1, stubbornScript))
	late := shellGroup("late", 1, "echo READY >&3; read -r l <&3")
	late.Readiness = ReadinessNotify
	if err := s.Configure([]Group{shellGroup("stubborn", 1, stubbornScript), late}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	stopped := make(chan error, 1)
	go func() { stopped <- s.Stop(ctx, true) }()
	for {
		snap, err := s.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		if len(snap["stubborn"]) == 1 && snap["stubborn"][0].State == StateStopping {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if err := s.Start("late"); err != nil {
		t.Fatal(err)
	}
	if err := <-stopped; !errors.Is(err, ErrTimeout) {
		t.Errorf("Stop with a stubborn worker = %v; want ErrTimeout", err)
	}
	for _, e := range ofKind(drain(t, s), EventWorkerStopping) {
		if e.GroupName == "late" {
			t.Errorf("the Stop called before late was started stopped it: %+v", e)
		}
	}
	if err := s.ForceTerminate("stubborn", "late"); err != nil {
		t.Fatal(err)
	}
}
