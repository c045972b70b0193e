//go:build !mpsupervisor_system

package mpsupervisor

// By default the package links against the library built in this repository by `cargo build`
// (target/debug), and records that directory as the run-time search path, so that
// `go test ./...` works out of the box. Build with `-tags mpsupervisor_system` to drop these
// flags and link against an installed library (found through the linker's default paths, or
// CGO_LDFLAGS). Flags in CGO_LDFLAGS come before these ones either way, so
// CGO_LDFLAGS="-L$DIR -Wl,-rpath,$DIR" also selects another build (such as target/release).

// #cgo LDFLAGS: -L${SRCDIR}/../../target/debug -Wl,-rpath,${SRCDIR}/../../target/debug
import "C"
