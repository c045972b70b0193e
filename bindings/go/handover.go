package mpsupervisor

// #include <mpsupervisor.h>
import "C"

import "runtime"

// HandoverPrepare prepares handing every worker to the next image of this process (an upgrade
// of the host that restarts no worker, API.md part 9) and returns the number of the memfd that
// holds the state. Then syscall.Exec the new binary with that number in the environment
// variable MPSUP_HANDOVER_FD (the memfd and the library's descriptors stay open across it) and
// call Adopt there. If the exec fails, call HandoverAbort. Until then every other method fails
// with ErrInvalidHandle. Changes in progress (rollouts, stops, reloads, replacements, groups
// waiting for dependencies) cross and go on in the next image. ErrNotReady only when a spawn
// has not arrived within 2 s or a control line is still on its way (try again). Everything
// else crosses too: captured output, listen sockets (reuse_port too), workers' cgroups, and the
// event fd (EventFD) at the same number.
func (s *Supervisor) HandoverPrepare() (int, error) {
	var fd C.int
	err := s.call(func(h C.mpsup_supervisor) C.enum_mpsup_result {
		return C.mpsup_handover_prepare(h, &fd)
	})
	if err != nil {
		return -1, err
	}
	return int(fd), nil
}

// HandoverAbort undoes HandoverPrepare when the exec failed: the Supervisor works on as before.
func (s *Supervisor) HandoverAbort() error {
	return s.call(func(h C.mpsup_supervisor) C.enum_mpsup_result {
		return C.mpsup_handover_abort(h)
	})
}

// Adopt, in the host's new image, rebuilds the supervisor that HandoverPrepare wrote into memfd
// fd, with the same workers (same pids, control sockets and listen sockets). Exits during the
// exec are handled now; undrained events are still there, followed by supervisor_adopted. A
// state of a library version whose format this one cannot read fails with ErrInvalidArgument
// naming both versions, and its workers are killed.
func Adopt(fd int) (*Supervisor, error) {
	var h C.mpsup_supervisor
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if rc := C.mpsup_supervisor_adopt(C.int(fd), &h); rc != C.MPSUP_OK {
		return nil, lastError(rc)
	}
	s := &Supervisor{}
	s.id.Store(uint64(h.id))
	runtime.SetFinalizer(s, (*Supervisor).finalize)
	return s, nil
}
