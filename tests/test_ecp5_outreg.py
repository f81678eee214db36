"""The ECP5 netlist pass that moves the flip-flops behind block RAMs into the RAMs' output
registers: on real Yosys netlists (synth_ecp5) of small designs, then through nextpnr."""

import json
import os
import re
import subprocess

import pytest
from amaranth.back import rtlil
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from eventconv.flow.ecp5_outreg import absorb_output_registers
from eventconv.flow.tools import tool_environment
from eventconv.hw.primitives.block_ram import NO_RW_CHECK, UncheckedReadPort


class RamBehindRegister(wiring.Component):
    """A RAM read into a register, then a little logic. ``kind``: ``"enable"`` (the register
    has a clock enable), ``"inverted"`` (enabled by the complement of an input), ``"reset"``
    (the register has a reset), ``"two_loads"`` (the RAM data also feeds a second register),
    ``"starts_at_one"`` (no reset, but an initial value of all ones)."""

    def __init__(self, kind):
        self.kind = kind
        super().__init__({"addr": In(9), "wdata": In(8), "we": In(1), "take": In(1),
                          "out": Out(8), "other": Out(8)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.ram = ram = Memory(shape=8, depth=512, init=[], attrs=NO_RW_CHECK)
        write = ram.write_port()
        read = UncheckedReadPort(m, ram, name="read")
        m.d.comb += [write.addr.eq(self.addr), write.data.eq(self.wdata),
                     write.en.eq(self.we), read.addr.eq(self.addr), read.en.eq(1)]
        word = Signal(8, reset_less=self.kind != "reset",
                      init=0xFF if self.kind == "starts_at_one" else 0)
        enable = ~self.take if self.kind == "inverted" else self.take
        with m.If(enable):
            m.d.sync += word.eq(read.data)
        if self.kind == "two_loads":
            m.d.sync += self.other.eq(read.data)
        m.d.sync += self.out.eq(word + 3)
        return m


def synthesize(component, directory):
    (directory / "top.il").write_text(rtlil.convert(component, name="top"))
    env = {**os.environ, **tool_environment()}
    subprocess.run([env["YOSYS"], "-q", "-p", "read_rtlil top.il; synth_ecp5 -top top "
                    "-json top.json"], cwd=directory, check=True, env=env)
    return json.loads((directory / "top.json").read_text())


def top_module(netlist):
    return next(m for m in netlist["modules"].values() if m["attributes"].get("top"))


def cells_of(netlist, kind):
    return {n: c for n, c in top_module(netlist)["cells"].items() if c["type"] == kind}


def read_side(ram, registers):
    """The RAM port ("A" or "B") whose data outputs feed ``registers``."""
    inputs = {c["connections"]["DI"][0] for c in registers.values()}
    sides = {side for side in "AB" for i in range(18)
             if ram["connections"][f"DO{side}{i}"][0] in inputs}
    assert len(sides) == 1
    return sides.pop()


def data_registers(netlist, ram):
    outputs = {bits[0] for port, bits in ram["connections"].items() if port.startswith("DO")}
    return {n: c for n, c in cells_of(netlist, "TRELLIS_FF").items()
            if c["connections"]["DI"][0] in outputs}


def test_register_with_enable_becomes_the_output_register(tmp_path):
    netlist = synthesize(RamBehindRegister("enable"), tmp_path)
    (ram_name, ram), = cells_of(netlist, "DP16KD").items()
    registers = data_registers(netlist, ram)
    assert len(registers) == 8        # the data register, one flip-flop per bit
    side = read_side(ram, registers)
    q_by_output = {}
    for c in registers.values():
        port = next(p for p, bits in ram["connections"].items()
                    if p.startswith("DO") and bits == c["connections"]["DI"])
        q_by_output[port] = c["connections"]["Q"]
    enables = {c["connections"]["CE"][0] for c in registers.values()}
    ffs_before = len(cells_of(netlist, "TRELLIS_FF"))

    absorbed, skipped = absorb_output_registers(netlist)

    assert absorbed == [f"{ram_name}:{side}"] and skipped == {}
    ram = cells_of(netlist, "DP16KD")[ram_name]
    assert ram["parameters"][f"REGMODE_{side}"] == "OUTREG"
    assert ram["connections"][f"OCE{side}"] == [enables.pop()]
    # Each data output now drives what its flip-flop's output drove.
    assert {port: ram["connections"][port] for port in q_by_output} == q_by_output
    assert len(cells_of(netlist, "TRELLIS_FF")) == ffs_before - 8


def test_inverted_enable_gets_one_inverter(tmp_path):
    netlist = synthesize(RamBehindRegister("inverted"), tmp_path)
    (ram_name, ram), = cells_of(netlist, "DP16KD").items()
    side = read_side(ram, data_registers(netlist, ram))
    luts_before = len(cells_of(netlist, "LUT4"))
    absorbed, skipped = absorb_output_registers(netlist)
    assert absorbed == [f"{ram_name}:{side}"] and skipped == {}
    inverters = {n: c for n, c in cells_of(netlist, "LUT4").items() if "outreg" in n}
    assert len(cells_of(netlist, "LUT4")) == luts_before + 1
    (_, inverter), = inverters.items()
    assert inverter["parameters"]["INIT"] == "0000000011111111"     # Z = ~D
    ram = cells_of(netlist, "DP16KD")[ram_name]
    assert ram["connections"][f"OCE{side}"] == inverter["connections"]["Z"]


@pytest.mark.parametrize("kind, reason", [
    ("reset", r"DO[AB]\d+'s flip-flop has a set or reset"),
    ("two_loads", r"DO[AB]\d+ has 2 loads"),
    ("starts_at_one", r"DO[AB]\d+'s flip-flop starts at 1"),
])
def test_registers_that_do_not_qualify_are_left_alone(tmp_path, kind, reason):
    netlist = synthesize(RamBehindRegister(kind), tmp_path)
    before = json.dumps(netlist, sort_keys=True)
    absorbed, skipped = absorb_output_registers(netlist)
    assert absorbed == []
    (port, why), = skipped.items()
    assert re.fullmatch(r".*:[AB]", port) and re.fullmatch(reason, why)
    assert json.dumps(netlist, sort_keys=True) == before


def test_nextpnr_times_the_absorbed_port_from_its_output_register(tmp_path):
    """nextpnr places and routes the edited netlist, and the RAM's clock to data drops from
    the unregistered 5.83 ns to the output register's figure."""
    env = {**os.environ, **tool_environment()}
    figures = {}
    for edit in (False, True):
        directory = tmp_path / str(edit)
        directory.mkdir()
        netlist = synthesize(RamBehindRegister("enable"), directory)
        if edit:
            absorb_output_registers(netlist)
        (directory / "top.json").write_text(json.dumps(netlist))
        subprocess.run([env["NEXTPNR_ECP5"], "--85k", "--package", "CABGA381", "--json",
                        "top.json", "--freq", "200", "--lpf-allow-unconstrained",
                        "--timing-allow-fail", "--seed", "1", "--log", "top.tim", "--quiet"],
                       cwd=directory, check=True, env=env, capture_output=True)
        log = (directory / "top.tim").read_text()
        clock_to_data = [float(x) for x in re.findall(
            r"clk-to-q\s+([\d.]+)\s+[\d.]+\s+Source \S*ram\S*\.DO[AB]", log)]
        figures[edit] = clock_to_data
    print(f"RAM clock to data, unedited and edited (ns): {figures}")
    # Unedited: the RAM's data is the worst path's start, at the unregistered figure.
    assert figures[False] and min(figures[False]) > 5
    # Edited: the RAM still starts the worst path (pinned tools, seed 1), now from its
    # output register (0.97 ns measured).
    assert figures[True] and max(figures[True]) < 2
