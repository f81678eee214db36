"""What every testbench here shares: the case and result files between the pytest process and
its cocotb test (:func:`eventconv.sim.runner.run_cocotb` names them in the environment), a
cycle counter, and the start of a stream bench (:func:`start_bench`)."""

import json
import os
import random
from dataclasses import dataclass

import cocotb
from cocotb.triggers import RisingEdge

from eventconv.sim.streams import StreamDriver, StreamMonitor, reset, start_clock

__all__ = ["read_case", "write_result", "CycleCounter", "Bench", "start_bench"]



def read_case():
    with open(os.environ["EVENTCONV_CASE"]) as f:
        return json.load(f)


def write_result(result):
    with open(os.environ["EVENTCONV_RESULT"], "w") as f:
        json.dump(result, f)


class CycleCounter:
    def __init__(self, clk):
        self.clk, self.count = clk, 0
        cocotb.start_soon(self._run())

    async def _run(self):
        while True:
            await RisingEdge(self.clk)
            self.count += 1


@dataclass
class Bench:
    """A started stream bench: a driver per input stream, a monitor per output stream (by
    port name), the cycle counter from the end of reset, and the case's timeout in ns."""

    drivers: dict
    monitors: dict
    counter: CycleCounter
    timeout_ns: int


async def start_bench(dut, case, *, sources, sinks, at_rest=(), timeout_cycles=100_000):
    """Clock, input ports ``at_rest`` (``(port, value)`` pairs) set, a driver on each of
    ``sources`` with the case's random ``idle`` cycles and a monitor on each of ``sinks`` with
    its random ``stall`` (backpressure), all seeded from the case's ``seed``; then reset."""
    rng = random.Random(case.get("seed", 0))
    start_clock(dut)
    for port, value in at_rest:
        getattr(dut, port).value = value
    drivers = {name: StreamDriver(dut, name, rng=random.Random(rng.random()),
                                  idle=case.get("idle", 0.0)) for name in sources}
    monitors = {name: StreamMonitor(dut, name, rng=random.Random(rng.random()),
                                    stall=case.get("stall", 0.0)) for name in sinks}
    await reset(dut)
    return Bench(drivers, monitors, CycleCounter(dut.clk),
                 case.get("timeout_cycles", timeout_cycles) * 10)
