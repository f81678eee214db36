"""A signed multiply between two register stages; on the ECP5, the registers of its DSP block."""

from amaranth.hdl import ClockSignal, Const, Instance, Signal, signed

__all__ = ["registered_multiply"]

#: Operand width of an ECP5 MULT18X18D.
ECP5_OPERAND_WIDTH = 18


def registered_multiply(m, platform, a, b, enable, *, name):
    """``a * b`` (both signed), two register stages later: the operands are registered, and
    their product is registered, each when ``enable`` is high (the ``sync`` domain). Returns
    the product, ``len(a) + len(b)`` bits signed, in the cycle after the second stage loads.

    For an ECP5 platform (``platform.family == "ecp5"``, operands of 18 bits at most) the
    registers are the input and output registers of a MULT18X18D: the multiplier's 3.9 ns
    (nextpnr's figure) then sits between registers inside the block, not between flip-flops
    the placer may put far from it. Elsewhere (simulation, exported Verilog, the iCE40) it is
    two ordinary register stages around ``*``; the cycle behaviour is the same.
    """
    width = len(a) + len(b)
    product = Signal(signed(width), name=f"{name}_product", reset_less=True)
    if (getattr(platform, "family", None) == "ecp5" and len(a) <= ECP5_OPERAND_WIDTH
            and len(b) <= ECP5_OPERAND_WIDTH):
        wide_a = Signal(signed(ECP5_OPERAND_WIDTH), name=f"{name}_a")
        wide_b = Signal(signed(ECP5_OPERAND_WIDTH), name=f"{name}_b")
        full = Signal(2 * ECP5_OPERAND_WIDTH, name=f"{name}_p")
        m.d.comb += [wide_a.eq(a.as_signed()), wide_b.eq(b.as_signed()),
                     product.eq(full[:width])]
        ports = {"i_CLK0": ClockSignal("sync"), "i_CE0": enable, "i_RST0": Const(0),
                 "i_SIGNEDA": Const(1), "i_SIGNEDB": Const(1),
                 "i_SOURCEA": Const(0), "i_SOURCEB": Const(0)}
        for i in range(ECP5_OPERAND_WIDTH):
            ports[f"i_A{i}"] = wide_a[i]
            ports[f"i_B{i}"] = wide_b[i]
            ports[f"i_C{i}"] = Const(0)
        for i in range(2 * ECP5_OPERAND_WIDTH):
            ports[f"o_P{i}"] = full[i]
        m.submodules[name] = Instance(
            "MULT18X18D",
            p_REG_INPUTA_CLK="CLK0", p_REG_INPUTA_CE="CE0", p_REG_INPUTA_RST="RST0",
            p_REG_INPUTB_CLK="CLK0", p_REG_INPUTB_CE="CE0", p_REG_INPUTB_RST="RST0",
            p_REG_INPUTC_CLK="NONE", p_REG_PIPELINE_CLK="NONE",
            p_REG_OUTPUT_CLK="CLK0", p_REG_OUTPUT_CE="CE0", p_REG_OUTPUT_RST="RST0",
            p_GSR="DISABLED", p_RESETMODE="SYNC", p_SOURCEB_MODE="B_SHIFT",
            p_MULT_BYPASS="DISABLED", p_CAS_MATCH_REG="FALSE",
            **ports)
        return product
    a_register = Signal(a.shape(), name=f"{name}_a", reset_less=True)
    b_register = Signal(b.shape(), name=f"{name}_b", reset_less=True)
    with m.If(enable):
        m.d.sync += [a_register.eq(a), b_register.eq(b),
                     product.eq(a_register.as_signed() * b_register.as_signed())]
    return product
