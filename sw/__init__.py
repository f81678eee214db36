"""eventconv: a generator of event-driven convolution hardware for edge vision.

Packages, lowest first (each imports only those below it; ``pyproject.toml`` holds the
contracts that ``make lint`` checks with import-linter):

- :mod:`eventconv.core`: the layer contract (``core/SPEC.md``), configuration and range
  checks, the bit-exact golden model; numpy only.
- :mod:`eventconv.protocol`: the host link protocol (numbers, CRC, SLIP, codec); no Amaranth.
- :mod:`eventconv.hw`: the gateware (Amaranth): layer blocks, host link, board tops.
- :mod:`eventconv.host`: the host driver of a board, over a byte transport.
- :mod:`eventconv.flow`: Verilog export, bitstreams, per-block timing, the ECP5 netlist pass.
- :mod:`eventconv.sim`: cocotb testbenches and their runner.
- :mod:`eventconv.backends`: ``run(config, frames)`` on the model, the simulated RTL, a board.
- :mod:`eventconv.bench`: benchmarks; :mod:`eventconv.cli`: the command line.
"""
