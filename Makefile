# ctrpy: `make demo` runs the main job, `make test` the suite. Both install what is missing first.
SHELL := /bin/bash
PYTHON_SYS ?= /usr/bin/python3
VENV ?= .venv
PY := $(VENV)/bin/python
APT_PACKAGES := gcc make python3-dev python3-venv busybox-static docker-registry skopeo umoci runc crun \
	containerd containernetworking-plugins iptables nftables iproute2 apache2-utils openssl curl \
	libnl-route-3-dev libmnl-dev libseccomp-dev pkg-config strace zsh fish procps psmisc debootstrap faketime
PYTEST_ARGS ?=

.PHONY: deps apt venv install test demo bench clean generate

# Install Debian packages only when one is missing (dpkg-query is fast; apt-get update is not).
apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

$(VENV)/.installed: pyproject.toml setup.py $(wildcard csrc/*.c csrc/*.h) csrc/build_helper.py
	[ -x $(PY) ] || $(PYTHON_SYS) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

deps: apt venv

install: deps

test: deps
	$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: that is a failure"; exit 1; fi; exit $$rc

demo: deps
	$(PY) scripts/demo.py

# Benchmarks vs containerd/runc/crun (issue 7): writes BENCHMARKS.md. pyinstrument profiles ctrpy where it is behind.
# Regenerate completions/ and docs/reference.md from the Click tree (tests fail while they are stale).
generate: venv
	$(PY) scripts/gen_completions.py
	$(PY) scripts/gen_docs.py

bench: deps
	@$(PY) -c 'import pyinstrument' 2>/dev/null || $(PY) -m pip install -q 'pyinstrument>=4.6'
	$(PY) bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info ctrpy/_helper*.so
