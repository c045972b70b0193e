package mpsupervisor

import (
	"context"
	"testing"
	"time"
)

// receive reads one event, failing the test if none comes within patience or the channel closed.
func receive(t *testing.T, ch <-chan Event) Event {
	t.Helper()
	select {
	case e, ok := <-ch:
		if !ok {
			t.Fatal("the event channel closed early")
		}
		return e
	case <-time.After(patience):
		t.Fatal("no event came")
	}
	return Event{}
}

// closes waits until ch is closed, discarding events; it fails the test after patience.
func closes(t *testing.T, ch <-chan Event) {
	t.Helper()
	deadline := time.After(patience)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("the event channel did not close")
		}
	}
}

func TestEventsDeliversEveryEventInOrderThenClosesWithTheContext(t *testing.T) {
	s := newSupervisor(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := s.Events(ctx)
	if err := s.Configure([]Group{shellGroup("g", 2, politeScript)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Start("g"); err != nil {
		t.Fatal(err)
	}
	// 2 worker_spawned, supervisor_start_groups, 2 worker_ready: gapless from seq 1.
	var got []Event
	for len(ofKind(got, EventWorkerReady)) < 2 {
		e := receive(t, events)
		if e.Seq != uint64(len(got)+1) {
			t.Fatalf("event %d has seq %d: %+v", len(got)+1, e.Seq, e)
		}
		got = append(got, e)
	}
	if len(ofKind(got, EventWorkerSpawned)) != 2 || len(ofKind(got, EventSupervisorStartGroups)) != 1 {
		t.Fatalf("events: %+v", got)
	}
	// Stop runs on another goroutine; its events arrive on the channel while it waits.
	stopped := make(chan error, 1)
	stopCtx := within(t, patience)
	go func() { stopped <- s.Stop(stopCtx, true) }()
	var stops []Event
	for len(stops) < 2 {
		if e := receive(t, events); e.Kind == EventWorkerStopped {
			stops = append(stops, e)
		}
	}
	for _, e := range stops {
		if e.Mode != ModeGraceful || e.ExitCode == nil || *e.ExitCode != 0 {
			t.Errorf("worker_stopped %+v", e)
		}
	}
	if err := <-stopped; err != nil {
		t.Fatalf("Stop: %v", err)
	}
	// Nothing is pending now, so the stream is asleep in poll: cancelling must wake it.
	cancel()
	closes(t, events)
	// The stream left the queue alone after it ended.
	if err := s.Start("g"); err != nil {
		t.Fatal(err)
	}
	if ready, err := s.WaitReady(within(t, patience)); !ready || err != nil {
		t.Fatalf("WaitReady = %v, %v", ready, err)
	}
	if len(ofKind(drain(t, s), EventWorkerReady)) != 2 {
		t.Error("events after the stream ended were not left in the queue")
	}
}

func TestEventsClosesWhenTheSupervisorIsClosed(t *testing.T) {
	s, err := New()
	if err != nil {
		t.Fatal(err)
	}
	events := s.Events(context.Background())
	second := s.Events(context.Background())
	if err := s.Configure([]Group{shellGroup("g", 1, politeScript)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Start("g"); err != nil {
		t.Fatal(err)
	}
	// Each event goes to one of the two streams; together they see the first one.
	select {
	case <-events:
	case <-second:
	case <-time.After(patience):
		t.Fatal("no event came")
	}
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	closes(t, events)
	closes(t, second)
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(patience):
		t.Fatal("Close did not return")
	}
	// A stream asked for after Close is closed at once.
	closes(t, s.Events(context.Background()))
}

func TestEventsWithADoneContextCloses(t *testing.T) {
	s := newSupervisor(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	closes(t, s.Events(ctx))
}
