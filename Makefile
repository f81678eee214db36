# eventconv: thin wrappers. Every target installs what it needs into .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
export AMARANTH_USE_YOSYS := builtin

.PHONY: install test lint demo synth bench timing formal soak clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@command -v iverilog >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "Installing Icarus Verilog (Debian package iverilog)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iverilog; \
	  else \
	    echo "error: Icarus Verilog is missing. Install it: sudo apt-get install -y iverilog" >&2; \
	    exit 1; \
	  fi; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' || \
	  { echo "error: Python 3.10 or newer is needed as $(PYTHON)" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# ruff, then the import contracts of pyproject.toml (import-linter). The package's folders are
# mapped (sw/ is eventconv, hw/ eventconv.hw, sim/ eventconv.sim): import-linter reads one
# folder tree, so it gets a tree of links that puts them together.
IMPORT_GRAPH := build/import-graph
lint: install
	$(BIN)/ruff check hw sw sim tests
	@rm -rf $(IMPORT_GRAPH) && mkdir -p $(IMPORT_GRAPH)/eventconv
	@for f in sw/*; do ln -s "$(CURDIR)/$$f" $(IMPORT_GRAPH)/eventconv/; done
	@ln -s "$(CURDIR)/hw" $(IMPORT_GRAPH)/eventconv/hw && ln -s "$(CURDIR)/sim" $(IMPORT_GRAPH)/eventconv/sim
	cd $(IMPORT_GRAPH) && PYTHONPATH=. "$(CURDIR)/$(BIN)/lint-imports" "$(CURDIR)/pyproject.toml"

# THE test command (README, .ci/run): lint, then every test on both cores.
test: install lint
	$(BIN)/pytest -n 2 --dist loadfile -q --durations=20

demo: install
	$(BIN)/eventconv demo

# Formal stream proofs (SymbiYosys, eventconv.sim.formal): every proof and planted bug; the
# quick subset also runs in `make test` (tests/test_formal.py).
formal: install
	$(BIN)/python -m eventconv.sim.formal

# Soak: 10,000 frames of the real clip through the simulated 4-layer network (Verilator, random
# stalls, eventconv.bench.soak; chunks of 500 as tasks on a local Dask cluster of 2 workers,
# --workers N to change), then the host link (tests/test_link_faults.py, tests/test_fuzz.py
# with EVENTCONV_SOAK=1): 10,000 frames through the Python board and EVENTCONV_SOAK_FRAMES
# (default 1000) through the co-simulated board (Verilator), at 1 % byte loss and 1 % bit flips
# both ways, and ~20x the fuzzing examples. About 1.5 hours on 2 cores: see README.
soak: install
	$(BIN)/python -m eventconv.bench.soak --frames 10000
	EVENTCONV_SOAK=1 $(BIN)/pytest -q -s tests/test_link_faults.py tests/test_fuzz.py

# Every board of the registry (hw/boards.py).
synth: install
	@set -e; for board in $$($(BIN)/eventconv boards); do $(BIN)/eventconv synth --board $$board; done

# The benchmark (report and plots in build/bench), then the design-space sweep on Dask (a
# LocalCluster of 2 workers): build/bench/sweep.csv, .md and the Pareto plot sweep.png.
bench: install
	$(BIN)/python -m eventconv.bench
	$(BIN)/eventconv sweep sw/bench/data/sweep_pnet.yaml -o build/bench/sweep.csv

# Each block placed alone for every board, three nextpnr seeds: where the clock is lost.
timing: install
	@set -e; for board in $$($(BIN)/eventconv boards); do \
	  $(BIN)/python -m eventconv.flow.timing --board $$board --seeds 1 2 3; done

clean:
	rm -rf build
