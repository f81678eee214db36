"""The gateware (Amaranth). Imports only :mod:`eventconv.core` and :mod:`eventconv.protocol`.

- :mod:`.layouts`: stream payloads shared by every block; :mod:`.target`: what an FPGA
  family wants from the gateware; :mod:`.boards`: the board registry.
- :mod:`.primitives`: small shared parts (block RAM read ports, register slice, multiplier).
- :mod:`.layer`: one event-driven layer: delta detector, fan-out, accumulators, sparse pool,
  and the engine that chains them.
- :mod:`.link`: UART and the host link (the board's side of :mod:`eventconv.protocol`).
- :mod:`.board`: board tops (the engine behind the link; PLL, pins).
"""
