# `make test` sets up everything (venv, dev packages, the built extension) and runs every check.
PY ?= python3
VENV ?= .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.deps-stamp
export PYO3_PYTHON := $(abspath $(VPY))
PYLIBDIR = $(shell $(VPY) -c "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))")

.PHONY: test venv develop fmt clippy cargo-test ruff stubtest docs-check pytest clean
.PHONY: bench bench-smoke

test: venv fmt clippy cargo-test fuzz-smoke develop ruff stubtest docs-check pytest bench-smoke soak-smoke

$(STAMP): requirements-dev.txt pyproject.toml
	test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP)

develop: venv
	$(VPY) -m pip install -q --no-build-isolation --force-reinstall --no-deps .
	$(VPY) -c "import ferrule, ferrule._ferrule"

fmt:
	cargo fmt --check

clippy: venv
	cargo clippy --all-targets -- -D warnings

cargo-test: venv
	LD_LIBRARY_PATH=$(PYLIBDIR) cargo test

# cargo-fuzz targets in fuzz/ (docs/conformance.md, "Fuzzing"): the committed regressions
# once, then each target FUZZ_SECONDS from its seeds and its grown (ignored) corpus; fails on
# a crash. Stable rustc through RUSTC_BOOTSTRAP; installs cargo-fuzz when it is missing.
FUZZ_SECONDS ?= 20
FUZZ_ENV = RUSTC_BOOTSTRAP=1 LD_LIBRARY_PATH=$(PYLIBDIR)
.PHONY: fuzz-smoke
fuzz-smoke: venv
	cargo fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked --version 0.13.2
	cp Cargo.lock fuzz/Cargo.lock
	cd fuzz && $(FUZZ_ENV) cargo fuzz build -a
	set -e; cd fuzz && for t in head chunked environ; do \
	  leaks=1; [ $$t = environ ] && leaks=0; \
	  mkdir -p corpus/$$t; \
	  ASAN_OPTIONS=detect_leaks=$$leaks $(FUZZ_ENV) cargo fuzz run -a $$t regressions/$$t-*; \
	  ASAN_OPTIONS=detect_leaks=$$leaks $(FUZZ_ENV) cargo fuzz run -a $$t corpus/$$t seeds/$$t -- \
	    -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1; \
	done

ruff: venv
	$(VENV)/bin/ruff check python tests examples scripts bench
	$(VENV)/bin/ruff format --check python tests examples scripts bench

stubtest: develop
	$(VPY) -m mypy.stubtest ferrule._ferrule

docs-check: develop
	$(VPY) scripts/gen_settings_doc.py --check

pytest: develop
	$(VPY) -m pytest -q

# The benchmark suite (docs/benchmarks.md): peers in bench/.venv-peers, needs wrk; takes ~30 min.
bench: develop
	$(VPY) bench/run.py --write-docs $(BENCH_ARGS)

# A 1-second run of the suite (ferrule, hello): checks the suite works, never a speed.
bench-smoke: develop
	$(VPY) bench/run.py --smoke

# A ~20 s soak run (docs/soak.md): 30,000 mixed requests, fails on wrong answers, RSS growth
# over 5 %, leaked fds or a dead server; never on a speed. The full run: bench/soak/run.py.
.PHONY: soak-smoke
soak-smoke: develop
	$(VPY) bench/soak/run.py --short

clean:
	rm -rf $(VENV) target
