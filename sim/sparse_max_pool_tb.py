"""cocotb bench for the sparse max pool behind real accumulator memories (the test's
``PoolBench``): load the accumulators, give the touched windows, collect the output events.

The top level has the ports ``touched`` (stream in), ``events`` (stream out), ``shift``,
``output_threshold``, ``dense``, ``load_bank``, ``load_address``, ``load_data``,
``load_enable`` (the accumulators of all lanes at one position per cycle), ``releases``
(``read.done`` pulses) and ``protocol_errors`` (counters). The case::

    {"shift": int,
     "frames": [{"writes": [[bank, bank address, packed lanes], ...],
                 "touched": [packed window, ..., packed end of frame],
                 "output_threshold": int, "dense": 0 or 1}, ...],
     "end_of_frame_mask": int,      # the end_of_frame bit of a packed output event
     "idle": 0.3, "stall": 0.3, "seed": 1, "quiet_cycles": 30, "timeout_cycles": 100000}

The first frame after reset is the pool's priming frame. A frame's writes wait until the pool
released the frame before (the accumulators may only change then); a frame whose
``output_threshold`` or ``dense`` differs from the frame before's sets them only once that
frame's end of frame has come out on ``events`` (they may change only between frames). The
result: ``{"frames": [{"events": [int, ...], "cycles": n}, ...],
"extra": [int, ...], "releases": n, "protocol_errors": n}``, where ``cycles`` counts from the
frame's end of frame taken on ``touched`` (or, if later, from 2 cycles before the previous
frame's end of frame was taken on ``events``: a frame's reads wait for that) to its end of
frame taken on ``events``, and ``extra`` holds output beats after the last frame.
"""

import cocotb
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge, with_timeout

from eventconv.sim.case import read_case, start_bench, write_result


async def load(dut, writes):
    """Write accumulators, one position per cycle: inputs set between edges."""
    for bank, address, word in writes:
        await FallingEdge(dut.clk)
        dut.load_bank.value = bank
        dut.load_address.value = address
        dut.load_data.value = word
        dut.load_enable.value = 1
    await FallingEdge(dut.clk)
    dut.load_enable.value = 0


async def wait_releases(dut, count):
    while True:
        await ReadOnly()
        if int(dut.releases.value) >= count:
            return
        await RisingEdge(dut.clk)


@cocotb.test()
async def sparse_max_pool_bench(dut):
    case = read_case()
    first = case["frames"][0] if case["frames"] else {}
    bench = await start_bench(dut, case, sources=["touched"], sinks=["events"],
                              at_rest=[("shift", case["shift"]),
                                       ("output_threshold", first.get("output_threshold", 0)),
                                       ("dense", first.get("dense", 0)), ("load_bank", 0),
                                       ("load_address", 0), ("load_data", 0),
                                       ("load_enable", 0), ("clear", 0)])
    driver, monitor = bench.drivers["touched"], bench.monitors["events"]
    counter, timeout = bench.counter, bench.timeout_ns
    mask = case["end_of_frame_mask"]
    ends = []
    frames = []

    async def source():
        settings = (first.get("output_threshold", 0), first.get("dense", 0))
        for index, frame in enumerate(case["frames"]):
            await wait_releases(dut, index)
            wanted = (frame.get("output_threshold", 0), frame.get("dense", 0))
            if wanted != settings:
                while len(frames) < index:
                    await RisingEdge(dut.clk)
                await FallingEdge(dut.clk)
                dut.output_threshold.value, dut.dense.value = settings = wanted
            await RisingEdge(dut.clk)
            await load(dut, frame["writes"])
            await driver.send_all(frame["touched"])
            ends.append(counter.count)

    sender = cocotb.start_soon(source())
    out = None
    for index in range(len(case["frames"])):
        events = await with_timeout(monitor.receive_until(lambda beat: beat & mask),
                                    timeout, "ns")
        start = ends[index] if out is None else max(ends[index], out - 2)
        out = counter.count
        frames.append({"events": events, "cycles": out - start})
    await with_timeout(sender, timeout, "ns")
    extra = await monitor.quiet(case.get("quiet_cycles", 30))
    await ReadOnly()
    write_result({"frames": frames, "extra": extra, "releases": int(dut.releases.value),
                  "protocol_errors": int(dut.protocol_errors.value)})
