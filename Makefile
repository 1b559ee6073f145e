# SwiftCCID — see README.md. `make demo` and `make test` do all their own set-up.
SHELL := /bin/bash
SWIFT ?= $(shell command -v swift 2>/dev/null || echo /opt/swift/usr/bin/swift)
PYTHON := /usr/bin/python3
VERSION := 0.1.0
BUILD := build
BUNDLE := $(BUILD)/ifd-swiftccid.bundle
SO := $(BUNDLE)/Contents/Linux/libswiftccid.so
SIM := $(BUILD)/ccid-sim
ATTACH := $(BUILD)/ccid-attach
# Debian packages the build, the demo and the tests use.
DEB_PACKAGES := pkg-config libpcsclite-dev pcscd pcsc-tools opensc python3-pyscard libccid util-linux mount \
  libusb-1.0-0-dev libudev-dev umockdev libumockdev-dev gir1.2-umockdev-1.0 python3-gi \
  libsystemd-dev systemd udev systemd-container debootstrap vsmartcard-vpicc python3-pip tshark scdaemon
# PyPI packages the tests use, each set in its own folder of $(PYDEPS) (not
# the system's Python): Debian's vicc needs PyCryptodome under the name
# `Crypto`, which no Debian package of bookworm or trixie provides; the
# OpenPGP card application's own `smartcard` package would hide pyscard's.
PYDEPS := $(BUILD)/pydeps
PYPI_VICC := pycryptodome==3.23.0
PYPI_OPENPGP := smartcard-app-openpgp==0.4.0 smartcard==0.3
# What `make deb` and `make rpm-check` need besides.
PACKAGING_PACKAGES := dpkg-dev debhelper lintian rpm rpmlint

.PHONY: all deps pydeps bundle sim attach demo fuzz fuzz-build fuzz-short sanitize soak test unit-test integration-test vm-test vm-bench bench corpus \
  install install-driver install-sim uninstall clean reader-list man deb rpm-check package-test

PREFIX ?= /usr/local
DESTDIR ?=
DRIVERDIR = $(shell pkg-config --variable=usbdropdir libpcsclite)
UDEVDIR = $(shell pkg-config --variable=udevdir udev)
UNITDIR = $(shell pkg-config --variable=systemdsystemunitdir systemd)
GENERATORDIR = $(shell pkg-config --variable=systemdsystemgeneratordir systemd)
LIBEXECDIR = $(PREFIX)/libexec/swiftccid
DOCDIR = $(PREFIX)/share/doc/swiftccid
MANDIR = $(PREFIX)/share/man
# Targets that build install the Debian packages they need first; a package
# build (debian/rules) sets DEPS= because there dpkg checks Build-Depends.
DEPS ?= deps

all: bundle sim attach

deps:
	@tools/apt-install.sh $(DEB_PACKAGES)
	@test "$$(pkg-config --cflags-only-I libpcsclite | xargs)" = "-I/usr/include/PCSC" || \
	  { echo "libpcsclite headers are not in /usr/include/PCSC (pkg-config says: $$(pkg-config --cflags-only-I libpcsclite | xargs))"; exit 1; }

# The IFD handler pcscd loads: Swift runtime linked statically, only IFDH* exported, no Foundation.
bundle: $(DEPS)
	$(SWIFT) build -c release --scratch-path .build-bundle --product swiftccid \
	  -Xswiftc -static-stdlib -Xlinker --version-script=$(CURDIR)/bundle/exports.map
	mkdir -p $(BUNDLE)/Contents/Linux
	install -m 0644 .build-bundle/release/libswiftccid.so $(SO)
	bundle/make-info-plist.sh bundle/Info.plist.in bundle/readers.txt $(VERSION) > $(BUNDLE)/Contents/Info.plist
	@if ldd $(SO) | grep -Ei 'swift|Foundation|pcsclite'; then echo "libswiftccid.so must not need these"; exit 1; fi

# Swift runtime linked statically here too, so an installed ccid-sim runs without the toolchain.
sim: $(DEPS)
	$(SWIFT) build -c release --product ccid-sim -Xswiftc -static-stdlib
	mkdir -p $(BUILD)
	ln -sf ../.build/release/ccid-sim $(SIM)

# The attach worker; Swift runtime static as for ccid-sim.
attach: $(DEPS)
	$(SWIFT) build -c release --product ccid-attach -Xswiftc -static-stdlib
	mkdir -p $(BUILD)
	ln -sf ../.build/release/ccid-attach $(ATTACH)
	sed -e 's|@LIBEXECDIR@|$(LIBEXECDIR)|' -e 's|@DOCDIR@|$(DOCDIR)|' udev/swiftccid-attach@.service.in > $(BUILD)/swiftccid-attach@.service

demo: bundle sim
	@tests/demo.sh $(SIM)

unit-test: deps
	$(SWIFT) test

integration-test: bundle sim attach deb rpm-check pydeps
	$(PYTHON) -m unittest discover -s tests -p 'test_*.py' -v

pydeps: $(DEPS)
	@test -f $(PYDEPS)/vicc/.installed || { $(PYTHON) -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
	  --target $(PYDEPS)/vicc $(PYPI_VICC) && touch $(PYDEPS)/vicc/.installed; }
	@test -f $(PYDEPS)/openpgp/.installed || { $(PYTHON) -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
	  --target $(PYDEPS)/openpgp $(PYPI_OPENPGP) && touch $(PYDEPS)/openpgp/.installed; }

# The real kernel's USB stack, udev, systemd and pcscd in a QEMU guest of each
# Debian release in RELEASES, with our Debian packages installed and
# ccid-sim's readers as USB gadgets (tests/vm_test.py, docs/vm-test.md).
# The guest images are cached in /var/tmp/swiftccid-vm (SWIFTCCID_VM_CACHE).
RELEASES ?= bookworm trixie
vm-test: deb
	@for release in $(RELEASES); do \
	  echo "== VM test: $$release"; \
	  SWIFTCCID_VM_RELEASE=$$release $(PYTHON) tests/vm_test.py || exit 1; \
	done

# The bench's real-kernel-USB part (tests/vm_bench.py): our direct and worker
# modes beside libccid on one gadget reader in the guest. Reported, not asserted.
vm-bench: deb
	SWIFTCCID_VM_RELEASE=$(firstword $(RELEASES)) $(PYTHON) tests/vm_bench.py

test: unit-test integration-test vm-test fuzz-short sanitize

# libFuzzer targets (Fuzz/ccid-fuzz, tools/fuzz.py): FUZZ_SECONDS per target.
FUZZ_SECONDS ?= 60
FUZZ_BIN := .build-fuzz/debug/ccid-fuzz
fuzz-build: deps
	SWIFTCCID_FUZZ=1 $(SWIFT) build --scratch-path .build-fuzz --product ccid-fuzz --sanitize fuzzer --sanitize address

fuzz: fuzz-build
	$(PYTHON) tools/fuzz.py $(FUZZ_BIN) --seconds $(FUZZ_SECONDS)

# What CI runs: every target briefly, regressions included.
fuzz-short: fuzz-build
	$(PYTHON) tools/fuzz.py $(FUZZ_BIN) --seconds 5

# Readers, clients, cards and plugs changing at random for SOAK_SECONDS (tests/soak.py).
SOAK_SECONDS ?= 120
soak: bundle sim
	$(PYTHON) tests/soak.py --seconds $(SOAK_SECONDS)

# The Swift test suite under AddressSanitizer (with LeakSanitizer) and ThreadSanitizer.
sanitize: deps
	$(SWIFT) build --build-tests --sanitize=address --scratch-path .build-asan
	LSAN_OPTIONS=suppressions=$(CURDIR)/tools/lsan.supp:print_suppressions=0 \
	  $(SWIFT) test --skip-build --sanitize=address --scratch-path .build-asan
	$(SWIFT) build --build-tests --sanitize=thread --scratch-path .build-tsan
	TSAN_OPTIONS=halt_on_error=1 $(SWIFT) test --skip-build --sanitize=thread --scratch-path .build-tsan

bench: bundle sim
	$(PYTHON) tests/bench.py --sim $(SIM)

# Every distinct descriptor of the reader corpus as a simulated reader through
# pcscd: relay with our driver, USB (umockdev) with ours and with libccid
# (tools/corpus.py; `make test` runs a fixed sample, tests/test_corpus_sample.py).
corpus: bundle sim
	$(PYTHON) tools/corpus.py --json $(BUILD)/corpus.json

# Nothing is started or restarted: pcscd reads bundles when it starts; udev
# starts attach workers for readers plugged in later (and only in worker mode).
# The two halves are the two binary packages (debian/, swiftccid.spec).
install: install-driver install-sim

install-driver: bundle attach
	install -d $(DESTDIR)$(DRIVERDIR)/ifd-swiftccid.bundle/Contents/Linux $(DESTDIR)$(LIBEXECDIR) \
	  $(DESTDIR)$(UDEVDIR)/rules.d $(DESTDIR)$(UNITDIR) $(DESTDIR)$(GENERATORDIR) $(DESTDIR)$(DOCDIR) $(DESTDIR)$(MANDIR)/man1
	install -m 0644 $(BUNDLE)/Contents/Info.plist $(DESTDIR)$(DRIVERDIR)/ifd-swiftccid.bundle/Contents/Info.plist
	install -m 0755 $(SO) $(DESTDIR)$(DRIVERDIR)/ifd-swiftccid.bundle/Contents/Linux/libswiftccid.so
	install -m 0755 .build/release/ccid-attach $(DESTDIR)$(LIBEXECDIR)/ccid-attach
	install -m 0644 udev/60-swiftccid.rules $(DESTDIR)$(UDEVDIR)/rules.d/60-swiftccid.rules
	install -m 0644 $(BUILD)/swiftccid-attach@.service $(DESTDIR)$(UNITDIR)/swiftccid-attach@.service
	install -m 0644 udev/swiftccid-attach@.socket $(DESTDIR)$(UNITDIR)/swiftccid-attach@.socket
	install -m 0755 udev/swiftccid-generator $(DESTDIR)$(GENERATORDIR)/swiftccid-generator
	install -m 0644 README.md docs/ccid-attach.md $(DESTDIR)$(DOCDIR)/
	install -m 0644 man/ccid-attach.1 $(DESTDIR)$(MANDIR)/man1/ccid-attach.1

install-sim: sim
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(MANDIR)/man1
	install -m 0755 .build/release/ccid-sim $(DESTDIR)$(PREFIX)/bin/ccid-sim
	install -m 0644 man/ccid-sim.1 $(DESTDIR)$(MANDIR)/man1/ccid-sim.1

uninstall:
	rm -rf $(DESTDIR)$(DRIVERDIR)/ifd-swiftccid.bundle $(DESTDIR)$(LIBEXECDIR) $(DESTDIR)$(DOCDIR)
	rm -f $(DESTDIR)$(PREFIX)/bin/ccid-sim $(DESTDIR)$(UDEVDIR)/rules.d/60-swiftccid.rules \
	  $(DESTDIR)$(UNITDIR)/swiftccid-attach@.service $(DESTDIR)$(UNITDIR)/swiftccid-attach@.socket \
	  $(DESTDIR)$(GENERATORDIR)/swiftccid-generator $(DESTDIR)$(MANDIR)/man1/ccid-attach.1 \
	  $(DESTDIR)$(MANDIR)/man1/ccid-sim.1

# Man pages, generated from the commands' own help by swift-argument-parser's
# generate-manual plugin and committed (tests/test_packages.py checks that every
# option of every subcommand is in them).
man:
	mkdir -p $(BUILD)/man
	$(SWIFT) package --scratch-path .build-man --allow-writing-to-directory $(BUILD)/man generate-manual \
	  --output-directory $(BUILD)/man --date "$$(git log -1 --format=%cs)" --authors "SwiftCCID developers"
	install -m 0644 $(BUILD)/man/ccid-sim.1 $(BUILD)/man/ccid-attach.1 man/

# Binary Debian packages (debian/, debhelper 13) in build/deb, nothing written beside the tree.
deb: deps
	@tools/apt-install.sh $(PACKAGING_PACKAGES)
	rm -rf $(BUILD)/deb && mkdir -p $(BUILD)/deb
	dpkg-buildpackage -b --no-sign --buildinfo-option=-u$(BUILD)/deb --changes-option=-u$(BUILD)/deb \
	  --buildinfo-file=$(BUILD)/deb/swiftccid.buildinfo --changes-file=$(BUILD)/deb/swiftccid.changes
	lintian --fail-on error,warning --info $(BUILD)/deb/swiftccid.changes

# The RPM spec, checked with the tools Debian packages.
rpm-check:
	@tools/apt-install.sh $(PACKAGING_PACKAGES)
	rpmspec --load tests/rpm/fedora-paths.macros -P swiftccid.spec > $(BUILD)/swiftccid.spec.parsed
	rpmlint swiftccid.spec

clean:
	rm -rf $(BUILD) .build .build-bundle .build-fuzz .build-asan .build-tsan

# bundle/readers.txt, the udev rule and the fuzz seeds are generated from the reader corpus (data/ccid-readers) and committed.
reader-list:
	$(PYTHON) tools/make-reader-list.py data/ccid-readers > bundle/readers.txt
	$(PYTHON) tools/make-udev-rules.py data/ccid-readers bundle/readers.txt > udev/60-swiftccid.rules
	$(PYTHON) tools/make-fuzz-seeds.py data/ccid-readers
