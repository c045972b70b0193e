package mpsupervisor

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// handoverHost runs in a child process of TestHandoverThroughExec (MPSUP_GO_HANDOVER_HOST set):
// it starts two workers, prints their pids, prepares and syscall.Execs the test binary again;
// the new image adopts, prints the pids and the events of a graceful stop, and exits 0.
func handoverHost() {
	fail := func(what string, err error) {
		os.Stdout.WriteString("ERROR " + what + ": " + err.Error() + "\n")
		os.Exit(3)
	}
	print := func(tag string, v interface{}) {
		data, _ := json.Marshal(v)
		os.Stdout.WriteString(tag + " " + string(data) + "\n")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 12*patience)
	defer cancel()
	if number := os.Getenv("MPSUP_HANDOVER_FD"); number != "" {
		os.Unsetenv("MPSUP_HANDOVER_FD")
		fd, _ := strconv.Atoi(number)
		s, err := Adopt(fd)
		if err != nil {
			fail("Adopt", err)
		}
		snap, err := s.Snapshot()
		if err != nil {
			fail("Snapshot", err)
		}
		print("SNAPSHOT", snap)
		if err := s.Stop(ctx, true); err != nil {
			fail("Stop", err)
		}
		events, err := s.DrainEventsJSON(0)
		if err != nil {
			fail("DrainEvents", err)
		}
		os.Stdout.WriteString("EVENTS " + string(events) + "\n")
		if err := s.Close(); err != nil {
			fail("Close", err)
		}
		os.Exit(0)
	}
	s, err := New()
	if err != nil {
		fail("New", err)
	}
	if err := s.Configure([]Group{shellGroup("g", 2, politeScript)}); err != nil {
		fail("Configure", err)
	}
	if err := s.Start("g"); err != nil {
		fail("Start", err)
	}
	if ready, err := s.WaitReady(ctx); err != nil || !ready {
		fail("WaitReady", err)
	}
	snap, err := s.Snapshot()
	if err != nil {
		fail("Snapshot", err)
	}
	print("SNAPSHOT", snap)
	fd, err := s.HandoverPrepare()
	if err != nil {
		fail("HandoverPrepare", err)
	}
	env := append(os.Environ(), "MPSUP_HANDOVER_FD="+strconv.Itoa(fd))
	err = syscall.Exec("/proc/self/exe", os.Args, env)
	_ = s.HandoverAbort()
	fail("Exec", err)
}

func TestHandoverThroughExec(t *testing.T) {
	if os.Getenv("MPSUP_GO_HANDOVER_HOST") != "" {
		handoverHost()
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHandoverThroughExec$")
	cmd.Env = append(os.Environ(), "MPSUP_GO_HANDOVER_HOST=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var snapshots []map[string][]Worker
	var events []map[string]interface{}
	var said []string
	lines := bufio.NewScanner(out)
	lines.Buffer(make([]byte, 1<<20), 1<<20)
	for lines.Scan() {
		line := lines.Text()
		said = append(said, line)
		tag, rest, _ := strings.Cut(line, " ")
		switch tag {
		case "SNAPSHOT":
			var snap map[string][]Worker
			if err := json.Unmarshal([]byte(rest), &snap); err != nil {
				t.Fatal(err)
			}
			snapshots = append(snapshots, snap)
		case "EVENTS":
			if err := json.Unmarshal([]byte(rest), &events); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("host: %v; it said %q", err, said)
	}
	if len(snapshots) != 2 || len(snapshots[0]["g"]) != 2 {
		t.Fatalf("snapshots: %q", said)
	}
	for i, w := range snapshots[1]["g"] {
		if w.PID != snapshots[0]["g"][i].PID {
			t.Fatalf("pids changed: %+v then %+v", snapshots[0], snapshots[1])
		}
	}
	adopted, stopped := 0, 0
	for _, e := range events {
		switch e["kind"] {
		case "supervisor_adopted":
			adopted++
			if e["workers"] != 2.0 || e["exited_meanwhile"] != 0.0 {
				t.Errorf("supervisor_adopted: %v", e)
			}
		case "worker_stopped":
			stopped++
			if e["mode"] != "graceful" || e["exit_code"] != 0.0 {
				t.Errorf("worker_stopped: %v", e)
			}
		}
	}
	if adopted != 1 || stopped != 2 {
		t.Fatalf("events: %v", events)
	}
}

// An exec that failed: HandoverAbort after HandoverPrepare gives the Supervisor back; its
// workers ran on (same pids), and Scale, Status and a graceful Stop work as before.
func TestHandoverAbortLeavesALiveSupervisor(t *testing.T) {
	s := started(t, shellGroup("g", 2, politeScript))
	pidsOf := func() []int {
		snap, err := s.Snapshot()
		if err != nil {
			t.Fatalf("Snapshot: %v", err)
		}
		var pids []int
		for _, w := range snap["g"] {
			pids = append(pids, w.PID)
		}
		return pids
	}
	before := pidsOf()
	fd, err := s.HandoverPrepare()
	if err != nil {
		t.Fatalf("HandoverPrepare: %v", err)
	}
	if target, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd)); err != nil ||
		!strings.HasPrefix(target, "/memfd:") {
		t.Fatalf("fd %d after HandoverPrepare: %q, %v; want a memfd", fd, target, err)
	}
	if _, err := s.Status(); err == nil {
		t.Fatal("Status while prepared: nil error; want ErrInvalidHandle")
	} else {
		wantCode(t, err, ErrInvalidHandle)
	}
	if err := s.HandoverAbort(); err != nil {
		t.Fatalf("HandoverAbort: %v", err)
	}
	if target, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd)); err == nil &&
		strings.HasPrefix(target, "/memfd:") {
		t.Errorf("the memfd is still open after HandoverAbort: %q", target)
	}
	if after := pidsOf(); len(after) != 2 || after[0] != before[0] || after[1] != before[1] {
		t.Fatalf("pids %v after HandoverAbort; want %v", after, before)
	}
	for _, pid := range before {
		if err := syscall.Kill(pid, 0); err != nil {
			t.Fatalf("worker %d: %v", pid, err)
		}
	}
	if err := s.Scale("g", 3); err != nil {
		t.Fatalf("Scale: %v", err)
	}
	if ready, err := s.WaitReady(within(t, patience)); err != nil || !ready {
		t.Fatalf("WaitReady = %v, %v; want true, nil", ready, err)
	}
	status, err := s.Status()
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	if g := status.Groups["g"]; g.Running != 3 || g.Ready != 3 {
		t.Fatalf("status of g: %+v", g)
	}
	all := pidsOf()
	if all[0] != before[0] || all[1] != before[1] {
		t.Fatalf("pids %v after Scale; want %v first", all, before)
	}
	if err := s.Stop(within(t, patience), true); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	stopped := ofKind(drain(t, s), EventWorkerStopped)
	if len(stopped) != 3 {
		t.Fatalf("%d worker_stopped events; want 3: %+v", len(stopped), stopped)
	}
	for _, e := range stopped {
		if e.Mode != ModeGraceful || e.ExitCode == nil || *e.ExitCode != 0 {
			t.Errorf("worker_stopped = %+v (%s)", e, e.Raw)
		}
	}
}
