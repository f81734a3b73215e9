# vdlvm — see README.md.  `make demo` and `make check` do all set-up.
PREFIX    ?= /usr/local
BINDIR    ?= $(PREFIX)/bin
TGT_BSDIR ?= /usr/lib/tgt/backing-store
MANDIR    ?= $(PREFIX)/share/man
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
# systemd reads units from /usr/local/lib/systemd/system too; the package
# uses /lib/systemd/system (Debian 12).
SYSTEMDDIR ?= $(PREFIX)/lib/systemd/system
DESTDIR   ?=

B         ?= build
CC        ?= gcc
CXX       ?= g++
WARN      := -Wall -Wextra -Werror -Wno-unused-parameter
CFLAGS    ?= -O2 -g
CXXFLAGS  ?= -O2 -g
ifeq ($(SANITIZE),1)
B         := build-asan
SANFLAGS  := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
endif
# `vdlvm --version`: the tgt the module is built against (its headers come
# from the source of exactly the installed version).
TGT_VERSION ?= $(shell dpkg-query -W -f='$${Version}' tgt 2>/dev/null)
# CPPFLAGS and LDFLAGS: dpkg-buildflags' hardening when built by debian/rules.
ALL_CFLAGS   = -std=gnu11 -D_GNU_SOURCE -fPIC -fvisibility=hidden $(WARN) $(CPPFLAGS) $(CFLAGS) \
               $(SANFLAGS) -DVD_TGT_VERSION='"$(TGT_VERSION)"'
ALL_CXXFLAGS = -std=gnu++17 -D_GNU_SOURCE $(WARN) $(CXXFLAGS) $(SANFLAGS)
LIBS      := -liscsi -lrbd -lrados -lyaml -lcrypto -lblkid -luring -lpthread

# bs_vdlvm.so registers only in the tgtd it was built for (this build ID).
TGTD_BUILD_ID ?= $(shell readelf -n /usr/sbin/tgtd 2>/dev/null | sed -n 's/.*Build ID: //p')
# tgt headers: Debian source package of exactly the installed tgt version.
TGT_SRC   ?= $(B)/../build/tgt-src

LIB_SRCS  := $(wildcard pool/*.c config/*.c replica/*.c admin/*.c)
LIB_OBJS  := $(LIB_SRCS:%.c=$(B)/%.o)
BS_SRCS   := $(wildcard tgt-backend/*.c)
BS_OBJS   := $(BS_SRCS:%.c=$(B)/%.o)
UNIT_SRCS := $(wildcard tests/unit/*/*_test.cc)
UNIT_OBJS := $(UNIT_SRCS:%.cc=$(B)/%.o)

LIBVD     := $(B)/libvdlvm.a
VDLVM     := $(B)/vdlvm
VDLOAD    := $(B)/vdload
BSMOD     := $(B)/backing-store/bs_vdlvm.so
UNIT      := $(B)/unit-tests
SIM_SRCS  := $(wildcard tests/sim/*.c)
SIM_OBJS  := $(SIM_SRCS:%.c=$(B)/%.o)
VDSIM     := $(B)/vdsim
# The fault simulator (tests/sim/, docs/sim.md) runs the library's threads
# as green threads: every lock, condition, sleep and clock call the library
# makes, and its device opening, go to the simulator's wrappers.
SIM_WRAP  := pthread_mutex_lock pthread_mutex_trylock pthread_mutex_unlock \
             pthread_mutex_timedlock pthread_mutex_destroy \
             pthread_rwlock_rdlock pthread_rwlock_wrlock \
             pthread_rwlock_tryrdlock pthread_rwlock_trywrlock \
             pthread_rwlock_timedrdlock pthread_rwlock_timedwrlock \
             pthread_rwlock_unlock pthread_rwlock_init pthread_rwlock_destroy \
             pthread_cond_init pthread_cond_destroy pthread_cond_wait \
             pthread_cond_timedwait pthread_cond_clockwait \
             pthread_cond_signal pthread_cond_broadcast \
             pthread_create pthread_join pthread_detach pthread_self \
             sched_yield usleep nanosleep clock_nanosleep sleep \
             clock_gettime time gettimeofday vd_bdev_open
comma     := ,
# make check-sim: the regression seeds, then SIM_COUNT random schedules;
# make soak SEEDS=N [SOAK_START=S] [JOBS=J]: more of them.
SIM_COUNT ?= 10000
SEEDS     ?= 100000
SOAK_START?= 1000000
JOBS      ?= 2

.PHONY: all lib deps tgt-src check check-unit check-asan check-integration \
        check-conformance check-sim soak install uninstall uninstall-all \
        clean demo demo-stop bench bench-snap format deb fuzz fuzz-build fuzz-regress \
        check-fuzz
all: $(LIBVD) $(VDLVM) $(VDLOAD) $(BSMOD)
lib: $(LIBVD)

deps:
	@tools/install-deps.sh

tgt-src: build/tgt-src/.stamp
# Re-fetched when tgt is upgraded (dpkg rewrites its file list).
build/tgt-src/.stamp: tools/fetch-tgt-src.sh $(wildcard /var/lib/dpkg/info/tgt.list)
	tools/fetch-tgt-src.sh build/tgt-src

$(B)/%.o: %.c $(wildcard */*.h)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(B)/tgt-backend/%.o: tgt-backend/%.c $(wildcard */*.h) build/tgt-src/.stamp
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Wno-sign-compare -Wno-missing-field-initializers \
	    -fno-strict-aliasing -DVD_TGTD_BUILD_ID='"$(TGTD_BUILD_ID)"' \
	    -I$(TGT_SRC)/usr -c -o $@ $<

$(B)/%.o: %.cc $(wildcard */*.h) $(wildcard tests/unit/*.h)
	@mkdir -p $(dir $@)
	$(CXX) $(ALL_CXXFLAGS) -I. -c -o $@ $<

$(LIBVD): $(LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(VDLVM): $(B)/tools/vdlvm.o $(LIBVD)
	$(CC) $(SANFLAGS) $(LDFLAGS) -o $@ $^ $(LIBS)

$(VDLOAD): $(B)/tools/vdload.o
	$(CC) $(SANFLAGS) $(LDFLAGS) -o $@ $^ -liscsi -lcrypto -lpthread -lm

$(BSMOD): $(BS_OBJS) $(LIBVD) tgt-backend/bs_vdlvm.syms
	@mkdir -p $(dir $@)
	$(CC) -shared $(LDFLAGS) -Wl,--version-script=tgt-backend/bs_vdlvm.syms -Wl,-z,defs \
	    -Wl,--unresolved-symbols=ignore-in-object-files \
	    -o $@ $(BS_OBJS) $(LIBVD) $(LIBS) -liscsi

$(UNIT): $(UNIT_OBJS) $(LIBVD)
	$(CXX) $(SANFLAGS) -o $@ $^ -lgtest -lgtest_main $(LIBS)

check-unit: $(UNIT)
	$(UNIT)

$(VDSIM): $(SIM_OBJS) $(LIBVD)
	$(CC) $(SANFLAGS) -no-pie -o $@ $(SIM_OBJS) $(LIBVD) \
	    $(addprefix -Wl$(comma)--wrap=,$(SIM_WRAP)) $(LIBS)

check-sim: $(VDSIM)
	$(VDSIM) --regress tests/sim/regress-pool.seeds --count 0 -j $(JOBS)
	$(VDSIM) --regress tests/sim/regress.seeds --count $(SIM_COUNT) -j $(JOBS)

soak: $(VDSIM)
	$(VDSIM) --start $(SOAK_START) --count $(SEEDS) -j $(JOBS)

# AddressSanitizer + UndefinedBehaviorSanitizer build of library and unit tests.
check-asan:
	$(MAKE) SANITIZE=1 check-unit

check-integration: all
	tests/run-integration.sh $(B)

check-conformance: all
	tests/conformance/run.sh $(B)

check: deps
	$(MAKE) all
	$(MAKE) check-unit
	$(MAKE) check-sim
	$(MAKE) check-asan
	$(MAKE) check-fuzz
	$(MAKE) check-integration
	$(MAKE) check-conformance

# libFuzzer harnesses (tests/fuzz/, docs/fuzz.md): fuzz-regress runs every
# harness over its committed inputs; fuzz [FUZZ_SECONDS=N].  check-fuzz:
# both, the fuzzing 10 s per harness from a fixed seed.
fuzz fuzz-build fuzz-regress: tgt-src
	$(MAKE) -f tests/fuzz/Makefile $@

check-fuzz: tgt-src
	$(MAKE) -f tests/fuzz/Makefile fuzz-regress
	$(MAKE) -f tests/fuzz/Makefile fuzz FUZZ_SECONDS=10 FUZZ_SEED=1

bench: deps
	$(MAKE) all
	tests/bench/run.sh $(B)
	tests/bench/rbd.sh $(B) || [ $$? = 77 ]
	BUILD=$(B) TIER_REPORT=bench/results/tier-latest.md tests/bench/tier.sh --runs 3 --time 3 || [ $$? = 77 ]

# the snapshot benchmark (issue 11): bench/results/snap-*.md
bench-snap: deps
	$(MAKE) all
	tests/bench/snap.sh $(B)

demo: deps
	$(MAKE) all
	$(MAKE) install
	tools/demo.sh start

demo-stop:
	tools/demo.sh stop

# Files installed besides the programs and the module (make uninstall
# removes them too).
INST_FILES = $(MANDIR)/man8/vdlvm.8 $(MANDIR)/man1/vdload.1 \
             $(MANDIR)/man5/vdlvm.yaml.5 $(BASHCOMPDIR)/vdlvm \
             $(SYSTEMDDIR)/vdlvm-activate.service \
             $(SYSTEMDDIR)/tgt.service.d/vdlvm.conf

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(TGT_BSDIR)
	install -m 0755 $(VDLVM) $(DESTDIR)$(BINDIR)/vdlvm
	install -m 0755 $(VDLOAD) $(DESTDIR)$(BINDIR)/vdload
	install -m 0644 $(BSMOD) $(DESTDIR)$(TGT_BSDIR)/bs_vdlvm.so
	install -d $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 \
	    $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(BASHCOMPDIR) \
	    $(DESTDIR)$(SYSTEMDDIR)/tgt.service.d
	install -m 0644 docs/man/vdlvm.8 $(DESTDIR)$(MANDIR)/man8/vdlvm.8
	install -m 0644 docs/man/vdload.1 $(DESTDIR)$(MANDIR)/man1/vdload.1
	install -m 0644 docs/man/vdlvm.yaml.5 $(DESTDIR)$(MANDIR)/man5/vdlvm.yaml.5
	install -m 0644 contrib/bash-completion/vdlvm $(DESTDIR)$(BASHCOMPDIR)/vdlvm
	sed 's|@BINDIR@|$(BINDIR)|g' systemd/vdlvm-activate.service.in \
	    > $(DESTDIR)$(SYSTEMDDIR)/vdlvm-activate.service   # names the installed vdlvm
	chmod 0644 $(DESTDIR)$(SYSTEMDDIR)/vdlvm-activate.service
	install -m 0644 systemd/tgt.service.d/vdlvm.conf \
	    $(DESTDIR)$(SYSTEMDDIR)/tgt.service.d/vdlvm.conf
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then \
	    systemctl daemon-reload || true; fi

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/vdlvm $(DESTDIR)$(BINDIR)/vdload \
	      $(DESTDIR)$(TGT_BSDIR)/bs_vdlvm.so $(addprefix $(DESTDIR),$(INST_FILES))
	-rmdir $(DESTDIR)$(SYSTEMDDIR)/tgt.service.d 2>/dev/null
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then \
	    systemctl daemon-reload || true; fi

# Everything vdlvm put on the machine (see tools/uninstall-all.sh), then the
# man pages, completion and systemd files of make install.
uninstall-all:
	FORCE=$(FORCE) tools/uninstall-all.sh $(DESTDIR)$(BINDIR) $(DESTDIR)$(TGT_BSDIR)
	$(MAKE) --no-print-directory uninstall

# The Debian package vdlvm, built with dpkg-buildpackage from a copy of
# this tree (debian/ and the .deb stay out of the checkout) against the
# tgt source of exactly the installed tgt (build/tgt-src); the packages
# land in build/deb/.  Its Depends pins that tgt version (debian/rules).
DEB_DIR := build/deb
deb: build/tgt-src/.stamp
	rm -rf $(DEB_DIR)
	mkdir -p $(DEB_DIR)/src/vdlvm
	tar -c --exclude=./build --exclude=./build-asan --exclude=./.git \
	    --exclude='*.o' . | tar -x -C $(DEB_DIR)/src/vdlvm
	mkdir -p $(DEB_DIR)/src/vdlvm/build
	ln -s "$$(readlink -f build/tgt-src)" $(DEB_DIR)/src/vdlvm/build/tgt-src
	cd $(DEB_DIR)/src/vdlvm && dpkg-buildpackage -b -us -uc -j2 \
	    > ../build.log 2>&1 || { tail -n 40 ../build.log; exit 1; }
	mv $(DEB_DIR)/src/*.deb $(DEB_DIR)/src/*.changes $(DEB_DIR)/src/*.buildinfo $(DEB_DIR)/
	mv $(DEB_DIR)/src/build.log $(DEB_DIR)/
	rm -rf $(DEB_DIR)/src
	@echo "built: $$(ls $(DEB_DIR)/*.deb)"

format:
	clang-format -i $(LIB_SRCS) $(BS_SRCS) tools/*.c */*.h

clean:
	rm -rf build/vdlvm build/vdload build/vdsim build/*.a build/pool build/config \
	       build/replica build/admin build/tools build/tgt-backend build/tests \
	       build/backing-store build/deb build/fuzz build-asan
