package mpsupervisor

// #include <stdlib.h>
// #include <mpsupervisor.h>
import "C"

import (
	"context"
	"fmt"
	"syscall"
)

// StopNamed is Stop for the named groups only: their workers are stopped gracefully and
// waited for until they have exited or ctx is done; every other group keeps running, its
// sockets open. The named groups are no longer started (their listen sockets are closed) and
// Start starts them again. As with Stop, the library call waits at most 50 ms, then the
// snapshot is watched until no worker of the named groups is stopping; when ctx ends first
// the error matches ErrTimeout and ctx.Err(). A name never configured gives ErrUnknownGroup
// and stops nothing.
func (s *Supervisor) StopNamed(ctx context.Context, drainInflight bool, names ...string) error {
	err := withNames(names, func(p **C.char, n C.size_t) error {
		return s.call(func(h C.mpsup_supervisor) C.enum_mpsup_result {
			return C.mpsup_stop_named_groups(h, p, n, C.double(nextSlice(ctx).Seconds()), C.bool(drainInflight))
		})
	})
	return waitStopped(ctx, err, func() error { return s.stillStoppingIn(names) })
}

// stillStoppingIn is nil once no worker of the named groups is stopping, else an ErrTimeout
// naming one that is.
func (s *Supervisor) stillStoppingIn(names []string) error {
	snap, err := s.Snapshot()
	if err != nil {
		return err
	}
	for _, name := range names {
		for _, w := range snap[name] {
			if w.State == StateStopping {
				msg := fmt.Sprintf("worker '%s' did not stop within graceful timeout", w.WorkerID)
				return &Error{Code: CodeTimeout, Message: msg}
			}
		}
	}
	return nil
}

// SignalGroup sends sig to every live worker of the started group name (for log reopening
// and the like): to its process group, or to the worker alone with kill_mode "mixed"; a
// worker_signaled event per worker. Returns at once.
func (s *Supervisor) SignalGroup(name string, sig syscall.Signal) error {
	return withCString(name, func(cs *C.char) error {
		return s.call(func(h C.mpsup_supervisor) C.enum_mpsup_result {
			return C.mpsup_signal_group(h, cs, C.int(sig))
		})
	})
}

// ReloadGroups sends each worker of the named started groups its group's reload_signal
// (default SIGHUP) and returns at once. An sd_notify worker is "reloading" until the READY=1
// that follows its RELOADING=1, so WaitReady called after this waits for it.
func (s *Supervisor) ReloadGroups(names ...string) error {
	return withNames(names, func(p **C.char, n C.size_t) error {
		return s.call(func(h C.mpsup_supervisor) C.enum_mpsup_result {
			return C.mpsup_reload_groups(h, p, n)
		})
	})
}

// ReplaceWorker replaces one worker ("<group>#<index>") as one slot of a rolling restart: a
// new process first, the old one stopped gracefully once the new one is ready (event
// worker_recycled, reason "requested"). Returns at once.
func (s *Supervisor) ReplaceWorker(workerID string) error {
	return withCString(workerID, func(cs *C.char) error {
		return s.call(func(h C.mpsup_supervisor) C.enum_mpsup_result {
			return C.mpsup_replace_worker(h, cs)
		})
	})
}
