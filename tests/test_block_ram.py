"""UncheckedReadPort: a synchronous read port (data a cycle after the address, held while the
enable is low) built so that Yosys maps it into the block RAM without collision logic."""

import re
import subprocess

import pytest
from amaranth.back import rtlil
from amaranth.hdl import Module, Signal
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from eventconv.flow.tools import tool_environment
from eventconv.hw.primitives.block_ram import NO_RW_CHECK, UncheckedReadPort


def test_needs_the_attribute():
    with pytest.raises(ValueError, match="memory table must be created with attrs=NO_RW_CHECK"):
        UncheckedReadPort(Module(), Memory(shape=8, depth=4, init=[]), name="table")


def test_reads_a_cycle_later_and_holds_without_enable():
    m = Module()
    m.submodules.memory = memory = Memory(shape=8, depth=8, init=[10 * i for i in range(8)],
                                          attrs=NO_RW_CHECK)
    port = UncheckedReadPort(m, memory, name="table")
    got = []

    async def bench(ctx):
        for address, enable in [(3, 1), (5, 1), (6, 0), (7, 0), (2, 1), (1, 0)]:
            ctx.set(port.addr, address)
            ctx.set(port.en, enable)
            await ctx.tick()
            got.append(ctx.get(port.data))

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert got == [30, 50, 50, 50, 20, 20]


def test_yosys_maps_it_without_collision_logic(tmp_path):
    """ECP5: the memory becomes a DP16KD with no read-first emulation behind it, which an
    Amaranth synchronous read port gets (the RAM's data would pass a LUT before a register)."""
    def design(unchecked):
        m = Module()
        m.submodules.memory = memory = Memory(shape=16, depth=1024, init=[],
                                              attrs=NO_RW_CHECK if unchecked else None)
        write = memory.write_port()
        read = (UncheckedReadPort(m, memory, name="table") if unchecked
                else memory.read_port())
        ports = [Signal(10, name="ra"), Signal(10, name="wa"), Signal(16, name="wd"),
                 Signal(name="we"), Signal(16, name="rd"), Signal(name="re")]
        m.d.comb += [read.addr.eq(ports[0]), read.en.eq(ports[5]), write.addr.eq(ports[1]),
                     write.data.eq(ports[2]), write.en.eq(ports[3]), ports[4].eq(read.data)]
        return rtlil.convert(m, name="top", ports=ports)

    yosys = tool_environment()["YOSYS"]
    logs = {}
    for unchecked in (False, True):
        (tmp_path / "top.il").write_text(design(unchecked))
        subprocess.run([yosys, "-q", "-l", "log.txt", "-p", "read_rtlil top.il; synth_ecp5"],
                       cwd=tmp_path, check=True, stdout=subprocess.DEVNULL)
        logs[unchecked] = (tmp_path / "log.txt").read_text()
    def cells(log, kind):
        found = re.findall(rf"^\s+(\d+)\s+{kind}$", log, re.M)
        return int(found[-1]) if found else 0

    assert cells(logs[True], "DP16KD") == cells(logs[False], "DP16KD") == 1
    # The plain port's read-first emulation: registers and LUTs behind the RAM.
    assert cells(logs[False], "TRELLIS_FF") >= 16 and cells(logs[False], "LUT4") >= 16
    assert cells(logs[True], "TRELLIS_FF") == cells(logs[True], "LUT4") == 0
