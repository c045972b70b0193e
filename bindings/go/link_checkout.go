//go:build !mpsupervisor_system

package mpsupervisor

// By default the package builds against the checkout it lives in: the header in ../../include
// and the library that `cargo build` made in ../../target/debug, whose directory is recorded as
// the run-time search path (-Wl,-rpath), so a program runs without LD_LIBRARY_PATH. This is what
// `go test` here uses, and what another module gets through a `replace` directive pointing at
// this directory. Flags in CGO_LDFLAGS come before these ones, so
// CGO_LDFLAGS="-L$DIR -Wl,-rpath,$DIR" selects another build (such as target/release).
//
// Build with -tags mpsupervisor_system to use the installed library instead (link_system.go).

// #cgo CFLAGS: -I${SRCDIR}/../../include
// #cgo LDFLAGS: -L${SRCDIR}/../../target/debug -Wl,-rpath,${SRCDIR}/../../target/debug -lmpsupervisor
import "C"
