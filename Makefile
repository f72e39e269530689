# rk3s: build, run, test, benchmark, lint.
#
#   make run     build in release mode and start `rk3s server` with the defaults
#   make test    install what the tests need (Debian, as root), then run every test
#   make bench   run the benchmarks and print their figures
#   make lint    rustfmt and clippy, warnings are errors

SHELL := /bin/bash
CARGO ?= cargo
# Extra arguments for `rk3s server` in `make run`, e.g. ARGS="--https-port 7443".
ARGS ?=

# Debian packages the tests and benchmarks use now or in the next issues:
# jq/curl (scripts), etcd-server (the store benchmark's reference), libseccomp-dev
# (the container runtime), busybox-static (test images), docker-registry and
# skopeo (a local registry for image tests; apache2-utils for its htpasswd, zstd,
# openssl and python3 to build the test images), nftables and iproute2 (networking).
APT_PACKAGES := jq curl etcd-server libseccomp-dev busybox-static docker-registry skopeo nftables iproute2 apache2-utils zstd openssl python3

.PHONY: all build run test deps bench lint help

all: build

help:
	@sed -n 's/^#   //p' $(MAKEFILE_LIST)

build:
	$(CARGO) build --release

# The server's own defaults: /var/lib/rk3s and /etc/rk3s/rk3s.yaml as root,
# ~/.local/share/rk3s (kubeconfig under server/cred/) otherwise; RK3S_* env wins.
run: build
	@if [ "$$(id -u)" = 0 ]; then \
	  data_dir="$${RK3S_DATA_DIR:-/var/lib/rk3s}"; \
	  kubeconfig="$${RK3S_WRITE_KUBECONFIG:-/etc/rk3s/rk3s.yaml}"; \
	else \
	  data_dir="$${RK3S_DATA_DIR:-$$HOME/.local/share/rk3s}"; \
	  kubeconfig="$${RK3S_WRITE_KUBECONFIG:-$$data_dir/server/cred/admin.kubeconfig}"; \
	fi; \
	echo "rk3s: data dir   $$data_dir"; \
	echo "rk3s: kubeconfig $$kubeconfig"; \
	echo "rk3s: use it with: export KUBECONFIG=$$kubeconfig"; \
	exec ./target/release/rk3s server $(ARGS)

# Install missing packages with apt when we can (root, apt-get present); only
# refresh the package lists when something is missing. Without root, say what
# is missing and go on: the API tests only need curl, jq and kubectl.
deps:
	@missing=""; \
	for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then \
	  echo "deps: all packages present"; \
	elif [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then \
	  echo "deps: not root or no apt-get; not installing:$$missing"; \
	else \
	  echo "deps: installing$$missing"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; } \
	    || echo "deps: WARNING: apt-get could not install:$$missing"; \
	fi
	@for t in curl jq; do command -v $$t >/dev/null || { echo "deps: $$t is required" >&2; exit 1; }; done
	@command -v kubectl >/dev/null || [ -x /usr/lib/google-cloud-sdk/bin/kubectl.1.33 ] \
	  || { echo "deps: kubectl is required (the tests drive the real kubectl)" >&2; exit 1; }

# Every test: unit tests, the integration tests against the real binary and
# kubectl (tests/), and doc tests. nextest runs each test in its own process.
test: deps
	$(CARGO) build
	$(CARGO) test --doc
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
	  echo "$(CARGO) nextest run --no-fail-fast"; \
	  $(CARGO) nextest run --no-fail-fast; \
	else \
	  echo "cargo-nextest not found; using cargo test"; \
	  $(CARGO) test --no-fail-fast --lib --bins --tests; \
	fi

bench: deps
	$(CARGO) bench --benches

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
