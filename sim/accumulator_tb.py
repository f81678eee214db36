"""cocotb bench for the fan-out + accumulator chain: events in, touched windows out, then the
accumulators read back through the read port before the reader pulses ``done``.

The top level has the ports ``events`` (stream in), ``touched`` (stream out), ``read__addr``,
``read__en``, ``read__data`` (a window's 4 x lanes accumulators), ``read__done`` (the
reader's pulse that lets the accumulators change again) and, for a paced port, ``read__wait``.
The case::

    {"frames": [[packed event, ..., packed end of frame], ...],
     "end_of_frame_mask": int,      # the end_of_frame bit of a packed touched beat
     "depth": int,                  # window addresses to read back per frame (bank depth)
     "idle": 0.3, "stall": 0.3, "seed": 1, "quiet_cycles": 30, "timeout_cycles": 100000}

The result: ``{"frames": [{"touched": [int, ...], "reads": [int, ...], "cycles": n}, ...],
"extra": [int, ...]}``, where ``cycles`` counts from the frame's first event offered to its end
of frame taken on ``touched`` and ``extra`` holds touched beats after the last frame.
"""

import cocotb
from cocotb.triggers import FallingEdge, RisingEdge, with_timeout

from eventconv.sim.case import read_case, start_bench, write_result


async def read_back(dut, depth):
    """Read ``depth`` window addresses, one per cycle: address before an edge, data after it
    (with a paced port, once ``read__wait`` is low)."""
    paced = hasattr(dut, "read__wait")
    words = []
    for address in range(depth):
        await FallingEdge(dut.clk)
        dut.read__addr.value = address
        dut.read__en.value = 1
        await RisingEdge(dut.clk)
        await FallingEdge(dut.clk)
        dut.read__en.value = 0
        while paced and int(dut.read__wait.value):
            await FallingEdge(dut.clk)
        words.append(int(dut.read__data.value))
    return words


@cocotb.test()
async def accumulator_bench(dut):
    case = read_case()
    bench = await start_bench(dut, case, sources=["events"], sinks=["touched"],
                              at_rest=[("read__addr", 0), ("read__en", 0), ("read__done", 0),
                                       ("clear", 0)])
    driver, monitor = bench.drivers["events"], bench.monitors["touched"]
    counter, timeout = bench.counter, bench.timeout_ns
    mask = case["end_of_frame_mask"]
    frames = []
    for beats in case["frames"]:
        start = counter.count
        sender = cocotb.start_soon(driver.send_all(beats))
        touched = await with_timeout(monitor.receive_until(lambda beat: beat & mask),
                                     timeout, "ns")
        cycles = counter.count - start
        await with_timeout(sender, timeout, "ns")
        reads = await read_back(dut, case["depth"])
        dut.read__done.value = 1
        await RisingEdge(dut.clk)
        dut.read__done.value = 0
        frames.append({"touched": touched, "reads": reads, "cycles": cycles})
    extra = await monitor.quiet(case.get("quiet_cycles", 30))
    write_result({"frames": frames, "extra": extra})
