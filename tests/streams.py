"""Amaranth-simulator helpers shared by every block test: stream sources and sinks with
random idle cycles and random backpressure, and a plain-function wrapper around a simulation.

Written once so that every block is exercised the same way (STYLE.md: Glasgow's
``stream_put``/``stream_get``).
"""

import random

from amaranth.sim import Simulator


async def stream_put(ctx, stream, payload, *, rng=None, idle=0.0):
    """Offer one beat; random idle cycles before it when ``rng`` and ``idle`` are given."""
    while rng is not None and rng.random() < idle:
        await ctx.tick()
    ctx.set(stream.payload, payload)
    ctx.set(stream.valid, 1)
    await ctx.tick().until(stream.ready)
    ctx.set(stream.valid, 0)


async def stream_get(ctx, stream, *, rng=None, stall=0.0):
    """Take one beat, holding ready low on random cycles (backpressure). Returns the payload."""
    while True:
        ready = not (rng is not None and rng.random() < stall)
        ctx.set(stream.ready, ready)
        _, _, valid, payload = await ctx.tick().sample(stream.valid, stream.payload)
        if ready and valid:
            ctx.set(stream.ready, 0)
            return payload


def simulate(dut, testbenches, *, deadline_cycles=None, vcd=None):
    """Run ``dut`` with a 1 MHz clock and the given ``async def tb(ctx)`` testbenches."""
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    for tb in testbenches:
        sim.add_testbench(tb)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run_until(deadline_cycles * 1e-6) if deadline_cycles else sim.run()
    elif deadline_cycles:
        sim.run_until(deadline_cycles * 1e-6)
    else:
        sim.run()


def stall_profiles():
    """(idle, stall) probability pairs every stream test runs with: none, light, heavy."""
    return [(0.0, 0.0), (0.3, 0.3), (0.7, 0.6)]


def make_rng(seed):
    return random.Random(seed)
