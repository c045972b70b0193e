# mpsupervisor: build the library, the C examples, and run the demo.
#
#   make lib          cargo build (release by default)
#   make c-examples   build/demo_host, build/example_worker, build/shell_worker.sh, build/cpp_host,
#                     build/cpp_handover
#   make demo         run the demo host for 3 seconds
#   make demo-cpp     run the C++17 host once, then the C++17 host that hands its workers over
#   make install      PREFIX=/usr/local (DESTDIR, LIBDIR, INCLUDEDIR too): the header,
#                     libmpsupervisor.so.X.Y.Z with SONAME libmpsupervisor.so.X and its two
#                     symlinks, libmpsupervisor.a, lib/pkgconfig/mpsupervisor.pc, and the
#                     helper programs mpsup-keeper and mpsup-exec in $(HELPERDIR)
#   make uninstall    removes what make install put there
#   make setup        scripts/setup: apt-get installs the missing system tools (as root) and
#                     makes the Python environment build/venv (pytest, the build tools)
#   make test         the test suite (runs make setup first)
#   make python-package  pip installs bindings/python (cargo builds the bundled library) into build/venv
#   make bench-peers  installs supervisord, circus (build/peers-venv), PM2 (build/peers-npm), s6 and Go
#                     (apt-get, if missing) and runs bench/peers/run.py (PEERS_ARGS: its options)
#   make bench-peers-smoke  the peers driver at N = 5 for the library, multiprocessing and Go (~10 s)
#   make mutants      scripts/mutants: cargo-mutants over src/core and src/config in a small crate
#                     of their own (~20 min on two cores; needs `cargo install cargo-mutants`)
#   make clean
#
# PROFILE=debug (or a custom [profile.NAME]) builds and links against target/$(PROFILE).

PROFILE ?= release
CARGO ?= cargo
CC ?= cc
BUILD ?= build

ifeq ($(PROFILE),release)
CARGO_PROFILE_FLAGS := --release
else ifeq ($(PROFILE),debug)
CARGO_PROFILE_FLAGS :=
else
CARGO_PROFILE_FLAGS := --profile $(PROFILE)
endif

LIB_DIR := target/$(PROFILE)
LIB := $(LIB_DIR)/libmpsupervisor.so

WARNINGS := -std=c11 -Wall -Wextra -Wpedantic -Werror
CFLAGS ?= -O2 -g
ALL_CFLAGS := $(WARNINGS) -Iinclude $(CFLAGS)
CXX_WARNINGS := -std=c++17 -Wall -Wextra -Wpedantic -Werror
CXXFLAGS ?= -O2 -g
ALL_CXXFLAGS := $(CXX_WARNINGS) -Iinclude $(CXXFLAGS)
LDLIBS := -L$(LIB_DIR) -lmpsupervisor -Wl,-rpath,$(abspath $(LIB_DIR))

C_EXAMPLES := $(BUILD)/demo_host $(BUILD)/example_worker $(BUILD)/shell_worker.sh $(BUILD)/cpp_host \
              $(BUILD)/cpp_handover

# Installing. The version comes from Cargo.toml; the SONAME carries its major number.
PREFIX ?= /usr/local
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
# The helper programs (the keeper that kills workers when the host dies, the exec shim that puts
# a worker in its cgroup). The library looks for them next to itself, in mpsupervisor/ next to
# itself (this default), and in the directory built into it at install time (for static links).
HELPERDIR ?= $(LIBDIR)/mpsupervisor
HELPERS := mpsup-keeper mpsup-exec
INSTALL ?= install
VERSION := $(shell sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n 1)
DESCRIPTION := $(shell sed -n 's/^description *= *"\(.*\)"/\1/p' Cargo.toml | head -n 1)
SOVERSION := $(firstword $(subst ., ,$(VERSION)))
SONAME := libmpsupervisor.so.$(SOVERSION)
REALNAME := libmpsupervisor.so.$(VERSION)
# Its own target directory: the SONAME link argument must not change target/release.
INSTALL_TARGET_DIR := target/install
INSTALL_OUT := $(INSTALL_TARGET_DIR)/release
RUSTC_LOG := $(INSTALL_TARGET_DIR)/rustc.log
# What rustc printed for this staticlib on x86_64 glibc; used only if its note cannot be read.
FALLBACK_NATIVE_STATIC_LIBS := -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc

.PHONY: all mutants lib c-examples demo demo-cpp demo-crash setup python-package test test-rust test-python \
	test-go test-valgrind test-asan install install-build uninstall clean bench-peers bench-peers-smoke FORCE

all: lib c-examples

lib: $(LIB)

# Cargo knows whether the library is up to date; make only sees the file's time,
# so the C programs are relinked only when cargo really rebuilt it.
$(LIB): FORCE
	$(CARGO) build $(CARGO_PROFILE_FLAGS) $(CARGO_LIB_FLAGS)

c-examples: $(C_EXAMPLES)

$(BUILD)/%: c_examples/%.c include/mpsupervisor.h $(LIB) | $(BUILD)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LDFLAGS) $(LDLIBS)

$(BUILD)/%: c_examples/%.cpp c_examples/mpsupervisor.hpp include/mpsupervisor.h $(LIB) | $(BUILD)
	$(CXX) $(ALL_CXXFLAGS) -o $@ $< $(LDFLAGS) $(LDLIBS)

$(BUILD)/shell_worker.sh: c_examples/shell_worker.sh | $(BUILD)
	cp $< $@
	chmod +x $@

$(BUILD):
	mkdir -p $@

demo: lib c-examples
	./$(BUILD)/demo_host --seconds 3

# The C++ host: one group of two shell workers, started, snapshot, stopped; then the C++ host
# that execs itself and adopts them (same pids) before stopping them.
demo-cpp: lib c-examples
	./$(BUILD)/cpp_host
	./$(BUILD)/cpp_handover

# A worker that crashes every 300 ms, respawned with backoff until the group fails (the demo
# then exits with status 4, which is what this target shows).
demo-crash: lib c-examples
	./$(BUILD)/demo_host c_examples/crash_demo.json crashy --seconds 10 || test $$? -eq 4

# Every test: Rust unit and integration tests (they build and run the C programs), the Python
# bindings as pip installs them, the Go bindings, the C examples under valgrind and ASan/UBSan.
test: test-rust test-python test-go test-valgrind test-asan
	@echo "test suites: 5 passed, 0 failed"

# The library against the supervisors users would pick instead (bench/peers/README in bench/README.md).
# Never part of make test: it takes minutes. Everything it installs lands in $(BUILD).
PEERS_ARGS ?=
bench-peers: lib
	BUILD=$(BUILD) sh bench/peers/install.sh
	python3 bench/peers/run.py $(PEERS_ARGS)

bench-peers-smoke: lib
	python3 bench/peers/run.py --smoke

mutants:
	scripts/mutants -j 2

# Installs only what is missing; cheap when nothing is. Every test target runs it first.
setup:
	VENV=$(VENV) scripts/setup

# The debug library the tests use is built with --all-targets: then its dependencies are
# resolved with the dev-dependencies' features, as `cargo test` resolves them. A plain
# `cargo build` resolves them without, and since the cdylib's file name carries no hash, the two
# would rebuild target/debug/libmpsupervisor.so in turn on every make test.
TEST_CARGO_BUILD := $(CARGO) build --all-targets

test-rust: setup
	$(TEST_CARGO_BUILD)
	$(CARGO) test
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps --quiet

# The package as pip installs it into build/venv: setup.py builds the bundled
# libmpsupervisor.so with `cargo build --release`. Reinstalled only when a source changed
# (or the venv was made again); --no-build-isolation uses the venv's setuptools, offline.
VENV ?= $(BUILD)/venv
VENV_PYTHON := $(VENV)/bin/python
PYTHON_PACKAGE_STAMP := $(BUILD)/python-package.stamp
PYTHON_PACKAGE_SOURCES := $(shell find src bindings/python/mpsupervisor -name '*.rs' -o -name '*.py' \
	-o -name py.typed 2>/dev/null) Cargo.toml Cargo.lock bindings/python/setup.py \
	bindings/python/pyproject.toml bindings/python/README.md

python-package: $(PYTHON_PACKAGE_STAMP)

$(PYTHON_PACKAGE_STAMP): $(PYTHON_PACKAGE_SOURCES) $(VENV)/.setup-stamp | $(BUILD)
	PIP_DISABLE_PIP_VERSION_CHECK=1 $(VENV_PYTHON) -m pip install --quiet --no-deps --force-reinstall \
		--no-build-isolation ./bindings/python
	touch $@

$(VENV)/.setup-stamp:
	VENV=$(VENV) scripts/setup

# From a directory outside the source tree, without MPSUPERVISOR_LIBRARY: the tests import the
# installed package and its bundled library (conftest checks both under MPSUP_TEST_INSTALLED=1).
# Their temp folders live in build/pytest-tmp, emptied at each run (kept only for failed tests).
test-python: setup python-package
	cd $(BUILD) && env -u MPSUPERVISOR_LIBRARY MPSUP_TEST_INSTALLED=1 MPSUP_REPO=$(CURDIR) \
		$(abspath $(VENV_PYTHON)) -m pytest -q -p no:cacheprovider --basetemp=$(abspath $(BUILD))/pytest-tmp \
		$(CURDIR)/bindings/python/tests
	cd bindings/python && $(abspath $(VENV_PYTHON)) -m mypy --strict --cache-dir $(abspath $(BUILD))/mypy-cache \
		mpsupervisor setup.py tests

# -count=1: Go caches test results and would not notice a rebuilt library.
test-go: setup
	$(TEST_CARGO_BUILD)
	cd bindings/go && go vet ./... && test -z "$$(gofmt -l .)" && go test -count=1 ./...

# Blocks "possibly lost" are not shown: the library's one parser thread per process lives as long
# as the process, so its stack and thread-locals are still held at exit, which is by design.
# valgrind does not know pidfd_open (syscall 434) and answers ENOSYS, so this run also covers the
# polling fallback. Its warning about each such call is not an error: the log is printed without
# those blocks, and one line says how many there were.
VALGRIND_LOG := $(BUILD)/debug/valgrind.log
VALGRIND_434 := -e 'unhandled .*syscall: 434' -e 'write your own handler' \
	-e 'README_MISSING_SYSCALL_OR_IOCTL' -e 'we consider this a bug' -e 'valgrind.org/support/bug'
test-valgrind: setup
	$(MAKE) --no-print-directory PROFILE=debug BUILD=$(BUILD)/debug CARGO_LIB_FLAGS=--all-targets c-examples
	valgrind -q --log-file=$(VALGRIND_LOG) --error-exitcode=99 --leak-check=full --show-possibly-lost=no \
		--errors-for-leak-kinds=definite ./$(BUILD)/debug/demo_host --seconds 0.5 > /dev/null; \
	status=$$?; grep -v $(VALGRIND_434) $(VALGRIND_LOG) >&2; \
	n=$$(grep -c 'unhandled .*syscall: 434' $(VALGRIND_LOG)); \
	test "$$n" = 0 || echo "valgrind: pidfd_open (syscall 434) is unknown to valgrind; $$n calls got ENOSYS and the library used its polling fallback, as intended"; \
	exit $$status

# The C programs instrumented with AddressSanitizer and UBSan (the Rust library is not); this
# run uses pidfds. The nm check proves the sanitizer really got linked.
test-asan: setup
	$(TEST_CARGO_BUILD)
	mkdir -p $(BUILD)/asan
	$(CC) $(ALL_CFLAGS) -O1 -fsanitize=address,undefined -fno-omit-frame-pointer \
		-o $(BUILD)/asan/demo_host c_examples/demo_host.c -Ltarget/debug -lmpsupervisor \
		-Wl,-rpath,$(abspath target/debug)
	$(CC) $(ALL_CFLAGS) -O1 -fsanitize=address,undefined -fno-omit-frame-pointer \
		-o $(BUILD)/asan/example_worker c_examples/example_worker.c -Ltarget/debug -lmpsupervisor \
		-Wl,-rpath,$(abspath target/debug)
	cp c_examples/shell_worker.sh $(BUILD)/asan/
	nm $(BUILD)/asan/demo_host | grep -q __asan_init
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1 \
		./$(BUILD)/asan/demo_host --seconds 0.5 > /dev/null

# A release build of the cdylib (linked with the SONAME) and the staticlib in target/install.
# `cargo rustc` passes the link argument to this crate only, so the dependencies are built
# as usual and target/release is never invalidated. rustc's note on the native libraries the
# staticlib needs becomes Libs.private; cargo replays the note when nothing was rebuilt.
install-build: FORCE
	@test -n "$(VERSION)" || { echo "no version in Cargo.toml" >&2; exit 1; }
	mkdir -p $(INSTALL_TARGET_DIR)
	MPSUP_HELPER_DIR="$(HELPERDIR)" $(CARGO) rustc --release --lib --color never \
		--target-dir $(INSTALL_TARGET_DIR) --crate-type cdylib,staticlib \
		-- -C link-arg=-Wl,-soname,$(SONAME) --print native-static-libs 2> $(RUSTC_LOG); \
		status=$$?; cat $(RUSTC_LOG) >&2; exit $$status
	$(CARGO) build --release $(addprefix --bin ,$(HELPERS)) --target-dir $(INSTALL_TARGET_DIR)
	readelf -d $(INSTALL_OUT)/libmpsupervisor.so | grep -q 'SONAME.*\[$(SONAME)\]' || \
		{ echo "$(INSTALL_OUT)/libmpsupervisor.so lacks SONAME $(SONAME)" >&2; exit 1; }

install: install-build
	$(INSTALL) -d "$(DESTDIR)$(INCLUDEDIR)" "$(DESTDIR)$(LIBDIR)" "$(DESTDIR)$(PKGCONFIGDIR)"
	$(INSTALL) -m 644 include/mpsupervisor.h "$(DESTDIR)$(INCLUDEDIR)/mpsupervisor.h"
	$(INSTALL) -m 755 $(INSTALL_OUT)/libmpsupervisor.so "$(DESTDIR)$(LIBDIR)/$(REALNAME)"
	ln -sfn $(REALNAME) "$(DESTDIR)$(LIBDIR)/$(SONAME)"
	ln -sfn $(SONAME) "$(DESTDIR)$(LIBDIR)/libmpsupervisor.so"
	$(INSTALL) -m 644 $(INSTALL_OUT)/libmpsupervisor.a "$(DESTDIR)$(LIBDIR)/libmpsupervisor.a"
	$(INSTALL) -d "$(DESTDIR)$(HELPERDIR)"
	$(INSTALL) -m 755 $(addprefix $(INSTALL_OUT)/,$(HELPERS)) "$(DESTDIR)$(HELPERDIR)/"
	libs=$$(sed -n 's/^note: native-static-libs: *//p' $(RUSTC_LOG) | tail -n 1); \
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' \
		-e 's|@VERSION@|$(VERSION)|' -e 's|@DESCRIPTION@|$(DESCRIPTION)|' \
		-e "s|@LIBS_PRIVATE@|$${libs:-$(FALLBACK_NATIVE_STATIC_LIBS)}|" \
		mpsupervisor.pc.in > "$(DESTDIR)$(PKGCONFIGDIR)/mpsupervisor.pc"
	chmod 644 "$(DESTDIR)$(PKGCONFIGDIR)/mpsupervisor.pc"

uninstall:
	rm -f "$(DESTDIR)$(INCLUDEDIR)/mpsupervisor.h" "$(DESTDIR)$(LIBDIR)/$(REALNAME)" \
		"$(DESTDIR)$(LIBDIR)/$(SONAME)" "$(DESTDIR)$(LIBDIR)/libmpsupervisor.so" \
		"$(DESTDIR)$(LIBDIR)/libmpsupervisor.a" "$(DESTDIR)$(PKGCONFIGDIR)/mpsupervisor.pc" \
		$(addprefix "$(DESTDIR)$(HELPERDIR)"/,$(HELPERS))
	-rmdir "$(DESTDIR)$(HELPERDIR)" 2>/dev/null

clean:
	$(CARGO) clean
	rm -rf $(BUILD)
