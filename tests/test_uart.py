"""UART receiver and transmitter against bit-level references in the testbench, and looped
back to each other with mismatched baud rates, random idle input and random backpressure."""

import random

import pytest
from amaranth.hdl import Module
from amaranth.lib import stream, wiring

from eventconv.hw.link.uart import UARTReceiver, UARTTransmitter, received_layout, uart_divisor
from streams import simulate, stall_profiles, stream_get, stream_put


async def drive_character(ctx, line, byte, divisor, *, stop=1):
    """Bit-bang one 8N1 character onto ``line`` (the testbench's reference transmitter)."""
    for bit in [0, *((byte >> i) & 1 for i in range(8)), stop]:
        ctx.set(line, bit)
        await ctx.tick().repeat(divisor)
    ctx.set(line, 1)


async def sample_character(ctx, line, divisor):
    """Wait for a start bit on ``line`` and decode one character by sampling mid-bit; also
    checks that the line holds each bit for the whole bit time. Returns (byte, stop bit)."""
    while ctx.get(line):
        await ctx.tick()
    bits = []
    for _ in range(10):
        values = []
        for _ in range(divisor):
            values.append(ctx.get(line))
            await ctx.tick()
        assert len(set(values)) == 1, f"bit not stable for {divisor} cycles: {values}"
        bits.append(values[0])
    assert bits[0] == 0
    return sum(b << i for i, b in enumerate(bits[1:9])), bits[9]


@pytest.mark.parametrize("divisor", [4, 7, 48])
def test_transmitter_waveform(divisor):
    dut = UARTTransmitter(clock_frequency=divisor * 1000, baud_rate=1000)
    rng = random.Random(divisor)
    sent = [rng.randrange(256) for _ in range(12)] + [0x00, 0xFF, 0x55]
    got = []

    async def source(ctx):
        for byte in sent:
            await stream_put(ctx, dut.send, byte, rng=rng, idle=0.5)

    async def sink(ctx):
        for _ in sent:
            byte, stop = await sample_character(ctx, dut.tx, divisor)
            assert stop == 1
            got.append(byte)

    simulate(dut, [source, sink])
    assert got == sent


@pytest.mark.parametrize("idle,stall", stall_profiles())
@pytest.mark.parametrize("divisor", [4, 9, 48])
def test_receiver_bytes(divisor, idle, stall):
    dut = UARTReceiver(clock_frequency=divisor * 1000, baud_rate=1000)
    rng = random.Random(divisor)
    sent = [rng.randrange(256) for _ in range(16)] + [0x00, 0xFF]
    got = []

    async def line(ctx):
        for byte in sent:
            while rng.random() < idle:
                await ctx.tick().repeat(rng.randrange(1, divisor))
            await drive_character(ctx, dut.rx, byte, divisor)

    async def sink(ctx):
        for _ in sent:
            beat = await stream_get(ctx, dut.received, rng=rng, stall=stall)
            got.append((beat.data, beat.framing_error, beat.overrun))

    simulate(dut, [line, sink])
    assert got == [(b, 0, 0) for b in sent]


class Loopback(wiring.Component):
    def __init__(self, tx_divisor, rx_divisor):
        self.transmitter = UARTTransmitter(clock_frequency=tx_divisor * 1000, baud_rate=1000)
        self.receiver = UARTReceiver(clock_frequency=rx_divisor * 1000, baud_rate=1000)
        super().__init__({"send": wiring.In(stream.Signature(8)),
                          "received": wiring.Out(stream.Signature(received_layout()))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.transmitter = self.transmitter
        m.submodules.receiver = self.receiver
        m.d.comb += self.receiver.rx.eq(self.transmitter.tx)
        wiring.connect(m, wiring.flipped(self.send), self.transmitter.send)
        wiring.connect(m, self.receiver.received, wiring.flipped(self.received))
        return m


# Transmitter and receiver clocks differ by up to 2 % each way (the rate tolerance).
@pytest.mark.parametrize("tx_divisor,rx_divisor", [(50, 51), (51, 50), (16, 16), (100, 98)])
@pytest.mark.parametrize("idle,stall", stall_profiles())
def test_loopback(tx_divisor, rx_divisor, idle, stall):
    dut = Loopback(tx_divisor, rx_divisor)
    rng = random.Random(tx_divisor * rx_divisor)
    sent = [rng.randrange(256) for _ in range(20)]
    got = []

    async def source(ctx):
        for byte in sent:
            await stream_put(ctx, dut.send, byte, rng=rng, idle=idle)

    async def sink(ctx):
        for _ in sent:
            beat = await stream_get(ctx, dut.received, rng=rng, stall=stall)
            got.append((beat.data, beat.framing_error, beat.overrun))

    simulate(dut, [source, sink])
    assert got == [(b, 0, 0) for b in sent]


def test_receiver_overrun_keeps_first_and_flags_next():
    divisor = 8
    dut = UARTReceiver(clock_frequency=divisor, baud_rate=1)
    got = []

    async def line(ctx):
        for byte in (0x11, 0x22, 0x33, 0x44):
            await drive_character(ctx, dut.rx, byte, divisor)
        await ctx.tick().repeat(4 * divisor)   # the sink catches up here
        await drive_character(ctx, dut.rx, 0x55, divisor)

    async def sink(ctx):
        await ctx.tick().repeat(41 * divisor)  # not ready while 0x22..0x44 arrive
        for _ in range(2):
            beat = await stream_get(ctx, dut.received)
            got.append((beat.data, beat.overrun))

    simulate(dut, [line, sink])
    assert got == [(0x11, 0), (0x55, 1)]


def test_receiver_framing_error_break_and_glitch():
    divisor = 10
    dut = UARTReceiver(clock_frequency=divisor, baud_rate=1)
    got = []

    async def line(ctx):
        await drive_character(ctx, dut.rx, 0xA7, divisor, stop=0)
        ctx.set(dut.rx, 0)                    # a break: the line stays low for 30 bit times
        await ctx.tick().repeat(30 * divisor)
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(2 * divisor)
        ctx.set(dut.rx, 0)                    # a glitch shorter than half a bit
        await ctx.tick().repeat(divisor // 2 - 2)
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(2 * divisor)
        await drive_character(ctx, dut.rx, 0x3C, divisor)
        await ctx.tick().repeat(3 * divisor)

    async def sink(ctx):
        while True:
            beat = await stream_get(ctx, dut.received)
            got.append((beat.data, beat.framing_error, beat.overrun))

    simulate(dut, [line, sink], deadline_cycles=60 * divisor)
    assert got == [(0xA7, 1, 0), (0x3C, 0, 0)]


# The constructors raise before the components are complete; Amaranth still counts them.
@pytest.mark.filterwarnings("ignore:.*created but never used")
@pytest.mark.parametrize("clock,baud,message", [
    (12e6, 4e6, r"baud_rate must be at most clock_frequency / 4 = 3e\+06, not 4000000"),
    (100, 7, r"baud_rate must be within 2% of clock_frequency / an integer; 7 is 2\.0% away"),
    (0, 9600, r"clock_frequency must be a positive number \(Hz\), not 0"),
    (12e6, -1, r"baud_rate must be a positive number \(Hz\), not -1"),
])
def test_divisor_errors(clock, baud, message):
    with pytest.raises(ValueError, match=message):
        uart_divisor(clock, baud)
    with pytest.raises(ValueError, match=message):
        UARTReceiver(clock_frequency=clock, baud_rate=baud)
    with pytest.raises(ValueError, match=message):
        UARTTransmitter(clock_frequency=clock, baud_rate=baud)


@pytest.mark.filterwarnings("ignore:.*created but never used")
def test_divisor_type_errors():
    with pytest.raises(TypeError, match=r"baud_rate must be a positive number \(Hz\), not '9600'"):
        uart_divisor(12e6, "9600")
    with pytest.raises(TypeError, match=r"clock_frequency must be a positive number"):
        UARTTransmitter(clock_frequency=True, baud_rate=9600)


def test_divisor_values():
    assert uart_divisor(12e6, 1e6) == 12
    assert uart_divisor(48e6, 1_000_000) == 48
    assert uart_divisor(12e6, 115200) == 104  # 0.16 % off
