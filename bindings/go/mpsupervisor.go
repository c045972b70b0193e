// Package mpsupervisor runs and supervises groups of worker processes through libmpsupervisor,
// the C library of this repository (see ../../README.md and ../../docs/reference.md).
//
// A Supervisor owns one library handle. Configure it with []Group, start groups by name, wait
// until their workers are ready, and stop them gracefully (or force-terminate them); Snapshot
// and DrainEvents report what is running and what happened. Every method is safe for
// concurrent use; WaitReady and Stop block the calling goroutine (and its OS thread) but not
// Snapshot or DrainEvents in other goroutines. Close frees the handle, killing and reaping
// every worker first; a finalizer does the same if a Supervisor is dropped without Close.
//
// Failures are *Error values carrying the library's result code and message; test them with
// errors.Is and the sentinels ErrTimeout, ErrUnknownGroup, ErrInvalidConfig and so on.
package mpsupervisor

// The include path and the library come from link_checkout.go (the default: this checkout) or
// link_system.go (-tags mpsupervisor_system: the installed library, through pkg-config).

// #include <stdlib.h>
// #include <string.h>
// #include <mpsupervisor.h>
import "C"

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// Version returns the library's version, such as "0.1.0".
func Version() string {
	return C.GoString(C.mpsup_version())
}

// Supervisor supervises process groups. Create it with New and release it with Close.
type Supervisor struct {
	// id is the library handle; 0 once closed. Atomic so that Close may race with calls
	// (the library itself makes that safe: a call in flight finishes first).
	id atomic.Uint64

	// The running Events streams; Close ends them before it frees the handle.
	streamsMu sync.Mutex
	streams   map[*eventStream]struct{}
}

// New creates a supervisor (and the library's monitor thread for it).
func New() (*Supervisor, error) {
	var h C.mpsup_supervisor
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if rc := C.mpsup_supervisor_new(&h); rc != C.MPSUP_OK {
		return nil, lastError(rc)
	}
	s := &Supervisor{}
	s.id.Store(uint64(h.id))
	runtime.SetFinalizer(s, (*Supervisor).finalize)
	return s, nil
}

// finalize is the safety net for a Supervisor that was never closed.
func (s *Supervisor) finalize() {
	_ = s.Close()
}

// Close force-terminates and reaps every worker, then frees the supervisor. Closing again
// (or closing nil) does nothing and returns nil; any other call after Close fails with
// ErrInvalidHandle.
func (s *Supervisor) Close() error {
	if s == nil {
		return nil
	}
	id := s.id.Swap(0)
	if id == 0 {
		return nil
	}
	runtime.SetFinalizer(s, nil)
	s.stopStreams() // none of them may poll the event descriptor once it is closed
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if rc := C.mpsup_supervisor_free(C.mpsup_supervisor{id: C.uint64_t(id)}); rc != C.MPSUP_OK {
		return lastError(rc)
	}
	return nil
}

// lastError reads this thread's message; the caller must still be locked to the OS thread
// that made the failing call.
func lastError(rc C.enum_mpsup_result) error {
	return &Error{Code: Code(rc), Message: C.GoString(C.mpsup_last_error_message())}
}

// call runs f with the handle on one locked OS thread, so that the thread-local error
// message read after a failure is the one f left, and keeps s alive until f returns (so the
// finalizer cannot free the handle during a long call).
func (s *Supervisor) call(f func(h C.mpsup_supervisor) C.enum_mpsup_result) error {
	if s == nil {
		return &Error{Code: CodeInvalidHandle, Message: "nil *Supervisor"}
	}
	id := s.id.Load()
	if id == 0 {
		return &Error{Code: CodeInvalidHandle, Message: "supervisor is closed"}
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	rc := f(C.mpsup_supervisor{id: C.uint64_t(id)})
	runtime.KeepAlive(s)
	if rc != C.MPSUP_OK {
		return lastError(rc)
	}
	return nil
}

// withCString passes s to f as a C string, freed afterwards.
func withCString(s string, f func(*C.char) error) error {
	cs := C.CString(s)
	defer C.free(unsafe.Pointer(cs))
	return f(cs)
}

// withNames passes names to f as a C array of C strings, freed afterwards.
func withNames(names []string, f func(**C.char, C.size_t) error) error {
	if len(names) == 0 {
		return f(nil, 0)
	}
	cs := make([]*C.char, len(names)) // Go memory holding only C pointers: fine to pass
	defer func() {
		for _, p := range cs {
			C.free(unsafe.Pointer(p))
		}
	}()
	for i, name := range names {
		if strings.IndexByte(name, 0) >= 0 {
			return argError("group name %q contains a NUL byte", name)
		}
		cs[i] = C.CString(name)
	}
	return f(&cs[0], C.size_t(len(cs)))
}

// takeString copies a string the library returned and frees it with mpsup_string_free.
func takeString(p *C.char) []byte {
	defer C.mpsup_string_free(p)
	if p == nil {
		return nil
	}
	return C.GoBytes(unsafe.Pointer(p), C.int(C.strlen(p)))
}

// Configure replaces the configuration with groups (all or nothing). On ErrInvalidConfig the
// message names the JSON path, such as groups[1].argv, and the old configuration stays. A new
// configuration applies at the next start of a group; running workers are not touched.
func (s *Supervisor) Configure(groups []Group) error {
	if groups == nil {
		groups = []Group{}
	}
	data, err := json.Marshal(groups)
	if err != nil {
		return &Error{Code: CodeInvalidConfig, Message: err.Error()}
	}
	return s.configureJSON(data)
}

// ConfigureJSON is Configure with the groups JSON array given as is.
func (s *Supervisor) ConfigureJSON(groupsJSON []byte) error {
	return s.configureJSON(groupsJSON)
}

func (s *Supervisor) configureJSON(data []byte) error {
	return withCString(string(data), func(cs *C.char) error {
		return s.call(func(h C.mpsup_supervisor) C.enum_mpsup_result {
			return C.mpsup_configure_process_groups(h, cs)
		})
	})
}

// ConfigureLifecycleLogging sets where every event is also written as a JSON log line.
// settings is marshalled with encoding/json (a json.RawMessage is passed as is), for example
//
//	map[string]interface{}{
//		"lifecycle_events": map[string]interface{}{"enabled": true, "level": "info"},
//		"exporters": []interface{}{map[string]interface{}{"kind": "stdout"}},
//	}
func (s *Supervisor) ConfigureLifecycleLogging(settings interface{}) error {
	data, err := json.Marshal(settings)
	if err != nil {
		return &Error{Code: CodeInvalidConfig, Message: err.Error()}
	}
	return withCString(string(data), func(cs *C.char) error {
		return s.call(func(h C.mpsup_supervisor) C.enum_mpsup_result {
			return C.mpsup_configure_lifecycle_logging(h, cs)
		})
	})
}

// Start starts the named groups in order: running workers of a group are force-terminated
// first, then its workers are spawned. An unknown name gives ErrUnknownGroup and spawns
// nothing; a spawn failure gives ErrSpawn and leaves nothing from this call running.
func (s *Supervisor) Start(names ...string) error {
	return withNames(names, func(p **C.char, n C.size_t) error {
		return s.call(func(h C.mpsup_supervisor) C.enum_mpsup_result {
			return C.mpsup_start_groups(h, p, n)
		})
	})
}

// waitSlice is the longest single blocking library call of WaitReady and Stop: the C calls
// cannot be interrupted, so they wait in slices this long and look at ctx in between.
const waitSlice = 50 * time.Millisecond

// nextSlice is how long the next library call may wait: waitSlice, or less before ctx's
// deadline; 0 when ctx is done.
func nextSlice(ctx context.Context) time.Duration {
	if ctx.Err() != nil {
		return 0
	}
	d := waitSlice
	if deadline, ok := ctx.Deadline(); ok {
		if left := time.Until(deadline); left < d {
			d = left
		}
	}
	if d < 0 {
		d = 0
	}
	return d
}

// WaitReady waits until every started worker is ready (true, nil) or ctx is done (false and
// ctx.Err()), for example:
//
//	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
//	defer cancel()
//	ready, err := sup.WaitReady(ctx)
//
// It returns false and a nil error at once when there are no workers, when a worker has
// failed, or when a rolling restart failed. The library call blocks its OS thread, so the
// wait is made of calls of at most 50 ms, and a cancelled ctx is seen within that time. A ctx
// that is already done still gets one answer without waiting: true if every worker is ready.
func (s *Supervisor) WaitReady(ctx context.Context) (bool, error) {
	for {
		// The library answers false at once to a wait of 0: a done ctx gets the shortest wait.
		d := nextSlice(ctx)
		if d <= 0 {
			d = time.Microsecond
		}
		started := time.Now()
		ready, err := s.waitReadyOnce(d)
		if err != nil || ready {
			return ready, err
		}
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		// A slice that answered false well before its time did not wait: that is the
		// library's final answer (no workers, a worker failed).
		if d > 0 && time.Since(started) < d/2 {
			return false, nil
		}
	}
}

func (s *Supervisor) waitReadyOnce(d time.Duration) (bool, error) {
	var ready C.bool
	err := s.call(func(h C.mpsup_supervisor) C.enum_mpsup_result {
		return C.mpsup_wait_ready(h, C.double(d.Seconds()), &ready)
	})
	return bool(ready), err
}

// Stop stops every running worker gracefully (STOP DRAIN, or STOP NOW when drainInflight is
// false, over its control channel; else its stop signal) and waits until they have exited or
// ctx is done:
//
//	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
//	defer cancel()
//	err := sup.Stop(ctx, true)
//
// When ctx ends first, the workers still alive stay in state "stopping" and Stop returns an
// *Error matching ErrTimeout (its message names a worker still alive) that also matches
// ctx.Err() (context.DeadlineExceeded or context.Canceled); ForceTerminate ends them. The
// stop requests go out at once, even with a ctx already done. The library call blocks its
// OS thread, so it waits at most 50 ms; after that Stop watches the snapshot in steps of at
// most 50 ms until no worker is stopping (asking again would also stop workers another
// goroutine started meanwhile), and a cancelled ctx is seen within that time.
func (s *Supervisor) Stop(ctx context.Context, drainInflight bool) error {
	err := s.call(func(h C.mpsup_supervisor) C.enum_mpsup_result {
		return C.mpsup_stop_groups(h, C.double(nextSlice(ctx).Seconds()), C.bool(drainInflight))
	})
	return waitStopped(ctx, err, s.stillStopping)
}

// waitStopped turns a stop's first answer into the caller's: while it is ErrTimeout and ctx
// allows, it waits a slice and asks still again (nil once nothing is stopping any more).
func waitStopped(ctx context.Context, err error, still func() error) error {
	for {
		var e *Error
		if err == nil || !errors.As(err, &e) || e.Code != CodeTimeout {
			return err
		}
		if ctx.Err() != nil {
			return &Error{Code: e.Code, Message: e.Message, cause: ctx.Err()}
		}
		select {
		case <-ctx.Done():
		case <-time.After(nextSlice(ctx)):
		}
		err = still()
	}
}

// stillStopping is nil once no worker is stopping, else an ErrTimeout naming one that is.
func (s *Supervisor) stillStopping() error {
	snap, err := s.Snapshot()
	if err != nil {
		return err
	}
	for _, workers := range snap {
		for _, w := range workers {
			if w.State == StateStopping {
				msg := fmt.Sprintf("worker '%s' did not stop within graceful timeout", w.WorkerID)
				return &Error{Code: CodeTimeout, Message: msg}
			}
		}
	}
	return nil
}

// ForceTerminate kills every worker of the named groups (SIGKILL to each worker's process
// group) and returns once all are reaped. A configured group with no workers is a no-op; a
// name never configured gives ErrUnknownGroup and kills nothing.
func (s *Supervisor) ForceTerminate(names ...string) error {
	return withNames(names, func(p **C.char, n C.size_t) error {
		return s.call(func(h C.mpsup_supervisor) C.enum_mpsup_result {
			return C.mpsup_force_terminate_groups(h, p, n)
		})
	})
}

// StartWork sends START to every worker of the named groups (groups with StartGate), all or
// none: if any of them is not ready, nothing is sent and the error matches ErrNotReady, its
// message naming the workers that are not ready.
func (s *Supervisor) StartWork(names ...string) error {
	return withNames(names, func(p **C.char, n C.size_t) error {
		return s.call(func(h C.mpsup_supervisor) C.enum_mpsup_result {
			return C.mpsup_start_work(h, p, n)
		})
	})
}

// Snapshot returns the workers of every group, keyed by group name, in index order.
func (s *Supervisor) Snapshot() (map[string][]Worker, error) {
	data, err := s.SnapshotJSON()
	if err != nil {
		return nil, err
	}
	var snap map[string][]Worker
	if err := json.Unmarshal(data, &snap); err != nil {
		return nil, err
	}
	return snap, nil
}

// SnapshotJSON returns the snapshot as the library's JSON.
func (s *Supervisor) SnapshotJSON() ([]byte, error) {
	var out *C.char
	err := s.call(func(h C.mpsup_supervisor) C.enum_mpsup_result {
		return C.mpsup_snapshot_json(h, &out)
	})
	if err != nil {
		return nil, err
	}
	return takeString(out), nil
}

// DrainEvents removes and returns up to max events (0: all), oldest first.
func (s *Supervisor) DrainEvents(max int) ([]Event, error) {
	data, err := s.DrainEventsJSON(max)
	if err != nil {
		return nil, err
	}
	var events []Event
	if err := json.Unmarshal(data, &events); err != nil {
		return nil, err
	}
	return events, nil
}

// DrainEventsJSON is DrainEvents returning the library's JSON array.
func (s *Supervisor) DrainEventsJSON(max int) ([]byte, error) {
	if max < 0 {
		return nil, argError("max must not be negative, got %d", max)
	}
	var out *C.char
	err := s.call(func(h C.mpsup_supervisor) C.enum_mpsup_result {
		return C.mpsup_drain_events_json(h, C.size_t(max), &out)
	})
	if err != nil {
		return nil, err
	}
	return takeString(out), nil
}

// Schema returns one of the library's JSON Schemas (draft 2020-12) by name: "groups" (what
// Configure takes), "restart-options" (Restart's options), "logging" (what
// ConfigureLifecycleLogging takes), "snapshot", "status" or "events" (what SnapshotJSON,
// Status and DrainEventsJSON give). Another name gives ErrInvalidArgument naming the known
// ones. It needs no Supervisor.
func Schema(which string) (string, error) {
	if strings.IndexByte(which, 0) >= 0 {
		return "", argError("schema name %q contains a NUL byte", which)
	}
	cs := C.CString(which)
	defer C.free(unsafe.Pointer(cs))
	var out *C.char
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if rc := C.mpsup_schema_json(cs, &out); rc != C.MPSUP_OK {
		return "", lastError(rc)
	}
	return string(takeString(out)), nil
}

// EventFD returns a descriptor that polls readable while undrained events exist. It belongs
// to the supervisor: do not read, write or close it; Close closes it.
func (s *Supervisor) EventFD() (int, error) {
	var fd C.int
	err := s.call(func(h C.mpsup_supervisor) C.enum_mpsup_result {
		return C.mpsup_event_fd(h, &fd)
	})
	if err != nil {
		return -1, err
	}
	return int(fd), nil
}
