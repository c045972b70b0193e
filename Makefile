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

.PHONY: all lib c-examples demo test clean FORCE

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

test:
	$(CARGO) test

clean:
	$(CARGO) clean
	rm -rf $(BUILD)
