# amaranth: UnusedElaboratable=no
"""SparseMaxPool with early evaluation (``row_slack``, the generic target's own read port):
windows are read while the frame still runs, once no later beat can touch them.

The bench feeds the pool as the accumulator unit does: for each input event, in an order
where a later event lies at most ``input_slack`` rows above an earlier one, each output
position its kernel reaches (rows and columns descending, as the fan-out walks them) first
gets its accumulators written, then its window is given on ``touched``. A monitor fails the
test if an accumulator is written after the pool read it in the same frame (it would have
read a stale word), and the events must be exactly the model's, in the list order.
"""

import numpy as np
import pytest
from amaranth.hdl import Module, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator
from test_sparse_max_pool import (
    accumulator_banks,
    make_config,
    pool_frame,
    positions_of,
    random_video,
    take_beat,
    wire_pool,
)

from eventconv.core.model import EventConvModel
from eventconv.hw.layer.layer import output_slack, pool_row_slack
from eventconv.hw.layer.sparse_max_pool import SparseMaxPool
from eventconv.hw.layouts import EventStream, WindowStream
from eventconv.hw.target import GENERIC
from eventconv.sim.formal.pool_early import ECP5_POOL_PORT
from streams import add_protocol_checkers, make_rng, stall_extremes, stream_put


class EarlyBench(wiring.Component):
    """The pool (``row_slack``) with accumulator memories it reads at any time, written
    through a load port as in :class:`test_sparse_max_pool.PoolBench`."""

    def __init__(self, config, row_slack, target=GENERIC):
        self.config = c = config
        self.pool = SparseMaxPool(height=c.height, width=c.width, channels_out=c.channels_out,
                                  accumulator_width=c.accumulator_width,
                                  lanes=c.lanes, pool=c.pool, target=target,
                                  row_slack=row_slack)
        self.groups = c.channels_out // c.lanes
        self.depth = self.groups * c.height * c.width // 4
        width = self.pool.accumulator_width
        super().__init__({
            "touched": In(WindowStream(c.height, c.width)),
            "events": Out(EventStream(*c.output_shape)),
            "shift": In(5), "output_threshold": In(8), "dense": In(1),
            "load_bank": In(2), "load_address": In(self.pool.address_width),
            "load_data": In(data.ArrayLayout(signed(width), c.lanes)), "load_enable": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        pool = wire_pool(m, self)
        for j, q, read in accumulator_banks(m, self):
            m.d.comb += [pool.read.data[q][j].eq(read.data), read.addr.eq(pool.read.addr),
                         read.en.eq(pool.read.en)]
        return m


def slack_order(rng, events, input_slack):
    """Indices of ``events`` in raster order, shuffled so that a later event lies at most
    ``input_slack`` rows above an earlier one."""
    if not input_slack:
        return np.lexsort((events.x, events.y))
    return np.argsort(events.y + rng.uniform(0, input_slack + 0.999, len(events.y)),
                      kind="stable")


def reached(config, y, x):
    """Output positions an event at (y, x) updates, in the fan-out's order."""
    h, w, k, p = config.height, config.width, config.kernel_size, config.pad
    return [(oy, ox) for oy in range(min(h - 1, y + p), max(0, y + p - k + 1) - 1, -1)
            for ox in range(min(w - 1, x + p), max(0, x + p - k + 1) - 1, -1)]


def window_writes(config, acc, py, px):
    """Load writes setting the four positions of window (py, px) to ``acc``, every group."""
    lanes, h, w = config.lanes, config.height, config.width
    groups = config.channels_out // lanes
    grouped = acc.reshape(groups, lanes, h, w)
    return [(dy * 2 + dx, (g * h // 2 + py) * w // 2 + px,
             [int(v) for v in grouped[g, :, 2 * py + dy, 2 * px + dx]])
            for g in range(groups) for dy in (0, 1) for dx in (0, 1)]


def early_plans(config, frames, rng, input_slack):
    """The priming frame, then per frame the sequence of (writes, window) steps and the
    pool's events (in list order)."""
    model = EventConvModel(config)
    stored = np.zeros(model.pooled.shape, np.int64)
    plans = [dict(pool_frame(config, model.acc.copy(), stored, [], prime=True), steps=[])]
    for frame in frames:
        result = model.step(frame)
        events = result.input_events
        steps = []
        for index in slack_order(rng, events, input_slack):
            for oy, ox in reached(config, int(events.y[index]), int(events.x[index])):
                window = (oy // 2, ox // 2)
                steps.append((window_writes(config, model.acc, *window), window))
        beats = [window for _, window in steps]
        plan = pool_frame(config, model.acc, stored, beats, threshold=config.output_threshold)
        assert sorted(plan["events"]) == sorted(result.output_events.tuples())
        plans.append(dict(plan, steps=steps))
    return plans


def run_early(config, plans, row_slack, *, idle=0.0, stall=0.0, seed=0, target=GENERIC):
    """Simulate; per frame the events and the reads issued after the end of frame was
    taken. Fails on a write after the pool's read of that word in the frame."""
    dut = EarlyBench(config, row_slack, target)
    rng = make_rng(seed)
    source_rng, sink_rng = make_rng(rng.random()), make_rng(rng.random())
    results, late_reads, ended = [], [], []

    async def source(ctx):
        ctx.set(dut.shift, config.shift)
        for index, plan in enumerate(plans):
            if index == 1:
                # The priming frame runs with threshold 0, as the engine runs it; a new
                # threshold only once its events are out.
                while not results:
                    await ctx.tick()
                ctx.set(dut.output_threshold, config.output_threshold)
            for writes, (y, x) in plan["steps"]:
                for bank, address, values in writes:
                    ctx.set(dut.load_bank, bank)
                    ctx.set(dut.load_address, address)
                    ctx.set(dut.load_data, values)
                    ctx.set(dut.load_enable, 1)
                    await ctx.tick()
                ctx.set(dut.load_enable, 0)
                await stream_put(ctx, dut.touched, {"y": y, "x": x, "end_of_frame": 0},
                                 rng=source_rng, idle=idle)
            await stream_put(ctx, dut.touched, {"y": 0, "x": 0, "end_of_frame": 1},
                             rng=source_rng, idle=idle)
            ended.append(True)
            # The next frame's writes wait for this frame's done (the unit holds until it).
            while len(late_reads) < len(ended):
                await ctx.tick()

    async def monitor(ctx):
        """Reads per frame (those after its end), and no write of a word read this frame."""
        read, after, ending = set(), 0, False
        touched = dut.touched
        async for _, _, en, addr, done, load, address, valid, ready, end in ctx.tick().sample(
                dut.pool.read.en, dut.pool.read.addr, dut.pool.read.done, dut.load_enable,
                dut.load_address, touched.valid, touched.ready, touched.payload.end_of_frame):
            if en:      # a read on the edge of a write gets the old word
                read.add(addr)
                after += ending
            if load:
                assert address not in read, f"word {address} written after the pool read it"
            ending |= valid and ready and end
            if done:
                late_reads.append(after)
                read, after, ending = set(), 0, False

    async def sink(ctx):
        for _ in plans:
            events = []
            while True:
                beat = await take_beat(ctx, dut.events, sink_rng, stall)
                if beat.end_of_frame:
                    break
                events.append((int(beat.channel), int(beat.y), int(beat.x), int(beat.delta)))
            results.append(events)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    add_protocol_checkers(sim, dut)
    sim.add_testbench(source)
    sim.add_testbench(sink)
    sim.add_testbench(monitor, background=True)
    sim.run()
    return results, late_reads


def tail_reads(config, plan, row_slack):
    """Reads that must wait for the frame's end: from the first listed window not final then
    (its row at least the last touched row minus ``row_slack``) on."""
    order = plan["order"]
    if not order:
        return 0
    final = max(y for y, _ in plan["touched"]) - row_slack
    first = next((i for i, (y, _) in enumerate(order) if y >= final), len(order))
    return (len(order) - first) * config.channels_out // config.lanes * len(positions_of(config))


# (height, width, channels_in, channels_out, lanes, kernel_size, shift, bias range,
#  weight_max, pool, output_threshold, input_slack)
CASES = {
    "16x8_o2_l1_k3": (16, 8, 1, 2, 1, 3, 7, (-3000, 3000), 127, 2, 0, 0),
    "20x6_o4_l2_k5_pool1_u2": (20, 6, 1, 4, 2, 5, 8, (-2000, 2000), 127, 1, 2, 0),
    "16x8_o4_l4_k1_slack3": (16, 8, 2, 4, 4, 1, 3, (0, 400), 8, 2, 0, 3),
    "32x8_o2_l1_k3_pool1_slack5": (32, 8, 1, 2, 1, 3, 6, (-1000, 3000), 127, 1, 0, 5),
}


#: The cases also run with the ECP5's RAM registers (its third collection stage) and the
#: pool's own port, which no board builds yet (hw/target.py).
ECP5_CASES = ("20x6_o4_l2_k5_pool1_u2", "16x8_o4_l4_k1_slack3")


@pytest.mark.parametrize("idle, stall", stall_extremes())
@pytest.mark.parametrize("case, target", [(case, GENERIC) for case in CASES]
                         + [(case, ECP5_POOL_PORT) for case in ECP5_CASES],
                         ids=lambda value: getattr(value, "name", value))
def test_early_evaluation_equals_model_and_reads_final_windows_only(case, target, idle, stall):
    """Events exactly the model's in list order, under stalls; no window read before its last
    write; and without stalls most reads happen while the frame runs."""
    *shape, pool, threshold, input_slack = CASES[case]
    rng = np.random.default_rng(sorted(CASES).index(case) * 10 + int(idle * 10))
    config = make_config(rng, *shape, pool=pool, output_threshold=threshold)
    row_slack = pool_row_slack(config, input_slack)
    # A still frame (no events: an empty frame, its end of frame right behind the frame
    # before's events) between moving ones.
    video = random_video(rng, config, 3, change=0.1)
    plans = early_plans(config, [*video[:2], video[1], video[2]], rng, input_slack)
    assert not plans[3]["steps"]
    events, late = run_early(config, plans, row_slack, idle=idle, stall=stall,
                             seed=int(rng.integers(99)), target=target)
    assert events == [plan["events"] for plan in plans]
    total = sum(len(plan["order"]) for plan in plans[1:])
    assert total > 10, "a test that tests nothing"
    if idle == stall == 0:
        # Never fewer than the windows not final at the end (the pool may lag behind where
        # many became final at once), and most were read while the frame ran.
        tails = [tail_reads(config, plan, row_slack) for plan in plans[1:]]
        assert all(got >= tail for got, tail in zip(late[1:], tails, strict=True))
        reads = total * config.channels_out // config.lanes * len(positions_of(config))
        assert sum(late[1:]) < reads / 2


def test_slack_of_a_chain():
    """``row_slack`` and the output's slack: the kernel's reach plus half the input's slack
    (window rows), the output's in rows (twice, plus the window's own row, with pool 1)."""
    rng = np.random.default_rng(0)
    k3 = make_config(rng, 8, 8, 1, 2, 1, 3, 7, (0, 1), pool=2)
    k5 = make_config(rng, 8, 8, 1, 2, 1, 5, 7, (0, 1), pool=1)
    assert [pool_row_slack(k3, s) for s in (0, 1, 2, 3)] == [1, 2, 2, 3]
    assert [output_slack(k3, s) for s in (0, 3)] == [1, 3]
    assert [pool_row_slack(k5, 0), output_slack(k5, 0), output_slack(k5, 1)] == [2, 5, 7]
    assert pool_row_slack(k3, None) is None and output_slack(k5, None) is None
