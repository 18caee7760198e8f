# ironforge — from a fresh Debian 12 machine: `make build` and `make test`.
SHELL := /bin/bash
PY    := .venv/bin/python
STAMP := .stamps

# What the product needs on the host. `make setup` installs only what is missing, so a second
# run costs one dpkg-query and returns in about a second. No recommends (they pull GTK, GStreamer,
# virt-p2v, compilers: 716 packages instead of 352); the few this needs are named here instead.
DEB_PACKAGES := qemu-system-x86 qemu-utils libguestfs-tools python3-guestfs python3-hivex virt-v2v nbdkit libnbd-bin \
                linux-image-amd64 mmdebstrap gpgv gnupg debian-archive-keyring xorriso \
                busybox-static ovmf cpio docker-registry fdisk e2fsprogs dosfstools mtools debconf curl arch-test \
                python3-venv python3-pip wimtools python3-defusedxml swtpm swtpm-tools \
                libvirt-clients libxml2-utils vagrant vagrant-libvirt \
                libvirt-daemon libvirt-daemon-driver-qemu libguestfs-xfs syslinux-common \
                chromium fonts-liberation shellcheck systemd golang-docker-credential-helpers pass

RECIPE ?= debian-12-amd64
PYTEST_ARGS ?=

.PHONY: setup debs build test test-slow bench doctor clean

setup: debs $(STAMP)/venv

debs:
	@missing=$$(for p in $(DEB_PACKAGES); do \
	    dpkg-query -W -f='$${db:Status-Abbrev}' $$p 2>/dev/null | grep -q '^ii' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "make setup: installing Debian packages:" $$missing; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends $$missing; \
	fi

# The venv comes from Debian's python3 with system site-packages: guestfs and hivex exist only there.
$(STAMP)/venv: pyproject.toml | debs
	@mkdir -p $(STAMP)
	@test -x $(PY) || /usr/bin/python3 -m venv --system-site-packages .venv
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	@touch $@

build: setup
	.venv/bin/ironforge build $(RECIPE)

# Everything but the suites marked slow: real QEMU boots, real libguestfs, real mmdebstrap
# against the Debian archive, real gpgv and loopback HTTP.
test: setup
	$(PY) -m pytest -m "not slow" --durations=15 $(PYTEST_ARGS)

# Long suites: the full Debian installer against a complete mirror (IRONFORGE_TEST_MIRROR).
test-slow: setup
	$(PY) -m pytest -m "slow" $(PYTEST_ARGS)

bench: setup
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

doctor: setup
	.venv/bin/ironforge doctor

clean:
	rm -rf .venv $(STAMP) build *.egg-info
