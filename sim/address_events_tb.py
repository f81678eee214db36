"""cocotb bench for the address-event detector
(:class:`eventconv.hw.layer.address_events.AddressEventDetector`): give each window's camera
events and its end of window, collect each window's events, under random idle cycles on
``camera`` and random backpressure on ``events``.

The top level has the ports ``camera`` (stream in), ``events`` (stream out), ``threshold``,
``step`` and ``dense``. The case::

    {"step": int,
     "windows": [{"beats": [packed camera beat, ..., packed end of window],
                  "threshold": int, "dense": 0 or 1}, ...],
     "end_of_frame_mask": int,      # the end_of_frame bit of a packed output event
     "idle": 0.3, "stall": 0.3, "seed": 1, "quiet_cycles": 30, "timeout_cycles": 200000}

A window's ``threshold`` and ``dense`` are set once the window before has given its last beat
(its end of window): the block takes them with the end-of-window beat. The result::

    {"windows": [{"events": [int, ...], "first": n, "end": n}, ...], "extra": [int, ...]}

``first`` is the cycle whose edge took the window's first beat on ``camera``, ``end`` the cycle
whose edge took its end-of-frame beat on ``events`` (cycles counted from the end of reset), and
``extra`` holds output beats after the last window's end of frame.
"""

import cocotb
from cocotb.triggers import with_timeout

from eventconv.sim.case import read_case, start_bench, write_result


@cocotb.test()
async def address_events_bench(dut):
    case = read_case()
    windows = case["windows"]
    first = windows[0] if windows else {"threshold": 0, "dense": 0}
    bench = await start_bench(dut, case, sources=["camera"], sinks=["events"],
                              at_rest=[("step", case["step"]),
                                       ("threshold", first["threshold"]),
                                       ("dense", first["dense"])],
                              timeout_cycles=case.get("timeout_cycles", 200_000))
    driver, monitor = bench.drivers["camera"], bench.monitors["events"]
    counter = bench.counter
    mask = case["end_of_frame_mask"]
    firsts = []

    async def source():
        for window in windows:
            dut.threshold.value = window["threshold"]
            dut.dense.value = window["dense"]
            for index, beat in enumerate(window["beats"]):
                await driver.send(beat)
                if index == 0:
                    firsts.append(counter.count)

    sender = cocotb.start_soon(source())
    results = []
    for _ in windows:
        events = await with_timeout(monitor.receive_until(lambda beat: beat & mask),
                                    bench.timeout_ns, "ns")
        results.append({"events": events, "end": counter.count})
    await with_timeout(sender, bench.timeout_ns, "ns")
    for result, taken in zip(results, firsts, strict=True):
        result["first"] = taken
    extra = await monitor.quiet(case.get("quiet_cycles", 30))
    write_result({"windows": results, "extra": extra})
