"""Generic cocotb stream bench: drive input streams, collect output streams, under stalls.

The case (JSON, from :func:`eventconv.sim.runner.run_cocotb`)::

    {"constants": {"threshold": 5, ...},          # plain input ports, held for the whole run
     "inputs":  {"pixels": [int, ...], ...},       # packed payloads per input stream
     "outputs": {"events": 123, ...},              # how many beats to take per output stream
     "idle": 0.3, "stall": 0.3, "seed": 1,         # random idle cycles / backpressure
     "quiet_cycles": 50, "timeout_cycles": 100000}

The result: ``{"outputs": {name: [int, ...]}, "extra": {name: [...]}, "cycles": n}``, where
``extra`` holds beats that arrived after the expected count during ``quiet_cycles`` (a block
that duplicates beats shows them there).
"""

import cocotb
from cocotb.triggers import ClockCycles, with_timeout

from eventconv.sim.case import read_case, start_bench, write_result


@cocotb.test()
async def stream_bench(dut):
    case = read_case()
    bench = await start_bench(dut, case, sources=case["inputs"], sinks=case["outputs"],
                              at_rest=case.get("constants", {}).items(),
                              timeout_cycles=200_000)
    drivers, monitors, counter = bench.drivers, bench.monitors, bench.counter
    tasks = [cocotb.start_soon(drivers[n].send_all(beats)) for n, beats in case["inputs"].items()]
    outputs = {}

    async def collect(name, count):
        outputs[name] = [await monitors[name].receive() for _ in range(count)]

    collectors = [cocotb.start_soon(collect(n, c)) for n, c in case["outputs"].items()]
    for task in tasks + collectors:
        await with_timeout(task, bench.timeout_ns, "ns")
    cycles = counter.count
    extra = {}
    for name, monitor in monitors.items():
        extra[name] = await monitor.quiet(case.get("quiet_cycles", 50))
    await ClockCycles(dut.clk, 1)
    write_result({"outputs": outputs, "extra": extra, "cycles": cycles})
