# libguard: a plain Makefile. `make` builds, `make test` runs every test, `make demo` runs the
# example service under guardrun, `make bench` runs the benchmarks.
#
#   make SANITIZER=address|undefined|thread   unit tests and tools with a sanitizer (the injected
#                                             library itself is never built with one)
#   make WERROR=1                             warnings are errors (CI)

CC ?= cc
PREFIX ?= /usr/local
SANITIZER ?=
WERROR ?=

BUILD := build
OBJ := $(BUILD)/obj
SANOBJ := $(BUILD)/san-$(or $(SANITIZER),none)

WARN := -Wall -Wextra -Wstrict-prototypes -Wshadow -Wundef -Wpointer-arith -Wcast-align \
	-Wwrite-strings -Wmissing-prototypes -Wno-missing-field-initializers \
	-Wno-format-truncation
ifneq ($(WERROR),)
WARN += -Werror
endif

PKGS := libunwind jemalloc libcjson
DEP_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)

CFLAGS ?= -O2 -g
BASE_CFLAGS := -std=gnu11 -D_GNU_SOURCE -fPIC -I. $(WARN) -MMD -MP \
	-fvisibility=hidden -ftls-model=initial-exec -fno-omit-frame-pointer \
	-fno-strict-aliasing
ALL_CFLAGS = $(BASE_CFLAGS) $(DEP_CFLAGS) $(CFLAGS)

# jemalloc is linked even though no symbol may look needed at link time: allocation forwards to it.
LIB_LIBS := -Wl,--no-as-needed -ljemalloc -Wl,--as-needed -lunwind -lcjson -lz -ldl -lpthread -lm

CORE_SRC := $(wildcard libguard/*.c libguard/report/*.c) $(filter-out policy/main.c,$(wildcard policy/*.c))
HOOK_SRC := $(wildcard hooks/*.c)
CORE_OBJ := $(patsubst %.c,$(OBJ)/%.o,$(CORE_SRC)) $(OBJ)/policy/default_policy.o
HOOK_OBJ := $(patsubst %.c,$(OBJ)/%.o,$(HOOK_SRC))

# Unit tests link the core (not the hooks), optionally with a sanitizer.
SAN_FLAGS := $(if $(SANITIZER),-fsanitize=$(SANITIZER) -fno-sanitize-recover=all,)
SAN_CORE_OBJ := $(patsubst %.c,$(SANOBJ)/%.o,$(CORE_SRC)) $(SANOBJ)/policy/default_policy.o
UNIT_SRC := $(wildcard tests/unit/test_*.c)
TESTDIR := $(BUILD)/tests$(if $(SANITIZER),-$(SANITIZER),)
UNIT_BIN := $(patsubst tests/unit/%.c,$(TESTDIR)/%,$(UNIT_SRC))
TEST_LIBS := $(shell pkg-config --libs cmocka 2>/dev/null || echo -lcmocka)

TOOLS := $(BUILD)/guardrun $(BUILD)/guard-report
EXAMPLES := $(BUILD)/examples/service

.PHONY: all deps test-deps test unit sanunit integration demo bench install clean lint
# Objects reached only through pattern rules are not intermediate files to delete after a build.
.SECONDARY:
all: deps $(BUILD)/libguard.so $(BUILD)/libguard.a $(TOOLS) $(BUILD)/libguard.pc $(EXAMPLES)

deps:
	@./tools/install-deps.sh build

test-deps: deps
	@./tools/install-deps.sh test

$(OBJ)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(SANOBJ)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(SAN_FLAGS) -c $< -o $@

# The default policy is embedded byte for byte with .incbin: one source of truth, no generator.
$(OBJ)/policy/default_policy.o $(SANOBJ)/policy/default_policy.o: policy/default_policy.S policy/default.json
	@mkdir -p $(dir $@)
	$(CC) -c -I. $< -o $@

$(BUILD)/libguard.so: $(CORE_OBJ) $(HOOK_OBJ)
	$(CC) -shared -Wl,--no-undefined -Wl,-soname,libguard.so -Wl,-z,nodelete -Wl,-z,now -o $@ $^ $(LIB_LIBS)

$(BUILD)/libguard.a: $(CORE_OBJ) $(HOOK_OBJ)
	@rm -f $@
	ar rcs $@ $^

# What embeds PREFIX is rebuilt when PREFIX changes (`make install PREFIX=X` after a plain `make`):
# the stamp is rewritten only when its content differs, so an unchanged PREFIX rebuilds nothing.
$(BUILD)/prefix.stamp: FORCE
	@mkdir -p $(BUILD); echo '$(PREFIX)' | cmp -s - $@ || echo '$(PREFIX)' > $@
.PHONY: FORCE

$(BUILD)/libguard.pc: libguard.pc.in $(BUILD)/prefix.stamp
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(shell sed -n 's/^#define LG_VERSION "\(.*\)"/\1/p' libguard/internal.h)|g' $< > $@

# guardrun links only the policy parser: it is never loaded into a host, and must not boot a guard.
SAN_POLICY_OBJ := $(filter $(SANOBJ)/policy/%,$(SAN_CORE_OBJ))
$(BUILD)/guardrun: tools/guardrun.c $(SAN_POLICY_OBJ) $(BUILD)/prefix.stamp
	$(CC) $(ALL_CFLAGS) $(SAN_FLAGS) -DLG_PREFIX='"$(PREFIX)"' $< $(SAN_POLICY_OBJ) -o $@ -lcjson -lm

$(BUILD)/guard-report: tools/guard-report.c $(wildcard tools/report_*.c)
	$(CC) $(ALL_CFLAGS) $(SAN_FLAGS) $(filter %.c,$^) -o $@ -lcjson -lm

$(TESTDIR)/%: tests/unit/%.c $(SAN_CORE_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(SAN_FLAGS) $< $(SAN_CORE_OBJ) -o $@ $(LIB_LIBS) $(TEST_LIBS)

# Build the unit tests only (used by tests/run-all.sh with SANITIZER=...).
sanunit: $(UNIT_BIN)

unit: deps $(UNIT_BIN)
	@./tests/run-unit.sh $(UNIT_BIN)

integration: all
	@./tests/integration/run.sh

# Everything a fresh Debian machine needs is installed first; the summary line is the last one.
test: test-deps all $(UNIT_BIN)
	@./tests/run-all.sh $(UNIT_BIN)

$(BUILD)/examples/%: examples/%.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -O2 -g -Wall -Wextra $< -o $@ -lpthread

demo: all $(EXAMPLES)
	@./examples/demo.sh

bench: all
	@./bench/run.sh

install: all
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/bin \
		$(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 0755 $(BUILD)/libguard.so $(DESTDIR)$(PREFIX)/lib/libguard.so
	install -m 0644 $(BUILD)/libguard.a $(DESTDIR)$(PREFIX)/lib/libguard.a
	install -m 0644 libguard/guard.h $(DESTDIR)$(PREFIX)/include/guard.h
	install -m 0755 $(BUILD)/guardrun $(BUILD)/guard-report $(DESTDIR)$(PREFIX)/bin/
	install -m 0644 $(BUILD)/libguard.pc $(DESTDIR)$(PREFIX)/lib/pkgconfig/libguard.pc

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
