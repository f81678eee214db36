"""Per-block timing: each hardware block alone through Yosys and nextpnr, with its max frequency
and worst path. A developer's tool for timing work (``make timing``); the board builds of
:mod:`eventconv.flow.synth` are what the project's figures come from.

Each block is wrapped so that only its own paths count: every input bit comes from a flip-flop
of a shift register fed by one pin, every output bit goes into a flip-flop and then through a
pipelined XOR tree to one pin. So nothing is optimised away and the wrapper adds at most one
LUT level after the block's output flip-flops.

    python -m eventconv.flow.timing --board icebreaker detector pool
"""

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from amaranth.back import rtlil
from amaranth.hdl import ClockDomain, Module, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from eventconv.core.config import Config
from eventconv.flow.families import FAMILIES
from eventconv.flow.tools import tool_environment
from eventconv.hw.board.core import BoardCore
from eventconv.hw.boards import BOARDS, board_named
from eventconv.hw.layer.delta_detector import DeltaDetector
from eventconv.hw.layer.engine import EventConvEngine
from eventconv.hw.layer.fanout import FanoutAddressGenerator
from eventconv.hw.layer.layer import accumulator_unit
from eventconv.hw.layer.sparse_max_pool import SparseMaxPool
from eventconv.hw.link.host_link import HostLink
from eventconv.hw.target import GENERIC

__all__ = ["BlockHarness", "block_timing", "blocks", "main"]

class BlockHarness(wiring.Component):
    """``dut`` with its ports behind flip-flops: serial input ``si``, XOR-reduced output ``so``."""

    si: In(1)
    so: Out(1)

    def __init__(self, dut):
        self.dut = dut
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.dut
        inputs, outputs = [], []
        for _path, member, value in dut.signature.flatten(dut):
            (inputs if member.flow == In else outputs).append(Value.cast(value))
        previous = self.si
        for value in inputs:
            for bit in range(len(value)):
                ff = Signal()
                m.d.sync += ff.eq(previous)
                m.d.comb += value[bit].eq(ff)
                previous = ff
        level = []
        for value in outputs:
            ff = Signal(len(value))
            m.d.sync += ff.eq(value)
            level.extend(ff[i] for i in range(len(ff)))
        while len(level) > 1:
            nxt = []
            for i in range(0, len(level), 4):
                ff = Signal()
                group = level[i:i + 4]
                expr = group[0]
                for bit in group[1:]:
                    expr = expr ^ bit
                m.d.sync += ff.eq(expr)
                nxt.append(ff)
            level = nxt
        m.d.comb += self.so.eq(level[0] if level else previous)
        return m


def blocks(config, target=GENERIC):
    """Name -> factory of each block for ``config`` (a :class:`~eventconv.core.config.Config`)
    built for ``target`` (:class:`~eventconv.hw.target.Target`)."""
    c = config
    return {
        "detector": lambda: DeltaDetector(height=c.height, width=c.width,
                                          channels=c.channels_in,
                                          pixels_per_cycle=c.pixels_per_cycle, target=target),
        "fanout": lambda: FanoutAddressGenerator(
            height=c.height, width=c.width, channels_in=c.channels_in,
            channels_out=c.channels_out, kernel_size=c.kernel_size, lanes=c.lanes),
        "accumulator": lambda: accumulator_unit(c, target=target),
        "pool": lambda: SparseMaxPool(height=c.height, width=c.width,
                                      channels_out=c.channels_out,
                                      accumulator_width=c.accumulator_width,
                                      lanes=c.lanes, pool=c.pool, target=target),
        "engine": lambda: EventConvEngine(c, target=target),
        "hostlink": lambda: HostLink(config=c, timeout_cycles=2_400_000,
                                     clock_frequency=48_000_000, target=target),
        "board": lambda: BoardCore(c, clock_frequency=48e6, target=target),
    }


def block_timing(dut, family, mhz, workdir, seed=1):
    """Synthesise and place ``dut`` alone; returns (max MHz, worst path lines, log text)."""
    workdir = Path(workdir)
    top = Module()
    sync = ClockDomain("sync")
    top.domains.sync = sync
    top.submodules.harness = harness = BlockHarness(dut)
    clk, rst = sync.clk, sync.rst
    flow = FAMILIES[family]
    (workdir / "top.il").write_text(rtlil.convert(
        top, name="top", ports=[clk, rst, harness.si, harness.so], platform=flow.primitives))
    tools = tool_environment()
    yosys = tools["YOSYS"]
    pnr = [tools[flow.nextpnr], *flow.nextpnr_device]
    script = (f"read_rtlil top.il\n"
              f"{flow.synth_command} {flow.synth_options} -top top -json top.json\n")
    (workdir / "top.ys").write_text(script)
    subprocess.run([yosys, "-q", "-l", "yosys.log", "top.ys"], cwd=workdir,
                   check=True, stdout=subprocess.DEVNULL)
    if flow.netlist_pass is not None:
        flow.netlist_pass(workdir / "top.json")      # as make synth does
    result = subprocess.run(pnr + ["--json", "top.json", "--freq", str(mhz),
                                   "--timing-allow-fail", "--seed", str(seed), "-l", "pnr.log",
                                   "-q"], cwd=workdir, capture_output=True, text=True)
    log = (workdir / "pnr.log").read_text() if (workdir / "pnr.log").exists() else ""
    if result.returncode != 0:
        raise RuntimeError(f"nextpnr failed: {result.stderr[-2000:]}")
    fmax = [float(x) for x in re.findall(r"Max frequency for clock '[^']+': ([\d.]+) MHz", log)]
    path = []
    section = log.split("Critical path report for clock")
    if len(section) > 1:
        for line in section[-1].splitlines()[1:]:
            if line.startswith("Info: ") and ("Source" in line or "Sink" in line
                                              or "ns logic" in line):
                path.append(line[6:].strip())
            if "ns logic" in line:
                break
    return (fmax[-1] if fmax else 0.0), path, log


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m eventconv.flow.timing")
    parser.add_argument("names", nargs="*", help="blocks (default: all)")
    parser.add_argument("--board", default="icebreaker", choices=BOARDS,
                        help="family, target clock and default layer of this board")
    parser.add_argument("--freq", type=float, default=None,
                        help="target MHz (default: the board's engine clock)")
    parser.add_argument("--config", metavar="CFG.json", default=None,
                        help="layer (default: the board's default layer)")
    parser.add_argument("--path", action="store_true", help="print the worst path")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1],
                        help="nextpnr seeds (several: each result, then the lowest)")
    args = parser.parse_args(argv)
    spec = board_named(args.board)
    config = Config.from_json(args.config) if args.config else spec.default_config()
    mhz = args.freq or spec.clock_frequency / 1e6
    table = blocks(config, spec.target)
    names = args.names or list(table)
    for name in names:
        if name not in table:
            parser.error(f"block must be one of {', '.join(table)}, not {name!r}")
    for name in names:
        results = []
        for seed in args.seeds:
            with tempfile.TemporaryDirectory() as tmp:
                results.append(block_timing(table[name](), spec.family, mhz, tmp, seed))
        fmax, path, _ = min(results, key=lambda result: result[0])
        each = "" if len(results) == 1 else " (seeds: " + ", ".join(
            f"{result[0]:.1f}" for result in results) + ")"
        print(f"{name:12s} {spec.family} max {fmax:7.2f} MHz (target {mhz:g}){each}",
              flush=True)
        if args.path:
            for line in path:
                print("    " + line)


if __name__ == "__main__":
    sys.exit(main())
