# Two commands for a new user: `make run` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_STAMP := contracts/node_modules/.installed
WEB := signalling/web
WEB_STAMP := $(WEB)/node_modules/.installed
APT_PACKAGES := chromium redis-server janus iproute2 coturn
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=

.PHONY: run test test-deps test-fast lint bench system-deps node-deps web-deps install clean contracts native native-asan

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

# The native data path (sfu/native/*.c -> sfu/_native*.so): `pip install -e` builds it too; this
# rebuilds it in place whenever a C source changes (gcc, Python headers and libssl-dev suffice).
NATIVE_SRC := setup.py $(wildcard sfu/native/*.c sfu/native/*.h)
NATIVE := $(VENV)/.native
$(NATIVE): $(STAMP) $(NATIVE_SRC)
	$(BIN)/python setup.py -q build_ext --inplace
	touch $@

native: $(NATIVE)

install: $(STAMP) $(NATIVE)

# The native data path under ASan + UBSan: a copy of the tree whose extension is built with
# BASEMENT_SANITIZE=1, running the media-plane unit tests (both data paths, the C/Python parity
# scenarios, the SRTP vectors) and the native fuzz harness's seeds. Any memory error aborts.
ASAN_TREE := build/asan-tree
ASAN_ENV := ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	PYCRYPTODOME_DISABLE_DEEPBIND=1 LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)"
native-asan: $(STAMP)
	rm -rf $(ASAN_TREE) && mkdir -p $(ASAN_TREE)
	cp -r setup.py pyproject.toml sfu signalling bench tests $(ASAN_TREE)/
	rm -f $(ASAN_TREE)/sfu/_native*.so
	cd $(ASAN_TREE) && BASEMENT_SANITIZE=1 $(CURDIR)/$(BIN)/python setup.py -q build_ext --inplace
	cd $(ASAN_TREE) && $(ASAN_ENV) PYTHONPATH=$(CURDIR)/$(ASAN_TREE) $(CURDIR)/$(BIN)/pytest -q -p no:cacheprovider \
	  tests/unit/sfu
	cd $(ASAN_TREE) && $(ASAN_ENV) PYTHONPATH=$(CURDIR)/$(ASAN_TREE) $(CURDIR)/$(BIN)/python tests/fuzz/fuzz_native.py \
	  tests/fuzz/corpus/native/*
	cd $(ASAN_TREE) && $(ASAN_ENV) PYTHONPATH=$(CURDIR)/$(ASAN_TREE) $(CURDIR)/$(BIN)/python tests/fuzz/fuzz_ingress.py \
	  tests/fuzz/corpus/ingress/*

# Debian packages the tests drive for real (browser, Redis, Janus, network namespaces, GStreamer
# webrtcbin under the system python3: tests/e2e/gstreamer).
system-deps:
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v firefox-esr >/dev/null || missing="$$missing firefox-esr"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v janus >/dev/null || missing="$$missing janus"; \
	command -v ip >/dev/null || missing="$$missing iproute2"; \
	command -v nft >/dev/null || [ -x /usr/sbin/nft ] || missing="$$missing nftables"; \
	command -v turnserver >/dev/null || missing="$$missing coturn"; \
	command -v sipp >/dev/null || missing="$$missing sip-tester"; \
	for p in python3-gi gir1.2-gstreamer-1.0 gir1.2-gst-plugins-bad-1.0 gir1.2-nice-0.1 gstreamer1.0-nice \
	    gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad; do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q ' installed$$' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

# npm: solc (compiler), OpenZeppelin, anvil (integration chain).
$(NODE_STAMP): contracts/package.json contracts/package-lock.json
	cd contracts && npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

# npm: a real IPFS node for the tests (js-ipfs; tests/support/ipfsnode.py says why not Kubo).
IPFS_NODE := tests/support/ipfs
IPFS_STAMP := $(IPFS_NODE)/node_modules/.installed
$(IPFS_STAMP): $(IPFS_NODE)/package.json $(IPFS_NODE)/package-lock.json
	cd $(IPFS_NODE) && npm ci --no-audit --no-fund --loglevel=error
	touch $(IPFS_STAMP)

# npm: ethers.js, a strict JSON-RPC client for the tests of /rpc.
ETHERS := tests/support/ethers
ETHERS_STAMP := $(ETHERS)/node_modules/.installed
$(ETHERS_STAMP): $(ETHERS)/package.json $(ETHERS)/package-lock.json
	cd $(ETHERS) && npm ci --no-audit --no-fund --loglevel=error
	touch $(ETHERS_STAMP)

# npm: the IPFS Pinning Service API (the spec's in-memory implementation) for the remote-pinning tests.
PINNING := tests/support/pinning
PINNING_STAMP := $(PINNING)/node_modules/.installed
$(PINNING_STAMP): $(PINNING)/package.json $(PINNING)/package-lock.json
	cd $(PINNING) && npm ci --no-audit --no-fund --loglevel=error
	touch $(PINNING_STAMP)

node-deps: $(NODE_STAMP) $(IPFS_STAMP) $(ETHERS_STAMP) $(PINNING_STAMP)

# npm: eslint for the web client (the page itself has no build step; web/static is served as it is).
$(WEB_STAMP): $(WEB)/package.json $(WEB)/package-lock.json
	cd $(WEB) && npm ci --no-audit --no-fund --loglevel=error
	touch $(WEB_STAMP)

web-deps: $(WEB_STAMP)

contracts: $(NODE_STAMP)
	cd contracts && node compile.js

run: $(STAMP) $(NATIVE)
	$(BIN)/basement serve

# ruff, the dependency contracts (pyproject.toml [tool.importlinter]; docs/architecture.md), mypy on sfu/
# ([tool.mypy]; without its cache, which once hid an error a clean clone then found), eslint for the web client.
lint: $(STAMP) $(NATIVE) $(WEB_STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy --no-incremental
	cd $(WEB) && ./node_modules/.bin/eslint .

# The unit tier only (tests/unit): no root, no network namespace, no Chromium, Redis or Janus.
test-fast: lint
	$(BIN)/pytest -q -p no:cacheprovider tests/unit $(PYTEST_ARGS)

# Tests run in a private network namespace that only has loopback, so WebRTC (which gathers
# candidates on every interface) can never send media anywhere but 127.0.0.1. The slowest tests
# are listed after each phase: the whole run must stay under 30 minutes on 2 cores.
# What the tests need, built two at a time: the ASan tier (about 80 s, mostly its unit tests) runs
# beside npm, the native build and lint instead of after them.
test-deps: $(STAMP) $(NATIVE) system-deps node-deps lint native-asan

# Two phases: first the tests marked `shared` (tests/conftest.py: they measure no rate against a
# clock) two at a time, one file per worker (pytest-xdist); then the rest one at a time, alone on the
# machine, since they measure media against real time. JUNIT=<prefix> writes <prefix>-shared.xml and
# <prefix>-alone.xml. A phase that selects nothing (PYTEST_ARGS naming one file) is no failure.
JUNIT ?=
PYTEST_PHASE = unshare -n -- bash -c 'ip link set lo up && exec "$$@"' netns \
  $(BIN)/pytest -q -p no:cacheprovider $(PYTEST_ARGS)

test:
	$(MAKE) --no-print-directory -j2 --output-sync=target test-deps
	$(PYTEST_PHASE) -m shared -n 2 --dist loadfile --durations=10 \
	  $(if $(JUNIT),--junitxml=$(JUNIT)-shared.xml) || [ $$? = 5 ]
	$(PYTEST_PHASE) -m 'not shared' --durations=30 $(if $(JUNIT),--junitxml=$(JUNIT)-alone.xml) || [ $$? = 5 ]

bench: $(STAMP) $(NATIVE) node-deps
	unshare -n -- bash -c 'ip link set lo up && exec "$$@"' netns \
	  $(BIN)/pytest -q -p no:cacheprovider bench/micro --benchmark-only
	unshare -n -- bash -c 'ip link set lo up && exec "$$@"' netns \
	  $(BIN)/python -m bench.gas_per_session --network optimism

# Coverage-guided fuzzing of every network parser (tests/fuzz/README.md): FUZZ_RUNS inputs per
# harness, one harness at a time at the lowest priority; fails if any harness found anything.
FUZZ_RUNS ?= 1000000
.PHONY: fuzz
fuzz: $(STAMP) $(NATIVE)
	nice -n 19 $(BIN)/python tests/fuzz/run.py --runs $(FUZZ_RUNS) --keep-going

clean:
	rm -rf $(VENV) contracts/node_modules $(WEB)/node_modules
