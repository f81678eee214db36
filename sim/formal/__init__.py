"""Formal proofs of the engine's streams, with SymbiYosys and an SMT solver from pip.

Each proof is an Amaranth wrapper around one block (``Assert``/``Assume``/``Cover``, free
inputs, registers for past values) exported to RTLIL and run by ``yowasp-sby``:
:mod:`.harness` (building blocks), :mod:`.runner` (the .sby file and the run), one module per
block (:mod:`.stream_register`, :mod:`.fanout`, :mod:`.delta_detector`, :mod:`.accumulator`,
:mod:`.sparse_max_pool`, :mod:`.pool_early`) and one for the whole engine (:mod:`.engine`),
each with its planted bugs, and :mod:`.checks` (the list ``make formal``
runs; ``python -m eventconv.sim.formal --list``).
"""
