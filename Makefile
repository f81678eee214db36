# eventconv: thin wrappers. Every target installs what it needs into .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
export AMARANTH_USE_YOSYS := builtin

.PHONY: install test lint demo synth bench timing clean

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

lint: install
	$(BIN)/ruff check hw sw sim tests

# THE test command (README, .ci/run): lint, then every test on both cores.
test: install lint
	$(BIN)/pytest -n 2 --dist loadfile -q

demo: install
	$(BIN)/eventconv demo

synth: install
	$(BIN)/eventconv synth --board icebreaker
	$(BIN)/eventconv synth --board ulx3s-85f

bench: install
	$(BIN)/python -m eventconv.bench

# Each block placed alone on both families, three nextpnr seeds: where the clock is lost.
timing: install
	$(BIN)/python -m eventconv.timing --family ice40 --seeds 1 2 3
	$(BIN)/python -m eventconv.timing --family ecp5 --seeds 1 2 3

clean:
	rm -rf build
