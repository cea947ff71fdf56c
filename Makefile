# hookring: one non-recursive Makefile.
#
#   make            build build/hookring, build/hookring-harness, tests, benches
#   make deps       install missing Debian packages (and the npm verifiers for the tests)
#   make test       deps, build, run every suite plainly and under ASan+UBSan
#   make check      clang-format and cppcheck
#   make fuzz       build the libFuzzer targets into build/fuzz/
#   make fuzz-smoke run each fuzz target for FUZZ_SECONDS (default 30) under ASan+UBSan
#   make bench      run the benchmarks (bench/README.md)
#   make demo       deps, build, show the engine at work
#
# SAN=asan (AddressSanitizer + UBSan), SAN=ubsan, SAN=tsan build into build/$(SAN)/.

SAN ?=
ifeq ($(SAN),)
BUILD := build
else
BUILD := build/$(SAN)
endif

CC ?= gcc
FUZZ_CC ?= clang
comma := ,
BSSL_INC := /usr/include/android
BSSL_LIB := /usr/lib/x86_64-linux-gnu/android

OPT ?= -O2
CFLAGS_BASE := -std=gnu11 $(OPT) -g -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
	-Wno-unused-parameter -Wno-missing-field-initializers -D_GNU_SOURCE -pthread -I$(BSSL_INC) -Iengine -MMD -MP
LIBS := -L$(BSSL_LIB) -Wl,-rpath,$(BSSL_LIB) -lssl -lcrypto -luring -lcares -lpthread -lm
# The engine's allocator: mimalloc (Debian's libmimalloc, which replaces malloc when linked). A
# delivery allocates and frees a few small blocks (its flight state, its attempt history, the
# parsed event); with glibc's malloc they cost serve about 15% more CPU per event end to end
# (bench/ingest.sh). Not in sanitizer builds, whose runtimes bring their own allocator; the
# code knows by HOOKRING_MIMALLOC.
ifeq ($(SAN),)
ENGINE_MALLOC := -lmimalloc
MALLOC_DEFS := -DHOOKRING_MIMALLOC
endif

ifeq ($(SAN),asan)
SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
else ifeq ($(SAN),ubsan)
SANFLAGS := -fsanitize=undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
else ifeq ($(SAN),tsan)
SANFLAGS := -fsanitize=thread -fno-omit-frame-pointer
else ifneq ($(SAN),)
$(error SAN must be asan, ubsan or tsan)
endif

CFLAGS := $(CFLAGS_BASE) $(SANFLAGS) $(MALLOC_DEFS) $(EXTRA_CFLAGS)
LDFLAGS := $(SANFLAGS)

# --- sources -------------------------------------------------------------------------------
CLI_SRC := $(wildcard engine/cmd_*.c) engine/main.c
LIB_SRC := $(filter-out $(CLI_SRC),$(wildcard engine/*.c engine/sign/*.c))
HARNESS_SRC := $(wildcard harness/*.c)
TEST_SUPPORT_SRC := $(wildcard tests/support/*.c)
TEST_SRC := $(wildcard tests/test_*.c)
BENCH_SRC := $(wildcard bench/*.c)
FUZZ_SRC := $(wildcard fuzz/fuzz_*.c)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

LIB := $(BUILD)/libhookring.a
HOOKRING := $(BUILD)/hookring
HARNESS := $(BUILD)/hookring-harness
TESTS := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))
BENCHES := $(patsubst bench/%.c,$(BUILD)/bench/%,$(BENCH_SRC))
FUZZERS := $(patsubst fuzz/%.c,build/fuzz/%,$(FUZZ_SRC))

.SECONDARY:
.PHONY: all deps test test-plain test-asan check format fuzz fuzz-smoke bench demo clean

all: $(HOOKRING) $(if $(HARNESS_SRC),$(HARNESS)) $(TESTS) $(BENCHES)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(LIB): $(call obj,$(LIB_SRC))
	@mkdir -p $(dir $@)
	rm -f $@
	ar rcs $@ $^

$(HOOKRING): $(call obj,$(CLI_SRC)) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(ENGINE_MALLOC) $(LIBS)

$(HARNESS): $(call obj,$(HARNESS_SRC)) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

# BoringSSL's -lcrypto comes before -lcriterion so our calls bind to BoringSSL, not to the
# OpenSSL libcrypto.so.3 that libcriterion pulls in (see DESIGN.md).
$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(call obj,$(TEST_SUPPORT_SRC)) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS) -lcriterion 2>&1 | grep -v 'may conflict with libcrypto' >&2 || true
	@test -x $@

$(BUILD)/bench/%: $(BUILD)/obj/bench/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)

# --- dependencies ----------------------------------------------------------------------------
DEB_PKGS := make gcc clang libclang-rt-14-dev liburing-dev android-libboringssl-dev \
	libcriterion-dev libc-ares-dev libipsec-mb-dev libmimalloc-dev openssl ca-certificates clang-format cppcheck python3 wrk nginx-light redis-server redis-tools

deps:
	@missing=""; for p in $(DEB_PKGS); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	command -v node >/dev/null && command -v npm >/dev/null || missing="$$missing nodejs npm"; \
	if [ -n "$$missing" ]; then \
		echo "deps: installing$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "deps: all Debian packages present"; fi
	@if [ -f tests/verifiers/package.json ] && [ ! -d tests/verifiers/node_modules ]; then \
		echo "deps: installing the provider verifier libraries (npm)"; \
		cd tests/verifiers && npm install --no-audit --no-fund --loglevel=error; fi

# --- tests -----------------------------------------------------------------------------------
NPROC := $(shell nproc 2>/dev/null || echo 2)

test: deps
	$(MAKE) -j$(NPROC) all
	$(MAKE) -j$(NPROC) SAN=asan all
	$(MAKE) -j$(NPROC) SAN=tsan build/tsan/tests/test_dedup build/tsan/tests/test_xpool \
		build/tsan/tests/test_serve_workers build/tsan/hookring build/tsan/hookring-harness
	tests/run.sh build build/asan build/tsan

test-plain: all
	tests/run.sh $(BUILD)

# --- static checks ---------------------------------------------------------------------------
C_FILES = $(shell git ls-files '*.c' '*.h' 2>/dev/null || find engine harness tests bench fuzz -name '*.[ch]')

check:
	clang-format --dry-run -Werror $(C_FILES)
	cppcheck --quiet --error-exitcode=1 --enable=warning,portability --inline-suppr \
		--suppress=missingIncludeSystem -I engine -D__GNUC__ $(filter %.c,$(C_FILES))

format:
	clang-format -i $(C_FILES)

# --- fuzzing ---------------------------------------------------------------------------------
FUZZ_FLAGS := -std=gnu11 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	-D_GNU_SOURCE -DFUZZING -I$(BSSL_INC) -Iengine -pthread
FUZZ_SECONDS ?= 30

# The library is compiled once for every target (instrumented, without libFuzzer's main), then
# each target links its own harness against those objects.
FUZZ_LIB_FLAGS := $(subst -fsanitize=fuzzer$(comma),-fsanitize=fuzzer-no-link$(comma),$(FUZZ_FLAGS))
FUZZ_OBJ := $(patsubst %.c,build/fuzz/obj/%.o,$(LIB_SRC))

build/fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_LIB_FLAGS) -MMD -MP -c $< -o $@

build/fuzz/%: fuzz/%.c $(FUZZ_OBJ)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $< $(FUZZ_OBJ) $(LIBS)

-include $(shell find build/fuzz/obj -name '*.d' 2>/dev/null)

fuzz: $(FUZZERS)

fuzz-smoke: deps
	$(MAKE) -j$(NPROC) fuzz
	fuzz/smoke.sh $(FUZZ_SECONDS) $(FUZZERS)

# --- benchmarks and demo ---------------------------------------------------------------------
bench: all
	bench/run.sh $(BUILD)

demo: deps
	$(MAKE) all
	harness/demo.sh $(BUILD)

clean:
	rm -rf build
