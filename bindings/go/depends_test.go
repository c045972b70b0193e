package mpsupervisor

import "testing"

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
