package mpsupervisor

import (
	"syscall"
	"testing"
)

// dependsGroups is db <- migrate (exits with code) <- web.
func dependsGroups(code string) []Group {
	migrate := shellGroup("migrate", 1, "exit "+code)
	migrate.Readiness = ""
	migrate.Restart = RestartNever
	migrate.DependsOn = map[string]DependsCondition{"db": DependsReady}
	web := shellGroup("web", 1, politeScript)
	web.DependsOn = map[string]DependsCondition{"db": DependsReady, "migrate": DependsCompleted}
	return []Group{shellGroup("db", 1, politeScript), migrate, web}
}

func TestStartBringsDependenciesAndWebWaitsForTheMigration(t *testing.T) {
	s := newSupervisor(t)
	if err := s.Configure(dependsGroups("0")); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	if err := s.Start("web"); err != nil {
		t.Fatalf("Start: %v", err)
	}
	events := collect(t, s, func(seen []Event) bool {
		for _, e := range ofKind(seen, EventWorkerReady) {
			if e.GroupName == "web" {
				return true
			}
		}
		return false
	})
	completed := ofKind(events, EventGroupCompleted)
	if len(completed) != 1 || completed[0].GroupName != "migrate" {
		t.Fatalf("group_completed = %+v", completed)
	}
	for _, e := range ofKind(events, EventWorkerSpawned) {
		if e.GroupName == "web" && e.Seq < completed[0].Seq {
			t.Fatalf("web spawned (seq %d) before migrate completed (seq %d)", e.Seq, completed[0].Seq)
		}
	}
	waiting := ofKind(events, EventGroupWaiting)
	if d, ok := waiting[len(waiting)-1].Data.(*GroupWaiting); !ok || d.GroupName != "web" || len(d.WaitingFor) != 2 {
		t.Fatalf("group_waiting = %+v", waiting)
	}
	if ready, err := s.WaitReady(within(t, patience)); err != nil || !ready {
		t.Fatalf("WaitReady = %v, %v", ready, err)
	}
	st, err := s.Status()
	if err != nil || len(st.Groups["web"].WaitingFor) != 0 || !st.Groups["web"].Started {
		t.Fatalf("Status = %+v, %v", st, err)
	}
}

func TestAFailedMigrationFailsWeb(t *testing.T) {
	s := newSupervisor(t)
	if err := s.Configure(dependsGroups("3")); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	if err := s.Start("web"); err != nil {
		t.Fatalf("Start: %v", err)
	}
	events := collect(t, s, func(seen []Event) bool { return len(ofKind(seen, EventGroupFailed)) > 0 })
	d, ok := ofKind(events, EventGroupFailed)[0].Data.(*GroupFailed)
	if !ok || d.GroupName != "web" || d.Reason != "dependency_failed" || d.Dependency == nil || *d.Dependency != "migrate" {
		t.Fatalf("group_failed = %+v", d)
	}
}

// A group with on_dependency_restart "restart" is rolled out once its restarted dependency is
// ready again.
func TestARestartBoundGroupRollsOutAfterItsDependency(t *testing.T) {
	db := shellGroup("db", 1, politeScript)
	db.Restart = RestartAlways
	delay := uint64(1)
	db.RestartDelayMs = &delay
	web := shellGroup("web", 2, politeScript)
	web.DependsOn = map[string]DependsCondition{"db": DependsReady}
	web.OnDependencyRestart = OnDependencyReplace
	s := newSupervisor(t)
	if err := s.Configure([]Group{db, web}); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	if err := s.Start("web"); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if ready, err := s.WaitReady(within(t, patience)); err != nil || !ready {
		t.Fatalf("WaitReady = %v, %v", ready, err)
	}
	snap, err := s.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	drain(t, s)
	if err := syscall.Kill(snap["db"][0].PID, syscall.SIGKILL); err != nil {
		t.Fatalf("kill: %v", err)
	}
	ofGroup := func(events []Event, kind EventKind, group string) []Event {
		var out []Event
		for _, e := range ofKind(events, kind) {
			if e.GroupName == group {
				out = append(out, e)
			}
		}
		return out
	}
	events := collect(t, s, func(seen []Event) bool {
		return len(ofGroup(seen, EventRolloutFinished, "web")) == 1 &&
			len(ofGroup(seen, EventWorkerStopped, "web")) == 2
	})
	dbReady, rollout := ofGroup(events, EventWorkerReady, "db"), ofGroup(events, EventRolloutStarted, "web")
	if len(dbReady) != 1 || len(rollout) != 1 || dbReady[0].Seq > rollout[0].Seq {
		t.Fatalf("db ready %+v, web rollout started %+v", dbReady, rollout)
	}
}
