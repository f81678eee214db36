"""Reusable cocotb 2.1 valid/ready stream driver and monitor for Amaranth's exported Verilog.

An Amaranth stream port ``name`` becomes ``name__valid``, ``name__ready`` and ``name__payload``
(the payload one packed vector). Payloads travel as plain integers here; the caller packs and
unpacks them with the layout (:func:`eventconv.sim.runner.pack` / ``unpack``).

Both classes take a ``random.Random`` and a probability: the driver inserts idle cycles
(``valid`` low), the monitor withholds ``ready`` (backpressure). ``valid`` never depends on
``ready``, and the payload is held until transferred, as amaranth.lib.stream requires.
"""

import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

__all__ = ["StreamDriver", "StreamMonitor", "start_clock", "reset"]


def start_clock(dut, period_ns=10):
    Clock(dut.clk, period_ns, unit="ns").start()


async def reset(dut, cycles=2):
    """Synchronous active-high reset (Amaranth's ``rst``), then wait for the next edge."""
    dut.rst.value = 1
    for _ in range(cycles):
        await RisingEdge(dut.clk)
    dut.rst.value = 0


class StreamDriver:
    """Source side of a stream: offers beats, with random idle cycles between them."""

    def __init__(self, dut, name, *, rng=None, idle=0.0):
        self.clk = dut.clk
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.rng = rng or random.Random(0)
        self.idle = idle
        self.valid.value = 0
        self.sent = 0

    async def send(self, payload):
        """Offer one beat and return after the clock edge that transfers it."""
        while self.rng.random() < self.idle:
            await RisingEdge(self.clk)
        self.payload.value = payload
        self.valid.value = 1
        while True:
            await ReadOnly()
            transferred = bool(self.ready.value)
            await RisingEdge(self.clk)
            if transferred:
                break
        self.valid.value = 0
        self.sent += 1

    async def send_all(self, payloads, on_sent=None):
        for payload in payloads:
            await self.send(payload)
            if on_sent is not None:
                on_sent(payload)


class StreamMonitor:
    """Sink side of a stream: takes beats, withholding ``ready`` at random (backpressure)."""

    def __init__(self, dut, name, *, rng=None, stall=0.0):
        self.clk = dut.clk
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.rng = rng or random.Random(0)
        self.stall = stall
        self.ready.value = 0
        self.rst = getattr(dut, "rst", None)
        self.name = name
        cocotb.start_soon(self._check_protocol())

    async def _check_protocol(self):
        """On every clock: once ``valid`` is high and the beat not taken, ``valid`` stays high
        and the payload unchanged until it is (an AssertionError fails the test). The results
        alone would not show a beat that changed while stalled."""
        held = None
        while True:
            await ReadOnly()
            valid, payload = bool(self.valid.value), self.payload.value
            resetting = self.rst is not None and bool(self.rst.value)
            if held is not None and not resetting:
                assert valid, f"{self.name}: valid dropped before the beat was taken"
                assert payload == held, (f"{self.name}: payload changed before the beat was "
                                         f"taken ({held} -> {payload})")
            taken = bool(self.ready.value)
            held = payload if valid and not taken and not resetting else None
            await RisingEdge(self.clk)

    async def receive(self):
        """Return the next transferred payload (an int) after the edge that took it."""
        while True:
            ready = self.rng.random() >= self.stall
            self.ready.value = int(ready)
            await ReadOnly()
            valid = bool(self.valid.value)
            payload = int(self.payload.value) if ready and valid else None
            await RisingEdge(self.clk)
            if payload is not None:
                self.ready.value = 0
                return payload

    async def receive_until(self, done, limit=None):
        """Receive beats until ``done(payload)`` is true for one (included) or ``limit`` beats."""
        beats = []
        while limit is None or len(beats) < limit:
            beats.append(await self.receive())
            if done(beats[-1]):
                break
        return beats

    async def quiet(self, cycles):
        """Keep ready high for ``cycles`` and return any beats that arrive (should be none)."""
        extra = []
        self.ready.value = 1
        for _ in range(cycles):
            await ReadOnly()
            if self.valid.value:
                extra.append(int(self.payload.value))
            await RisingEdge(self.clk)
        self.ready.value = 0
        return extra
