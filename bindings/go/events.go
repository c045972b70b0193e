package mpsupervisor

// #include <errno.h>
// #include <poll.h>
import "C"

import (
	"context"
	"sync"
	"syscall"
)

// Events returns a channel that delivers every lifecycle event, oldest first, as the library
// queues it. A goroutine waits on the supervisor's event descriptor with poll(2) (no timer, no
// polling in steps), drains what is queued, and sends it on the channel. The channel is closed
// when ctx is done, when the supervisor is closed, or when draining fails; events drained but not
// yet received at that moment are dropped.
//
// The stream drains the library's queue, so do not also call DrainEvents while it runs (each
// event goes to one of them). Close waits for every stream to stop using the descriptor before it
// frees the supervisor, so closing while a stream runs is safe.
func (s *Supervisor) Events(ctx context.Context) <-chan Event {
	out := make(chan Event)
	fd, err := s.EventFD()
	if err != nil {
		close(out)
		return out
	}
	st, err := s.addStream()
	if err != nil {
		close(out)
		return out
	}
	go func() {
		defer close(st.wakerDone)
		select {
		case <-ctx.Done():
		case <-st.stop:
		}
		st.wake()
	}()
	go func() {
		defer s.removeStream(st)
		defer close(out)
		for {
			if !st.waitReadable(fd) {
				return
			}
			events, err := s.DrainEvents(0)
			if err != nil {
				return
			}
			for _, e := range events {
				select {
				case out <- e:
				case <-ctx.Done():
					return
				case <-st.stop:
					return
				}
			}
		}
	}()
	return out
}

// eventStream is one running Events goroutine: stop is closed by Close (or when the stream
// ends), the pipe wakes its poll, wakerDone is closed once nothing will write to the pipe, and
// done once the goroutine no longer touches the event descriptor.
type eventStream struct {
	stop      chan struct{}
	stopOnce  sync.Once
	wakerDone chan struct{}
	done      chan struct{}
	pipe      [2]int
}

func (st *eventStream) end() {
	st.stopOnce.Do(func() { close(st.stop) })
}

// wake makes waitReadable return; a full pipe already holds a wake-up, so errors are ignored.
func (st *eventStream) wake() {
	_, _ = syscall.Write(st.pipe[1], []byte{1})
}

// waitReadable waits until the event descriptor is readable (true) or the stream is woken to
// end (false).
func (st *eventStream) waitReadable(fd int) bool {
	fds := [2]C.struct_pollfd{
		{fd: C.int(fd), events: C.POLLIN},
		{fd: C.int(st.pipe[0]), events: C.POLLIN},
	}
	for {
		select {
		case <-st.stop:
			return false
		default:
		}
		n, err := C.poll(&fds[0], 2, -1)
		if n < 0 {
			if err == syscall.EINTR {
				continue
			}
			return false
		}
		if fds[1].revents != 0 || fds[0].revents&(C.POLLERR|C.POLLNVAL) != 0 {
			return false
		}
		if fds[0].revents&C.POLLIN != 0 {
			return true
		}
	}
}

// addStream registers a stream, or fails once the supervisor is closed.
func (s *Supervisor) addStream() (*eventStream, error) {
	st := &eventStream{
		stop:      make(chan struct{}),
		wakerDone: make(chan struct{}),
		done:      make(chan struct{}),
	}
	if err := syscall.Pipe2(st.pipe[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		return nil, err
	}
	s.streamsMu.Lock()
	defer s.streamsMu.Unlock()
	if s.id.Load() == 0 {
		st.close()
		return nil, &Error{Code: CodeInvalidHandle, Message: "supervisor is closed"}
	}
	if s.streams == nil {
		s.streams = make(map[*eventStream]struct{})
	}
	s.streams[st] = struct{}{}
	return st, nil
}

func (s *Supervisor) removeStream(st *eventStream) {
	st.end()
	s.streamsMu.Lock()
	delete(s.streams, st)
	s.streamsMu.Unlock()
	<-st.wakerDone // the pipe is closed only once nobody can write to it
	st.close()
	close(st.done)
}

func (st *eventStream) close() {
	_ = syscall.Close(st.pipe[0])
	_ = syscall.Close(st.pipe[1])
}

// stopStreams ends every stream and waits until none of them uses the event descriptor.
func (s *Supervisor) stopStreams() {
	s.streamsMu.Lock()
	streams := make([]*eventStream, 0, len(s.streams))
	for st := range s.streams {
		streams = append(streams, st)
		st.end()
	}
	s.streamsMu.Unlock()
	for _, st := range streams {
		<-st.done
	}
}
