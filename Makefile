# Velador: one command each for a new machine with only Python 3 and make.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test tools lint format bench chaos fuzz clean catalogs

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m cli.demo

# System tools the tests run for real: the stock `age` binary (escape hatch), `microsocks` (a
# SOCKS5 server standing in for Tor), Chromium and its WebDriver (the browser app's tests),
# restic and borg (the peers the benchmarks compare with), `zstd` (the escape hatch of compressed
# chunks). Each entry is command:package. Installed with apt-get when we are root on Debian or
# Ubuntu; otherwise the package to install is printed, and the tests that need it fail saying so.
TOOLS := age:age microsocks:microsocks chromium:chromium chromedriver:chromium-driver \
	restic:restic borg:borgbackup zstd:zstd
tools:
	@for pair in $(TOOLS); do \
		t=$${pair%%:*}; p=$${pair#*:}; \
		command -v $$t >/dev/null 2>&1 && continue; \
		if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$p >/dev/null 2>&1 || \
			{ apt-get update -qq >/dev/null && \
			  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$p >/dev/null; } || \
			echo "make: could not install $$t; install the package '$$p'"; \
		else \
			echo "make: $$t is missing; install the package '$$p' (e.g. sudo apt-get install $$p)"; \
		fi; \
	done

# Two workers by default: most tests wait on real node processes, so two share the 2-core machine
# well; a test file always runs whole on one worker (--dist loadfile). TEST_WORKERS=0 runs serially.
TEST_WORKERS ?= 2
test: $(STAMP) tools
	$(BIN)/python -m pytest -q -p no:cacheprovider $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Benchmarks: bench/report.py runs every benchmark and writes docs/benchmarks.md, its plots and
# the raw JSON (docs/benchmarks/data/), including velador beside restic, borg and tar | age
# (bench/peers.py) and over a slow uplink to S3 (bench/slowlink_bench.py); `make tools` installs
# the peers. QUICK=1: small sizes, a few minutes. More options:
# `$(BIN)/python bench/report.py --help`. The plots need matplotlib (the `bench` extra), installed
# here on first use so that `make test` and `make demo` do not need it.
bench: $(STAMP)
	$(BIN)/python -c 'import matplotlib' 2>/dev/null || \
		$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	$(BIN)/python bench/report.py $(if $(filter 1 yes true,$(QUICK)),--quick)

# Chaos: >= 200 fault cycles against five real nodes (tests/chaos/harness.py); prints the seed
# and the counts. Replay a failure with `make chaos SEED=<seed>`.
CHAOS_CYCLES ?= 200
chaos: $(STAMP)
	$(BIN)/python -m tests.chaos.run --cycles $(CHAOS_CYCLES) $(if $(SEED),--seed $(SEED))

# Fuzzing: tests/fuzz under the "fuzz" hypothesis profile (tests/fuzz/profiles.py): random,
# FUZZ_EXAMPLES examples per parser test (heavier tests a fraction of it), failures kept in
# .hypothesis/ and replayed first; plus the full schemathesis pass over the node's OpenAPI.
# `make test` runs the same tests with a few derandomized examples.
FUZZ_EXAMPLES ?= 1000
fuzz: $(STAMP)
	VELADOR_FUZZ=1 VELADOR_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -q \
		-p no:cacheprovider -rxX --durations=15 tests/fuzz

# Message catalogs (cli/i18n.py): extract every marked message from vault/ and cli/ into the
# template, merge it into the Spanish catalog (new messages arrive empty, for a person to
# translate; tests/cli/test_i18n.py fails until they are), and compile the .mo.
LOCALES := cli/locale
catalogs: $(STAMP)
	$(BIN)/pybabel extract -F babel.cfg -o $(LOCALES)/velador.pot --project=velador \
		--version=0.1.0 --no-wrap --sort-by-file --omit-header .
	$(BIN)/pybabel update -i $(LOCALES)/velador.pot -d $(LOCALES) -D velador -l es_MX \
		--no-wrap --no-fuzzy-matching
	$(BIN)/pybabel compile -d $(LOCALES) -D velador -l es_MX --statistics

clean:
	rm -rf $(VENV) build *.egg-info
