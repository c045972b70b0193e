//go:build mpsupervisor_system

package mpsupervisor

// With -tags mpsupervisor_system the package uses the library that `make install` put under a
// prefix: pkg-config gives the include path and the link flags from mpsupervisor.pc, so nothing
// of the checkout is needed. For a prefix outside the system paths, set
// PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig, and CGO_LDFLAGS="-Wl,-rpath,$PREFIX/lib" (or
// LD_LIBRARY_PATH) so that programs find the shared library when they run.

// #cgo pkg-config: mpsupervisor
import "C"
