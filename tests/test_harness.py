"""The simulation harness's stream source and sink (eventconv.sim.harness), in the Amaranth
simulator: every word offered arrives once, in order, under idle cycles and backpressure; the
sink's stream-rule check flags a beat dropped or changed before it is taken."""

import pytest
from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.sim import Simulator

from eventconv.sim.harness import StreamSink, StreamSource, chance, power_of_two
from streams import simulate

END_BIT = 9
SIGNATURE = stream.Signature(END_BIT + 1)


def test_chance_and_depths():
    assert (chance(0), chance(0.001), chance(0.5), chance(1)) == (0, 1, 128, 255)
    assert (power_of_two(1), power_of_two(17), power_of_two(64)) == (16, 32, 64)
    with pytest.raises(ValueError, match="probability"):
        chance(1.5)


def loopback(words, *, idle=0.0, stall=0.0, seeds=(12345, 999), sink_depth=256):
    """One frame through a source and a sink; returns (per cycle (valid, ready) while the
    source is busy, the sink's flags and words)."""
    m = Module()
    m.submodules.source = source = StreamSource(SIGNATURE, 256)
    m.submodules.sink = sink = StreamSink(SIGNATURE, sink_depth, END_BIT)
    wiring.connect(m, source.stream, sink.stream)
    out = {"trace": []}

    async def bench(ctx):
        ctx.set(source.idle, chance(idle))
        ctx.set(sink.stall, chance(stall))
        ctx.set(source.seed, seeds[0])
        ctx.set(sink.seed, seeds[1])
        for i, word in enumerate(words):
            ctx.set(source.words.data[i], word)
        ctx.set(source.end, len(words))
        for _ in range(4 * len(words) + 100):
            _, _, waiting, valid, ready, done = await ctx.tick().sample(
                source.waiting, source.stream.valid, source.stream.ready, sink.done)
            if waiting:
                out["trace"].append((valid, ready))
        out.update(done=ctx.get(sink.done), overflow=ctx.get(sink.overflow),
                   error=ctx.get(sink.protocol_error), count=ctx.get(sink.count),
                   words=[ctx.get(sink.words.data[i]) for i in range(ctx.get(sink.count))])

    simulate(m, [bench])
    return out


FRAME = [*range(200), 1 << END_BIT]


def test_idle_and_stall_come_at_their_chance_and_vary_with_the_seed():
    calm = loopback(FRAME)
    # Idle 0 and stall 0: a beat every cycle, from the first cycle the source is busy.
    assert calm["trace"][1:] == [(1, 1)] * len(FRAME)
    runs = [loopback(FRAME, idle=0.5, stall=0.5, seeds=(seed, seed + 7)) for seed in (2, 3)]
    for run in runs:
        assert run["words"] == FRAME and not run["error"]
        # Per beat, p / (1 - p) = 1 cycle each way on average (200 beats: about 0.1 spread).
        idle = sum(not valid for valid, _ in run["trace"][1:]) / len(FRAME)
        stalled = sum(valid and not ready for valid, ready in run["trace"]) / len(FRAME)
        assert 0.7 < idle < 1.3 and 0.7 < stalled < 1.3
    assert runs[0]["trace"] != runs[1]["trace"]


def test_a_frame_longer_than_the_sink_is_flagged_not_lost():
    run = loopback(FRAME[-20:], sink_depth=16)
    assert run["overflow"] and not run["done"] and run["count"] == 16
    assert run["words"] == FRAME[-20:-4]


async def feed(ctx, source, words, written, depth):
    """Write ``words`` into the source's ring as room frees up (as the cocotb testbench does);
    returns the new count written, modulo ``2 * depth``."""
    sent = 0
    while sent < len(words):
        room = depth - ctx.get(source.waiting)
        if room < depth // 2:
            await ctx.tick()
            continue
        count = min(room, len(words) - sent)
        for k in range(count):
            ctx.set(source.words.data[(written + k) % depth], words[sent + k])
        written = (written + count) % (2 * depth)
        ctx.set(source.end, written)
        sent += count
        await ctx.tick()
    return written


@pytest.mark.parametrize("idle, stall", [(0, 0), (0.5, 0), (0, 0.5), (0.7, 0.7)])
def test_every_word_arrives_once_in_order(idle, stall):
    # A ring of 16 words: the frames (up to 41 words) stream through it in pieces.
    m = Module()
    m.submodules.source = source = StreamSource(SIGNATURE, 16)
    m.submodules.sink = sink = StreamSink(SIGNATURE, 64, END_BIT)
    wiring.connect(m, source.stream, sink.stream)
    frames = [[7, 300, 5, 1 << END_BIT], [1 << END_BIT], [*range(40), (1 << END_BIT) | 3]]
    received = []

    async def sender(ctx):
        ctx.set(source.idle, chance(idle))
        ctx.set(source.seed, 12345)
        written = 0
        for words in frames:
            written = await feed(ctx, source, words, written, 16)

    async def receiver(ctx):
        ctx.set(sink.stall, chance(stall))
        ctx.set(sink.seed, 999)
        for _ in frames:
            await ctx.tick().until(sink.done)
            count = ctx.get(sink.count)
            received.append([ctx.get(sink.words.data[i]) for i in range(count)])
            assert not ctx.get(sink.protocol_error)
            ctx.set(sink.clear, 1)
            await ctx.tick()
            ctx.set(sink.clear, 0)

    simulate(m, [sender, receiver], deadline_cycles=20_000)
    assert received == frames


@pytest.mark.parametrize("fault", ["valid_dropped", "payload_changed"])
def test_sink_flags_a_beat_changed_before_it_is_taken(fault):
    sink = StreamSink(SIGNATURE, 16, END_BIT)
    flagged = []

    async def bench(ctx):
        ctx.set(sink.stall, chance(1))
        ctx.set(sink.seed, 7)
        ctx.set(sink.stream.payload, 3)
        ctx.set(sink.stream.valid, 1)
        # Wait for a cycle in which the beat is offered and not taken.
        _, _, ready = await ctx.tick().sample(sink.stream.ready)
        while ready:
            _, _, ready = await ctx.tick().sample(sink.stream.ready)
        assert not ctx.get(sink.protocol_error)
        if fault == "valid_dropped":
            ctx.set(sink.stream.valid, 0)
        else:
            ctx.set(sink.stream.payload, 4)
        await ctx.tick()
        await ctx.tick()
        flagged.append(ctx.get(sink.protocol_error))

    # Not ``simulate``: its own stream-rule checkers would flag the planted fault first.
    sim = Simulator(sink)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run_until(200e-6)
    assert flagged == [1]
