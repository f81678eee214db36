"""Amaranth-simulator helpers shared by every block test: stream sources and sinks with
random idle cycles and random backpressure, and a plain-function wrapper around a simulation.

Written once so that every block is exercised the same way (STYLE.md: Glasgow's
``stream_put``/``stream_get``).
"""

import random

from amaranth.hdl import Const, Value
from amaranth.lib import wiring
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
    add_protocol_checkers(sim, dut)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run_until(deadline_cycles * 1e-6) if deadline_cycles else sim.run()
    elif deadline_cycles:
        sim.run_until(deadline_cycles * 1e-6)
    else:
        sim.run()


def stream_ports(dut):
    """(name, stream) of every stream port of a Component, inputs and outputs."""
    signature = getattr(dut, "signature", None)
    if not isinstance(signature, wiring.Signature):
        return []
    return [(name, getattr(dut, name)) for name, member in signature.members.items()
            if member.is_signature
            and {"valid", "ready", "payload"} <= set(member.signature.members.keys())]


def add_protocol_checkers(sim, dut, resets=None):
    """A :func:`protocol_checker` on every stream port of ``dut``, running beside the test.
    ``resets``: {port name: signal} where a stream may also be dropped by a reset of its own
    (the engine's, which the host link's CONFIG pulses)."""
    for name, stream in stream_ports(dut):
        sim.add_testbench(protocol_checker(stream, name, (resets or {}).get(name)),
                          background=True)


def protocol_checker(stream, name, reset=None):
    """A testbench asserting, on every clock, the stream rule on ``stream``: once ``valid`` is
    high and the beat not taken, ``valid`` stays high and the payload unchanged until it is
    (unless the domain's reset, or ``reset``, is high). Results alone would not show a beat
    that changed while stalled and was then re-sent."""
    payload_bits = Value.cast(stream.payload)
    own_reset = Const(0) if reset is None else reset

    async def check(ctx):
        held = None
        async for _, reset, own, valid, ready, payload in ctx.tick().sample(
                own_reset, stream.valid, stream.ready, payload_bits):
            if held is not None and not reset:
                assert valid, f"{name}: valid dropped before the beat was taken"
                assert payload == held, (f"{name}: payload changed from {held:#x} to "
                                         f"{payload:#x} before the beat was taken")
            taken = ready or reset or own
            held = payload if valid and not taken else None
    return check


def stall_profiles():
    """(idle, stall) probability pairs every stream test runs with: none, light, heavy."""
    return [(0.0, 0.0), (0.3, 0.3), (0.7, 0.6)]


def stall_extremes():
    """None and heavy only, for the widest test matrices (CI's time)."""
    return [(0.0, 0.0), (0.7, 0.6)]


def make_rng(seed):
    return random.Random(seed)
