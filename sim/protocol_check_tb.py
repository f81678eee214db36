"""A cocotb test of the testbenches' own stream checker (:class:`StreamMonitor`): it watches the
DUT's stream ``o`` with ``ready`` held low for a few cycles and reports; a DUT breaking the
stream rule must fail the test (tests/test_stream_checker.py)."""

import cocotb
from cocotb.triggers import RisingEdge

from eventconv.sim.case import write_result
from eventconv.sim.streams import StreamMonitor, reset, start_clock


@cocotb.test()
async def stalled_stream(dut):
    start_clock(dut)
    await reset(dut)
    StreamMonitor(dut, "o")     # ready stays low: every cycle's beat is held
    for _ in range(8):
        await RisingEdge(dut.clk)
    write_result({"cycles": 8})
