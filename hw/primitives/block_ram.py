"""Block RAM read ports whose read-during-write result is left to the RAM."""

from amaranth.hdl import Signal

__all__ = ["NO_RW_CHECK", "UncheckedReadPort", "register_stage"]

#: Memory attributes for a memory read through :class:`UncheckedReadPort`.
NO_RW_CHECK = {"no_rw_check": 1}


class UncheckedReadPort:
    """A synchronous read port (data one cycle after ``addr`` with ``en``) on which a read of
    the address written on the same edge gives an unspecified word.

    Amaranth's synchronous read ports promise the old word on such a collision; block RAMs
    whose two ports are independent (ECP5 DP16KD, iCE40 SB_RAM40_4K) do not, so Yosys adds
    logic after the RAM's output to give it, and on the ECP5 that logic lengthens the RAM's
    5.8 ns clock-to-output path. A user that never needs the word of a colliding read (it
    forwards the written value itself, or never reads and writes together) builds the port as
    an asynchronous read followed by a register, on a memory created with
    ``attrs=NO_RW_CHECK``: Yosys merges the register into the RAM and, told by the attribute,
    leaves collisions to it. Simulation (Amaranth, exported Verilog) gives the old word.

    Parameters
    ----------
    m : Module
        Where the register goes (``sync`` domain).
    memory : :class:`amaranth.lib.memory.Memory`
        Created with ``attrs=NO_RW_CHECK``.
    name : str
        Prefix of the port's signal names.

    Attributes
    ----------
    addr, en : Signal
        Address and read enable (when ``en`` is low, ``data`` holds).
    data : Signal
        The word read, from the cycle after.
    """

    def __init__(self, m, memory, *, name):
        if memory.attrs.get("no_rw_check") != 1:
            raise ValueError(f"memory {name} must be created with attrs=NO_RW_CHECK")
        port = memory.read_port(domain="comb")
        self.addr = port.addr
        self.en = Signal(name=f"{name}_en")
        self.data = Signal(memory.shape, name=f"{name}_data", reset_less=True)
        with m.If(self.en):
            m.d.sync += self.data.eq(port.data)


def register_stage(m, fields, prefix, *, reset_less=()):
    """A pipeline stage more: each value of the dict ``fields`` registered (``sync`` domain)
    into a signal named ``{prefix}_{key}``; returns the dict of those signals. Used to put a
    block RAM's read data, and the beat that goes with it, into flip-flops before any logic.
    The registers of the keys in ``reset_less`` have no reset: a block RAM's data register
    then qualifies for the ECP5 RAM's own output register (:mod:`eventconv.flow.ecp5_outreg`).
    """
    registered = {key: Signal(value.shape(), name=f"{prefix}_{key}",
                              reset_less=key in reset_less)
                  for key, value in fields.items()}
    m.d.sync += [registered[key].eq(value) for key, value in fields.items()]
    return registered
