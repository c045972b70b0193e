# mpsupervisor: build the library, the C examples, and run the demo.
#
#   make lib          cargo build (release by default)
#   make c-examples   build/demo_host, build/example_worker, build/shell_worker.sh
#   make demo         run the demo host for 3 seconds
#   make test         the test suite
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
LDLIBS := -L$(LIB_DIR) -lmpsupervisor -Wl,-rpath,$(abspath $(LIB_DIR))

C_EXAMPLES := $(BUILD)/demo_host $(BUILD)/example_worker $(BUILD)/shell_worker.sh

.PHONY: all lib c-examples demo demo-crash test test-rust test-python test-valgrind test-asan clean FORCE

all: lib c-examples

lib: $(LIB)

# Cargo knows whether the library is up to date; make only sees the file's time,
# so the C programs are relinked only when cargo really rebuilt it.
$(LIB): FORCE
	$(CARGO) build $(CARGO_PROFILE_FLAGS)

c-examples: $(C_EXAMPLES)

$(BUILD)/%: c_examples/%.c include/mpsupervisor.h $(LIB) | $(BUILD)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LDFLAGS) $(LDLIBS)

$(BUILD)/shell_worker.sh: c_examples/shell_worker.sh | $(BUILD)
	cp $< $@
	chmod +x $@

$(BUILD):
	mkdir -p $@

demo: lib c-examples
	./$(BUILD)/demo_host --seconds 3

# A worker that crashes every 300 ms, respawned with backoff until the group fails.
demo-crash: lib c-examples
	./$(BUILD)/demo_host c_examples/crash_demo.json crashy --seconds 3

# Every test: Rust unit and integration tests (they build and run the C programs), the Python
# bindings against the debug library, the C examples under valgrind, and under ASan/UBSan.
test: test-rust test-python test-valgrind test-asan
	@echo "test suites: 4 passed, 0 failed"

test-rust:
	$(CARGO) build
	$(CARGO) test

test-python:
	$(CARGO) build
	MPSUPERVISOR_LIBRARY=$(abspath target/debug/libmpsupervisor.so) python3 -m pytest -q bindings/python/tests

# valgrind does not know pidfd_open, so this run also covers the polling fallback.
test-valgrind:
	$(MAKE) --no-print-directory PROFILE=debug BUILD=$(BUILD)/debug c-examples
	valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
		./$(BUILD)/debug/demo_host --seconds 0.5 > /dev/null

# The C programs instrumented with AddressSanitizer and UBSan (the Rust library is not); this
# run uses pidfds. The nm check proves the sanitizer really got linked.
test-asan:
	$(CARGO) build
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

clean:
	$(CARGO) clean
	rm -rf $(BUILD)
