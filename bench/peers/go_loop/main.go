// peer_go_loop: what a Go programmer writes instead of a supervisor: one goroutine per worker
// that starts it with os/exec, waits for it and starts it again at once when it ends unasked.
// No readiness, no stop protocol, no policy.
//
// usage: peer_go_loop WORKER SOCK N
// Prints "idle", then answers commands on stdin, one line each: "start" (starts N, then
// "started"), "tick" ("ok"), "stop" (SIGTERM to each, waits for every one, then "stopped").
// At end of input it kills whatever runs and waits for it.
package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
)

type slot struct {
	mu  sync.Mutex
	cmd *exec.Cmd
}

type loop struct {
	worker, sock string
	slots        []*slot
	mu           sync.Mutex
	stopping     bool
	done         sync.WaitGroup
}

func (l *loop) isStopping() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stopping
}

// run keeps one worker going until the loop stops.
func (l *loop) run(s *slot, cmd *exec.Cmd) {
	defer l.done.Done()
	for {
		_ = cmd.Wait()
		s.mu.Lock()
		if l.isStopping() {
			s.mu.Unlock()
			return
		}
		cmd = exec.Command(l.worker, l.sock)
		if err := cmd.Start(); err != nil {
			s.mu.Unlock()
			fmt.Fprintln(os.Stderr, "peer_go_loop: restart:", err)
			os.Exit(1)
		}
		s.cmd = cmd
		s.mu.Unlock()
	}
}

func (l *loop) start(n int) {
	l.stopping = false
	l.slots = make([]*slot, n)
	for i := range l.slots {
		cmd := exec.Command(l.worker, l.sock)
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(os.Stderr, "peer_go_loop: start:", err)
			os.Exit(1)
		}
		s := &slot{cmd: cmd}
		l.slots[i] = s
		l.done.Add(1)
		go l.run(s, cmd)
	}
}

func (l *loop) stop(sig syscall.Signal) {
	l.mu.Lock()
	l.stopping = true
	l.mu.Unlock()
	for _, s := range l.slots {
		s.mu.Lock()
		_ = s.cmd.Process.Signal(sig)
		s.mu.Unlock()
	}
	l.done.Wait()
	l.slots = nil
}

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: peer_go_loop WORKER SOCK N")
		os.Exit(2)
	}
	n, err := strconv.Atoi(os.Args[3])
	if err != nil || n < 0 {
		fmt.Fprintln(os.Stderr, "peer_go_loop: bad N")
		os.Exit(2)
	}
	l := &loop{worker: os.Args[1], sock: os.Args[2]}
	fmt.Println("idle")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		switch in.Text() {
		case "start":
			l.start(n)
			fmt.Println("started")
		case "tick":
			fmt.Println("ok")
		case "stop":
			l.stop(syscall.SIGTERM)
			fmt.Println("stopped")
		default:
			fmt.Fprintln(os.Stderr, "peer_go_loop: unknown command", in.Text())
			os.Exit(2)
		}
	}
	l.stop(syscall.SIGKILL)
}
