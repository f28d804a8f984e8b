# The two commands a new machine needs: `make serve` and `make test`.
# Each creates the virtualenv and installs what it needs (including Debian's
# bubblewrap when missing and running as root).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: serve cluster test lint typecheck unit bench bench-quick sandbox-deps cgroup-tuning browser-deps clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python 3.11 or newer is needed as $(PYTHON)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

sandbox-deps:
	@if ! command -v bwrap >/dev/null 2>&1 || ! command -v slirp4netns >/dev/null 2>&1; then \
		if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing bubblewrap and slirp4netns (Debian packages)"; \
			export DEBIAN_FRONTEND=noninteractive; \
			apt-get install -y -q bubblewrap slirp4netns >/dev/null 2>&1 || \
			{ apt-get update -q >/dev/null && apt-get install -y -q bubblewrap slirp4netns >/dev/null; }; \
		else \
			echo "bubblewrap is missing: install it (sudo apt-get install bubblewrap slirp4netns)"; \
			echo "or run without isolation with AUTOMATION_SANDBOX=none"; \
		fi; \
	fi

# Moving a process into a cgroup waits for an RCU grace period (~10 ms per run)
# unless a cgroup2 hierarchy is mounted with favordynmods (Linux 6.0+, a global
# setting; it makes forks slightly dearer). As root, turn it on for the sandbox.
cgroup-tuning:
	@if [ "$$(id -u)" = "0" ]; then \
		mnt=$$(awk '$$3 == "cgroup2" {print $$2; exit}' /proc/mounts); \
		if [ -n "$$mnt" ] && ! grep -q "cgroup2 .*favordynmods" /proc/mounts; then \
			mount -o remount,favordynmods "$$mnt" 2>/dev/null && \
				echo "cgroup2 at $$mnt remounted with favordynmods (fast cgroup moves)" || \
				echo "could not enable favordynmods on $$mnt: each run pays ~10 ms to join its cgroup"; \
		fi; \
	fi

# Debian's chromium drives the dashboard's browser tests (Playwright never downloads one).
browser-deps:
	@if ! command -v chromium >/dev/null 2>&1; then \
		if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing chromium (Debian package) for the dashboard's browser tests"; \
			export DEBIAN_FRONTEND=noninteractive; \
			apt-get install -y -q chromium >/dev/null 2>&1 || \
			{ apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }; \
		else echo "chromium is missing: the dashboard's browser tests will be skipped"; fi; \
	fi

serve: $(STAMP) sandbox-deps cgroup-tuning
	$(BIN)/automation-server serve

# api, two workers and a scheduler as separate processes on this machine's PostgreSQL
# (AUTOMATION_CLUSTER_PG_URL) and moto's S3 server: deploy/compose.yaml without Docker.
cluster: $(STAMP) sandbox-deps cgroup-tuning
	$(BIN)/python -m deploy.cluster

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP) sandbox-deps cgroup-tuning browser-deps lint typecheck
	$(BIN)/pytest

bench-quick: $(STAMP) sandbox-deps cgroup-tuning
	$(BIN)/python -m bench --quick

bench: $(STAMP) sandbox-deps cgroup-tuning
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
