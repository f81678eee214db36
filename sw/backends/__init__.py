"""Backends that run a configuration over frames, each as ``run(config, frames, ...)``
returning the arrays of ``OUT.npz``: :mod:`.model` (the golden model), :mod:`.rtl` (the
exported Verilog under cocotb), :mod:`.board` (a board over its serial port). The RTL and
board backends rebuild the maps from the output events the hardware gave (:mod:`.integrate`).
"""
