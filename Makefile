# ironforge — two commands from a fresh Debian 12 machine: `make build` and `make test`.
SHELL := /bin/bash
PY    := .venv/bin/python
STAMP := .stamps

DEB_PACKAGES := qemu-system-x86 qemu-utils libguestfs-tools python3-guestfs python3-hivex \
                linux-image-amd64 mmdebstrap gpgv gnupg debian-archive-keyring xorriso \
                busybox-static ovmf cpio fdisk e2fsprogs dosfstools debconf curl \
                python3-venv arch-test

RECIPE ?= debian-12-amd64
PYTEST_ARGS ?=

.PHONY: setup build test test-slow bench clean doctor

setup: $(STAMP)/venv
	@missing=$$(dpkg-query -W -f='$${Package} $${db:Status-Abbrev}\n' $(DEB_PACKAGES) 2>/dev/null \
	            | awk '$$2 != "ii" {print $$1}'; \
	          for p in $(DEB_PACKAGES); do dpkg-query -W $$p >/dev/null 2>&1 || echo $$p; done | sort -u); \
	if [ -n "$$missing" ]; then \
	  echo "make setup: installing Debian packages:" $$missing; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends $$missing; \
	fi

$(STAMP)/venv: pyproject.toml
	@mkdir -p $(STAMP)
	@test -x $(PY) || /usr/bin/python3 -m venv --system-site-packages .venv
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	@touch $@

# The package set goes first so the venv's system site-packages can see python3-guestfs.
build: setup
	.venv/bin/ironforge build $(RECIPE)

test: setup
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

test-slow: setup
	$(PY) -m pytest -m "slow" $(PYTEST_ARGS)

bench: setup
	for b in bench/*.py; do $(PY) $$b || exit 1; done

doctor: setup
	.venv/bin/ironforge doctor

clean:
	rm -rf .venv $(STAMP) build *.egg-info
