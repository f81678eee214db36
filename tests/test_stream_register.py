# amaranth: UnusedElaboratable=no
"""The register slice passes every beat once, in order, under random idle and backpressure."""

import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import Out

from eventconv.hw.layouts import event_layout
from eventconv.hw.primitives.stream_register import StreamRegister
from streams import make_rng, simulate, stall_profiles, stream_get, stream_put


@pytest.mark.parametrize("idle, stall", stall_profiles())
@pytest.mark.parametrize("skid_loads_when_empty", [False, True])
def test_every_beat_once_in_order(idle, stall, skid_loads_when_empty):
    layout = event_layout(4, 8, 8)
    dut = StreamRegister(layout, skid_loads_when_empty=skid_loads_when_empty)
    rng = make_rng(7)
    beats = [{"channel": i % 4, "y": i % 8, "x": (i * 5) % 8, "delta": (i * 37) % 511 - 255,
              "end_of_frame": int(i % 17 == 0)} for i in range(300)]
    got = []

    async def source(ctx):
        for beat in beats:
            await stream_put(ctx, dut.i, beat, rng=rng, idle=idle)

    async def sink(ctx):
        for _ in beats:
            p = await stream_get(ctx, dut.o, rng=rng, stall=stall)
            got.append({name: int(getattr(p, name)) for name in beats[0]})
        for _ in range(10):  # nothing more comes out
            assert not ctx.get(dut.o.valid)
            await ctx.tick()

    simulate(dut, [source, sink])
    assert got == beats


@pytest.mark.parametrize("skid_loads_when_empty", [False, True])
def test_full_throughput_without_stalls(skid_loads_when_empty):
    dut = StreamRegister(event_layout(1, 4, 4), skid_loads_when_empty=skid_loads_when_empty)
    cycles = []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.i.valid, 1)
        taken = 0
        for cycle in range(40):
            ctx.set(dut.i.payload, {"x": cycle % 4})
            _, _, i_ready, o_valid = await ctx.tick().sample(dut.i.ready, dut.o.valid)
            taken += i_ready
            if o_valid:
                cycles.append(cycle)
        assert taken == 40

    simulate(dut, [bench])
    assert cycles == list(range(1, 40))  # latency 1, one beat per clock


def test_bad_option_is_refused():
    with pytest.raises(TypeError, match=r"skid_loads_when_empty must be a bool \(True or False\), "
                                        r"not 1"):
        StreamRegister(event_layout(1, 4, 4), skid_loads_when_empty=1)


class _Broken(wiring.Component):
    """A source breaking the stream rule: ``valid`` blinks, or the payload counts while held."""

    o: Out(stream.Signature(8))

    def __init__(self, fault):
        self.fault = fault
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        count = Signal(8)
        m.d.sync += count.eq(count + 1)
        m.d.comb += self.o.payload.eq(count if self.fault == "payload" else 5)
        m.d.comb += self.o.valid.eq(1 if self.fault == "payload" else count[0])
        return m


@pytest.mark.parametrize("fault, message", [("valid", "valid dropped"),
                                            ("payload", "payload changed")])
def test_the_protocol_checker_catches_a_broken_stream(fault, message):
    # Every block test runs this checker on every stream port (streams.simulate): it must
    # fail on a source that breaks the rule, even when every beat's value is later right.
    dut = _Broken(fault)

    async def stalled_sink(ctx):
        ctx.set(dut.o.ready, 0)
        for _ in range(6):
            await ctx.tick()

    with pytest.raises(AssertionError, match=message):
        simulate(dut, [stalled_sink])
