# Enviromon build. `make` builds ./handler, ./devhost, ./simulator and the dashboard's vendor/ folder; `make test` installs dependencies, builds and
# runs every test; `make asan` runs the same tests under AddressSanitizer + UBSan; `make fuzz` builds
# the libFuzzer targets with clang and runs each for FUZZ_SECONDS (docs/reliability.md).
# `make package` builds dist/enviromon.zip for Azure (a handler that runs on the Functions
# Linux images), `make check-package` proves it there, `make publish APP=...` deploys it
# (tools/package/, docs/deploy.md; the first two need root).
#
# Layout: every .c under src/ except the program entry points (src/*/main.c) goes into
# build/<variant>/libenviromon.a; each tests/unit/test_*.c and tests/integration/test_*.c is
# its own cmocka binary linked against that library. New modules need no Makefile change.

PKGS      := libmicrohttpd libcjson libcurl openssl
CC        ?= cc
CSTD      := -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE
WARN      := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes
OPT       ?= -O2 -g
VARIANT   ?= release
SAN       ?=
BUILD     := build/$(VARIANT)

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CFLAGS    += $(CSTD) $(WARN) $(OPT) $(SAN) -Isrc $(PKG_CFLAGS) -MMD -MP
LDLIBS    += $(PKG_LIBS) -lpthread -lm
LDFLAGS   += $(SAN)

LIB_SRCS  := $(filter-out src/%/main.c,$(shell find src -name '*.c' | sort))
LIB_OBJS  := $(LIB_SRCS:%.c=$(BUILD)/%.o)
LIB       := $(BUILD)/libenviromon.a

PROGRAMS  := handler $(if $(wildcard src/devhost/main.c),devhost) $(if $(wildcard src/simulator/main.c),simulator)

UNIT_SRCS := $(wildcard tests/unit/test_*.c)
INTEG_SRCS:= $(wildcard tests/integration/test_*.c)
TEST_SUPPORT := $(wildcard tests/lib/*.c)
TOOL_SRCS := $(wildcard tests/tools/*.c)
TEST_BINS := $(UNIT_SRCS:%.c=$(BUILD)/%) $(INTEG_SRCS:%.c=$(BUILD)/%) $(TOOL_SRCS:%.c=$(BUILD)/%)

# The dashboard's browser libraries, copied from dashboard/node_modules (npm ci of
# dashboard/package-lock.json, run by `make deps`) into dashboard/vendor/ (gitignored), so that
# the page is plain static files: no bundler, no CDN.
DASH_NPM    := dashboard/node_modules
DASH_VENDOR := $(addprefix dashboard/vendor/,signalr.min.js signalr.min.js.map uPlot.iife.min.js uPlot.min.css)

# libFuzzer targets (tests/fuzz/fuzz_*.c): the library is built with clang into build/fuzz/
# with coverage instrumentation, ASan and UBSan; each target links libFuzzer's main.
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS := $(FUZZ_SRCS:%.c=$(BUILD)/%)
FUZZ_SECONDS ?= 60
FUZZ_JOBS ?= 1
FUZZ_VARIANT := VARIANT=fuzz CC=clang OPT="-O1 -g -fno-omit-frame-pointer" \
    SAN="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all"

.PHONY: all deps test test-build test-build-asan asan clean bench valgrind run package check-package publish fuzz fuzz-build test-run \
        faults load soak

all: $(PROGRAMS) $(DASH_VENDOR)

# Programs are built per variant and copied to the repository root for the release build
# (host.json names ./handler). The copy replaces the file by renaming (cp onto a program that is
# running, e.g. under `make run`, fails with "Text file busy").
handler: $(BUILD)/handler
	cp $< $@.tmp && mv -f $@.tmp $@
devhost: $(BUILD)/devhost
	cp $< $@.tmp && mv -f $@.tmp $@
simulator: $(BUILD)/simulator
	cp $< $@.tmp && mv -f $@.tmp $@
# The entry points' objects are intermediate files of the link rule below: kept, or the first
# build would delete them and the next `make` (which then knows them from their .d files)
# would compile and link every program again.
.SECONDARY: $(PROGRAMS:%=$(BUILD)/src/%/main.o)

dashboard/vendor/signalr%: $(DASH_NPM)/@microsoft/signalr/dist/browser/signalr%
	@mkdir -p $(dir $@)
	cp $< $@
dashboard/vendor/uPlot%: $(DASH_NPM)/uplot/dist/uPlot%
	@mkdir -p $(dir $@)
	cp $< $@
$(DASH_NPM)/%:
	@echo "$@ is missing: run 'make deps' (npm ci in dashboard/)" >&2; exit 1

# Only the simulator speaks MQTT: libmosquitto is linked into it (and its tests), not the
# handler or devhost.
MOSQ_LIBS := $(shell pkg-config --libs libmosquitto 2>/dev/null || echo -lmosquitto)
$(BUILD)/simulator: LDLIBS += $(MOSQ_LIBS)
$(BUILD)/tests/unit/test_sim_%: LDLIBS += $(MOSQ_LIBS)

$(BUILD)/%: $(BUILD)/src/%/main.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $(filter %.o %.a,$^) $(LDLIBS)

$(LIB): $(LIB_OBJS)
	@rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/tests/%: tests/%.c $(TEST_SUPPORT:%.c=$(BUILD)/%.o) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/lib $(LDFLAGS) -o $@ $(filter %.c %.o %.a,$^) $(LDLIBS) -lcmocka

# (the shorter stem wins over the rule above)
$(BUILD)/tests/fuzz/%: tests/fuzz/%.c $(wildcard tests/fuzz/*.h) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -fsanitize=fuzzer -o $@ $(filter %.c %.a,$^) $(LDLIBS)

deps:
	@./tools/deps.sh

# Build the test binaries and programs of one variant (release or asan).
test-build: $(PROGRAMS) $(TEST_BINS) $(DASH_VENDOR)

test: deps
	@$(MAKE) --no-print-directory test-build
	@./tests/run.sh $(BUILD)

asan: deps
	@$(MAKE) --no-print-directory VARIANT=asan OPT="-O1 -g -fno-omit-frame-pointer" \
	    SAN="-fsanitize=address,undefined -fno-sanitize-recover=all" test-build-asan

test-build-asan: $(TEST_BINS) $(PROGRAMS:%=$(BUILD)/%) $(DASH_VENDOR)
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    ./tests/run.sh $(BUILD)

# Every fuzz target for FUZZ_SECONDS seconds each (FUZZ_TARGETS="sas jwt" for some, FUZZ_JOBS=2
# for two at a time), after replaying its committed corpus; figures in build/fuzz/summary.md
# (see tests/fuzz/run.sh and docs/reliability.md).
fuzz: deps
	@$(MAKE) --no-print-directory $(FUZZ_VARIANT) fuzz-build
	@FUZZ_JOBS=$(FUZZ_JOBS) ./tests/fuzz/run.sh build/fuzz $(FUZZ_SECONDS) $(FUZZ_TARGETS)

fuzz-build: $(FUZZ_BINS)

valgrind: deps
	@$(MAKE) --no-print-directory test-build
	@VALGRIND=1 ./tests/run.sh $(BUILD)

bench: deps all
	@./bench/run.sh

# Reliability runs through the whole local stack (tests/reliability/, docs/reliability.md); not
# part of `make test`. faults: each fault during a 20,000-message run (FAULTS="handler devhost"
# picks some; `disk` needs root for its tmpfs); load: 200 devices x 500 messages; soak: an hour
# at 500 messages/s. Extra arguments: FAULT_ARGS, LOAD_ARGS, SOAK_ARGS.
faults: deps
	@$(MAKE) --no-print-directory test-build
	@node tests/reliability/faults.mjs $(FAULTS) $(FAULT_ARGS)

load: deps
	@$(MAKE) --no-print-directory test-build
	@node tests/reliability/load.mjs $(LOAD_ARGS)

soak: deps
	@$(MAKE) --no-print-directory test-build
	@node tests/reliability/soak.mjs $(SOAK_ARGS)

# The whole local stack: Azurite, devhost start (handler, dashboard, local IoT Hub, SignalR
# Service) and the simulator; Ctrl-C stops it. Variables DEVICES, TRANSPORT, PORT, ...: tools/run.sh.
run: deps
	@$(MAKE) --no-print-directory -j$$(nproc 2>/dev/null || echo 2) all
	@./tools/run.sh

# `make run` from a clean clone, in a browser, stopped with Ctrl-C and started again
# (tests/stack/; a few minutes: the clone builds from scratch). Run by .ci/run after `make test`.
test-run: deps
	@node --test --test-timeout=1800000 tests/stack/

# The deployable package: built in cached Debian roots outside the repository
# ($$ENVIROMON_CACHE, default ~/.cache/enviromon); see tools/package/build.sh.
package:
	@./tools/package/package.sh

check-package: deps
	@./tools/package/check.sh

publish:
	@FUNC="$(FUNC)" AZ="$(AZ)" RG="$(RG)" PUBLISH_ARGS="$(PUBLISH_ARGS)" ./tools/package/publish.sh "$(APP)"

clean:
	rm -rf build handler devhost simulator handler.tmp devhost.tmp simulator.tmp dashboard/vendor dist

-include $(shell find build -name '*.d' 2>/dev/null)
