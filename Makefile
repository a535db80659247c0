# ctrpy: `make demo` runs the main job, `make test` the suite. Both install what is missing first.
SHELL := /bin/bash
PYTHON_SYS ?= /usr/bin/python3
VENV ?= .venv
PY := $(VENV)/bin/python
APT_PACKAGES := gcc make python3-dev python3-venv busybox-static libc6-dev docker-registry skopeo umoci runc crun \
	containerd containernetworking-plugins iptables nftables iproute2 apache2-utils openssl curl \
	libnl-route-3-dev libmnl-dev libseccomp-dev pkg-config strace zsh fish procps psmisc debootstrap faketime
# Only the cgroup v2 guest tier needs these; `make test-cgroup2` installs them, and skips if it cannot.
GUEST_APT_PACKAGES := qemu-system-x86
PYTEST_ARGS ?=

.PHONY: deps apt venv install test test-unit test-cgroup2 lint demo bench clean generate critest

# Install Debian packages only when one is missing (dpkg-query is fast; apt-get update is not).
apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

$(VENV)/.installed: pyproject.toml setup.py $(wildcard csrc/*.c csrc/*.h) csrc/build_helper.py csrc/build_supervisor.py
	[ -x $(PY) ] || $(PYTHON_SYS) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# compat: a plain .pth path entry instead of setuptools' import-hook finder, which costs every
	# start-up a pathlib/importlib.util import. compileall: PYTHONDONTWRITEBYTECODE=1 (as here) would
	# otherwise leave an editable install recompiling every module on every run (issue 17). A wheel
	# (`pip install .`) is compiled by pip itself at install.
	$(PY) -m pip install -q -e '.[test]' --config-settings editable_mode=compat
	$(PY) -m compileall -q ctrpy
	touch $@

venv: $(VENV)/.installed

deps: apt venv

install: deps

# Lint and type-check (rules and the strict-module list are in pyproject.toml); .ci/run runs this first.
lint: deps
	@$(PY) -c 'import ruff, mypy' 2>/dev/null || $(PY) -m pip install -q -e '.[test,lint]' --config-settings editable_mode=compat
	$(VENV)/bin/ruff check ctrpy tests scripts bench
	$(VENV)/bin/mypy

test: deps
	$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: that is a failure"; exit 1; fi; exit $$rc

# The unit tier only (no root, no registry, no CLI subprocess; seconds): tests/conftest.py marks the rest
# `integration` (by the fixtures they use, or by module) and property tests `slow`. `make test` runs everything.
test-unit: venv
	$(PY) -m pytest -m "not integration and not slow" $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: that is a failure"; exit 1; fi; exit $$rc

# The pure cgroup v2 tier (issue 18): boots a qemu (TCG) guest with a Debian 6.1 kernel downloaded into
# build/guest (apt-get download; the host's /boot is never touched) and runs tests/cgroup2/checks.sh there.
# Skips with a message when qemu or the kernel package cannot be had.
test-cgroup2: deps
	@dpkg-query -W -f='$${Status}\n' $(GUEST_APT_PACKAGES) 2>/dev/null | grep -q '^install ok installed' || \
		{ apt-get update -qq && \
		  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(GUEST_APT_PACKAGES); } || \
		echo "could not install $(GUEST_APT_PACKAGES): the tier will skip"
	$(PY) tests/cgroup2/run.py $(CGROUP2_ARGS)

demo: deps
	$(PY) scripts/demo.py

# Benchmarks vs containerd/runc/crun (issue 7): writes BENCHMARKS.md. pyinstrument profiles ctrpy where it is behind.
# Regenerate completions/ and docs/reference.md from the Click tree (tests fail while they are stale).
generate: venv
	$(PY) scripts/gen_completions.py
	$(PY) scripts/gen_docs.py

# cri-tools' critest against `ctrpy serve` (offline kit in ../shared/cri-tools; skips when it is absent).
critest: deps
	$(PY) scripts/critest.py $(CRITEST_ARGS)

bench: deps
	@$(PY) -c 'import pyinstrument' 2>/dev/null || $(PY) -m pip install -q 'pyinstrument>=4.6'
	$(PY) bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info ctrpy/_helper*.so ctrpy/ctrpy-supervisor ctrpy/ctrpy-init
