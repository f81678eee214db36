# amaranth: UnusedElaboratable=no
"""AccumulatorUnit (behind the fan-out) against the model's accumulate, under stalls and hazards.

The memory is checked twice per frame: looked into directly in the cycle the end-of-frame beat
first shows on ``touched`` (so every write must already be done), and read back through the
``read`` port during the hold (the way the pool sees it).
"""

import numpy as np
import pytest
from amaranth.hdl import Module, ResetInserter
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from eventconv.core.clip import load_clip
from eventconv.core.config import Config
from eventconv.core.model import EventConvModel, Events, accumulate, fanout_updates
from eventconv.flow.verilog import ECP5_PRIMITIVES, ICE40_PRIMITIVES, export_verilog
from eventconv.hw.layer.accumulator import AccumulatorUnit
from eventconv.hw.layer.accumulator_spram import SpramAccumulatorUnit
from eventconv.hw.layer.fanout import FanoutAddressGenerator
from eventconv.hw.layouts import (
    AccumulatorReadSignature,
    EventStream,
    WindowStream,
    event_layout,
    window_layout,
)
from eventconv.hw.target import Target
from eventconv.sim.runner import ECP5_MODELS, ice40_models, pack, run_cocotb, unpack
from streams import add_protocol_checkers, make_rng, simulate, stall_profiles, stream_put

END_OF_FRAME = {"channel": 0, "y": 0, "x": 0, "delta": 0, "end_of_frame": 1}
CYCLE_LIMIT = 100_000


class FanoutAccumulator(wiring.Component):
    """Fan-out and accumulator chained, with the accumulator's read port (and its ``done``)
    outside. ``clear`` is an extra synchronous reset, so a test can reset in the middle of a run.
    """

    def __init__(self, config, multiplier_registers=False, ram_read_register=False,
                 spram=False):
        self.config = c = config
        self.fanout = FanoutAddressGenerator(
            height=c.height, width=c.width, channels_in=c.channels_in,
            channels_out=c.channels_out, kernel_size=c.kernel_size, lanes=c.lanes)
        unit = SpramAccumulatorUnit if spram else AccumulatorUnit
        self.accumulator = unit.from_config(
            c, target=Target("test", ram_read_register=ram_read_register,
                             multiplier_registers=multiplier_registers,
                             spram_accumulators=spram))
        super().__init__({
            "events": In(EventStream(c.channels_in, c.height, c.width)),
            "touched": Out(WindowStream(c.height, c.width)),
            "read": In(AccumulatorReadSignature(
                address_width=self.accumulator.address_width,
                accumulator_width=self.accumulator.accumulator_width, lanes=c.lanes,
                registered=ram_read_register, paced=spram)),
            "clear": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.fanout = self.fanout
        m.submodules.accumulator = self.accumulator
        wiring.connect(m, wiring.flipped(self.events), self.fanout.events)
        wiring.connect(m, self.fanout.updates, self.accumulator.updates)
        wiring.connect(m, self.accumulator.touched, wiring.flipped(self.touched))
        wiring.connect(m, wiring.flipped(self.read), self.accumulator.read)
        return ResetInserter(self.clear)(m)


def make_config(rng, k, h, w, cin, cout, lanes, *, bias=3000):
    return Config.from_dict({
        "height": h, "width": w, "channels_in": cin, "channels_out": cout, "kernel_size": k,
        "weights": rng.integers(-128, 128, (cout, cin, k, k)).tolist(),
        "bias": rng.integers(-bias, bias + 1, cout).tolist(), "lanes": lanes})


def video_frames(rng, config, count, change=0.2):
    """Input events of ``count`` frames of a random video, through the model's detector."""
    model = EventConvModel(config.replace(threshold=int(rng.integers(0, 30))))
    shape = (config.channels_in, config.height, config.width)
    image = rng.integers(0, 256, shape)
    frames = []
    for _ in range(count):
        frames.append(model.step(image.astype(np.uint8)).input_events.tuples())
        step = np.where(rng.random(shape) < change, rng.integers(-120, 121, shape), 0)
        image = np.clip(image + step, 0, 255)
    return frames


def burst(rng, config, pixels, length, reference=None):
    """Events on a few pixels back to back; deltas move each pixel's reference within 0..255,
    as the detector's would, so the accumulators stay in their derived range."""
    reference = {} if reference is None else reference
    out = []
    for _ in range(length):
        c, y, x = pixels[int(rng.integers(len(pixels)))]
        new = int(rng.integers(0, 256))
        out.append((c, y, x, new - reference.get((c, y, x), 0)))
        reference[(c, y, x)] = new
    return out


def expected_frames(config, frames):
    """Per frame: accumulators (Cout, H, W) after it, and the set of touched windows."""
    acc = np.broadcast_to(config.bias[:, None, None],
                          (config.channels_out, config.height, config.width)).astype(np.int64)
    out = []
    for frame in frames:
        accumulate(config, acc, Events.from_tuples(frame))
        windows = {(oy // 2, ox // 2) for c, y, x, _ in frame
                   for _, oy, ox, _, _ in fanout_updates(config, c, y, x)}
        out.append((acc.copy(), windows))
    return out


def memory_image(config, words):
    """Accumulators (Cout, H, W) from the bank words ``words[j][q][address]`` of lane j, bank
    q = (y % 2) * 2 + x % 2, address (group * H/2 + y // 2) * W/2 + x // 2."""
    lanes, h, w = config.lanes, config.height, config.width
    groups = config.channels_out // lanes
    # [j][dy][dx][group][py][px] -> [group][j][py][dy][px][dx]
    arr = np.array(words, dtype=np.int64).reshape(lanes, 2, 2, groups, h // 2, w // 2)
    return arr.transpose(3, 0, 4, 1, 5, 2).reshape(config.channels_out, h, w)


def run_chain(config, frames, *, idle=0.0, stall=0.0, seed=0, hold_cycles=3,
              release_always=False, clear_after=None, noisy_reads=False,
              multiplier_registers=False, ram_read_register=False, spram=False):
    """Simulate the chain. Returns per frame a dict: ``peeked`` (memory image in the cycle the
    end of frame shows on touched), ``read_back`` (through ``read``), ``windows``, ``beats``
    (touched transfers) and ``from_update`` (cycles from the frame's first update beat taken by
    the accumulator to its end of frame valid on touched).

    With ``noisy_reads``, ``read`` is driven with random addresses and ``en`` whenever the
    sink is not reading: the unit must ignore it outside the hold. ``multiplier_registers``,
    ``ram_read_register``: the unit's options (the sink then reads through the data register).
    ``spram``: the :class:`SpramAccumulatorUnit` (its reads paced by ``wait``).
    """
    dut = FanoutAccumulator(config, multiplier_registers, ram_read_register, spram)
    unit = dut.accumulator
    rng = make_rng(seed)
    source_rng, sink_rng = make_rng(rng.random()), make_rng(rng.random())
    results = []
    released = [0]   # frames the sink is done with; gates the source when resetting mid-run
    reading = [False]
    noise_rng = make_rng(rng.random())

    async def source(ctx):
        for index, frame in enumerate(frames):
            while clear_after is not None and released[0] < index:
                await ctx.tick()
            for c, y, x, d in frame:
                item = {"channel": c, "y": y, "x": x, "delta": d, "end_of_frame": 0}
                await stream_put(ctx, dut.events, item, rng=source_rng, idle=idle)
            await stream_put(ctx, dut.events, END_OF_FRAME, rng=source_rng, idle=idle)

    async def noise(ctx):
        async for _ in ctx.tick():
            if not reading[0]:
                ctx.set(dut.read.addr, noise_rng.randrange(unit.depth))
                ctx.set(dut.read.en, noise_rng.random() < 0.5)

    def peek(ctx):
        if spram:   # lane j's RAM: window * 4 + q
            return memory_image(config, [[[ctx.get(ram[i]) for i in range(q, unit.depth, 4)]
                                          for q in range(4)] for ram in unit.accumulators])
        return memory_image(config, [[[ctx.get(bank[i]) for i in range(unit.depth)]
                                      for bank in banks] for banks in unit.accumulators])

    async def sink(ctx):
        ctx.set(dut.read.done, int(release_always))
        cycle = 0
        for index in range(len(frames)):
            result = {"windows": set(), "beats": 0, "peeked": None, "read_back": None}
            first_update = None
            while True:
                ready = sink_rng.random() >= stall
                ctx.set(dut.touched.ready, ready)
                _, _, valid, payload, update_taken = await ctx.tick().sample(
                    dut.touched.valid, dut.touched.payload,
                    unit.updates.valid & unit.updates.ready)
                if update_taken and first_update is None:
                    first_update = cycle
                cycle += 1
                assert cycle < CYCLE_LIMIT, "no end of frame: the design hangs"
                if ready and valid:
                    result["beats"] += 1
                    if payload.end_of_frame:
                        break
                    result["windows"].add((payload.y, payload.x))
                # Values after the edge: the cycle in which the end of frame first shows.
                if result["peeked"] is None and ctx.get(dut.touched.valid) and \
                        ctx.get(dut.touched.payload.end_of_frame):
                    result["peeked"] = peek(ctx)
                    result["from_update"] = None if first_update is None else \
                        cycle - first_update
            ctx.set(dut.touched.ready, 0)
            if not release_always:
                for _ in range(hold_cycles):
                    await ctx.tick()
                    assert not ctx.get(dut.touched.valid)
                    cycle += 1
                words = [[[] for _ in range(4)] for _ in range(config.lanes)]
                reading[0] = True
                if ram_read_register:
                    ctx.set(dut.read.take, 1)
                windows = unit.depth // 4 if spram else unit.depth
                ctx.set(dut.read.en, 0)     # the noise's may be high
                for address in range(windows):
                    while spram and ctx.get(dut.read.wait):   # a read of the noise's
                        await ctx.tick()
                        cycle += 1
                    ctx.set(dut.read.addr, address)
                    ctx.set(dut.read.en, 1)
                    await ctx.tick()
                    ctx.set(dut.read.en, 0)
                    while spram and ctx.get(dut.read.wait):
                        await ctx.tick()
                        cycle += 1
                    if ram_read_register:
                        # The word is in the data register a cycle later; idle reads
                        # (random addresses, ``en`` low) must not disturb it.
                        ctx.set(dut.read.addr, noise_rng.randrange(unit.depth))
                        await ctx.tick()
                        cycle += 1
                    data = ctx.get(dut.read.data)
                    for j in range(config.lanes):
                        for q in range(4):
                            words[j][q].append(data[q][j])
                reading[0] = False
                result["read_back"] = memory_image(config, words)
                done = dut.clear if clear_after == index else dut.read.done
                ctx.set(done, 1)
                await ctx.tick()
                ctx.set(done, 0)
                cycle += windows + 1
            results.append(result)
            released[0] = index + 1

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    add_protocol_checkers(sim, dut)
    sim.add_testbench(source)
    sim.add_testbench(sink)
    if noisy_reads:
        sim.add_testbench(noise, background=True)
    sim.run()
    assert len(results) == len(frames), "simulation stopped before every frame ended"
    return results


def check_chain(config, frames, results):
    for index, ((acc, windows), got) in enumerate(
            zip(expected_frames(config, frames), results, strict=True)):
        np.testing.assert_array_equal(got["peeked"], acc,
                                      err_msg=f"memory at end of frame {index}")
        if got["read_back"] is not None:
            np.testing.assert_array_equal(got["read_back"], acc,
                                          err_msg=f"read back, frame {index}")
        assert got["windows"] == windows, f"touched windows of frame {index}"


# The unit's variants: the generic one; the options the ECP5 boards build with (registered
# multiplier and read); the accumulators in single-port RAM (the iCE40's SPRAM).
VARIANTS = {"generic": {}, "ecp5": {"multiplier_registers": True, "ram_read_register": True},
            "spram": {"spram": True}}

# (kernel_size, height, width, channels_in, channels_out, lanes)
GEOMETRIES = [
    (3, 6, 8, 2, 4, 2),
    (1, 4, 6, 2, 3, 1),
    (5, 6, 6, 1, 4, 4),
    (7, 8, 8, 2, 2, 1),
]


@pytest.mark.parametrize("idle, stall", stall_profiles())
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=lambda g: "k{}_{}x{}_c{}_o{}_l{}".format(*g))
@pytest.mark.parametrize("variant", VARIANTS)
def test_accumulators_equal_model_over_frames(geometry, idle, stall, variant):
    rng = np.random.default_rng(list(geometry) + [int(idle * 10)])
    config = make_config(rng, *geometry)
    change = 0.2 if geometry[0] < 7 else 0.08
    frames = [[]] + video_frames(rng, config, 3, change=change)
    results = run_chain(config, frames, idle=idle, stall=stall, seed=int(rng.integers(99)),
                        hold_cycles=int(rng.integers(1, 20)), noisy_reads=True,
                        **VARIANTS[variant])
    check_chain(config, frames, results)


def test_accumulators_equal_model_on_real_clip():
    """The real clip (32 x 32): a dense first frame, then sparse frames of walking people."""
    clip = load_clip("vtest_32x32")[:4]
    rng = np.random.default_rng(10)
    config = make_config(rng, 3, 32, 32, 1, 4, 4).replace(threshold=8)
    model = EventConvModel(config)
    frames = [model.step(frame[None]).input_events.tuples() for frame in clip]
    assert 0 < len(frames[-1]) < 200   # the later frames really are sparse
    results = run_chain(config, frames, idle=0.1, stall=0.2, seed=2, hold_cycles=1)
    check_chain(config, frames, results)


HAZARD_GEOMETRIES = [
    (1, 4, 4, 2, 2, 2),   # one beat per event: the same address on consecutive cycles
    (1, 4, 4, 2, 2, 1),   # two groups: the same address two beats apart
    (3, 4, 4, 2, 1, 1),   # neighbouring pixels on a small frame
]


@pytest.mark.parametrize("idle, stall", stall_profiles())
@pytest.mark.parametrize("geometry", HAZARD_GEOMETRIES,
                         ids=lambda g: "k{}_{}x{}_c{}_o{}_l{}".format(*g))
@pytest.mark.parametrize("variant", VARIANTS)
def test_back_to_back_updates_of_one_address(geometry, idle, stall, variant):
    """Bursts on one pixel (both channels: one accumulator address) and its neighbours."""
    rng = np.random.default_rng(list(geometry) + [int(stall * 10)])
    config = make_config(rng, *geometry)
    reference = {}
    one_pixel = [(c, 1, 1) for c in range(config.channels_in)]
    neighbours = one_pixel + [(0, 1, 2), (1, 2, 1), (0, 2, 2), (1, 0, 0)]
    frames = [burst(rng, config, one_pixel, 30, reference),
              burst(rng, config, neighbours, 40, reference),
              burst(rng, config, [(0, 3, 3)], 10, reference)]
    results = run_chain(config, frames, idle=idle, stall=stall, seed=int(rng.integers(99)),
                        **VARIANTS[variant])
    check_chain(config, frames, results)


@pytest.mark.parametrize("geometry", [(1, 4, 4, 2, 2, 2), (1, 4, 4, 1, 4, 1), (3, 6, 6, 2, 4, 2),
                                      (7, 8, 8, 1, 2, 1)],
                         ids=lambda g: "k{}_{}x{}_c{}_o{}_l{}".format(*g))
@pytest.mark.parametrize("variant", VARIANTS)
def test_throughput_of_fanout_and_accumulator(geometry, variant):
    """No stalls: a frame of U update beats shows its end on touched U * BEAT_CYCLES + LATENCY
    cycles after its first update beat is taken (U beats, then the end-of-frame beat, LATENCY
    to touched): the fan-out and the accumulator never lose a cycle, even on back-to-back
    hazards (the SPRAM unit takes a beat every other cycle)."""
    rng = np.random.default_rng(5)
    config = make_config(rng, *geometry)
    reference = {}
    pixels = [(c, y, x) for y in range(config.height) for x in range(config.width)
              for c in range(config.channels_in)]
    frames = [burst(rng, config, pixels, 40, reference), burst(rng, config, pixels[:2], 20,
                                                               reference)]
    results = run_chain(config, frames, **VARIANTS[variant])
    check_chain(config, frames, results)
    unit = SpramAccumulatorUnit if variant == "spram" else AccumulatorUnit
    for index, (frame, got) in enumerate(zip(frames, results, strict=True)):
        beats = sum(len(fanout_updates(config, c, y, x)) for c, y, x, _ in frame) // config.lanes
        print(f"fanout+accumulator {geometry} frame {index}: {len(frame)} events, {beats} beats,"
              f" {got['from_update']} cycles from first update to end of frame on touched")
        assert got["from_update"] == beats * unit.BEAT_CYCLES + unit.LATENCY


def test_release_with_the_end_of_frame_skips_the_hold():
    rng = np.random.default_rng(6)
    config = make_config(rng, 3, 4, 6, 1, 2, 1)
    frames = video_frames(rng, config, 3, change=0.5)
    results = run_chain(config, frames, release_always=True, stall=0.3, seed=1)
    check_chain(config, frames, results)


def test_reset_restores_bias_and_the_clear_takes_depth_cycles():
    """The clear writes one address of all four banks of every lane per cycle."""
    rng = np.random.default_rng(7)
    config = make_config(rng, 3, 4, 4, 1, 4, 2)
    frames = video_frames(rng, config, 2, change=0.5)
    # After frame 0 the chain is reset: frame 1 starts again from bias.
    results = run_chain(config, frames + [[]], clear_after=0)
    check_chain(config, frames[:1], results[:1])
    check_chain(config, frames[1:] + [[]], results[1:])

    dut = AccumulatorUnit.from_config(config)
    assert dut.clear_cycles == dut.depth == (4 // 2) * 4 * 4 // 4
    ready_at = []

    async def watch(ctx):
        for cycle in range(dut.clear_cycles + 3):
            if ctx.get(dut.updates.ready):
                ready_at.append(cycle)
            await ctx.tick()

    simulate(dut, [watch])
    assert ready_at[0] == dut.clear_cycles


def test_accumulator_width_is_the_config_width_and_holds_the_extremes():
    """All-positive and all-negative weights with extreme bias: the derived width is exact."""
    k, cin, cout = 3, 1, 2
    weights = np.stack([np.full((cin, k, k), 127), np.full((cin, k, k), -128)])
    config = Config.from_dict({"height": 4, "width": 4, "channels_in": cin,
                               "channels_out": cout, "kernel_size": k,
                               "weights": weights.tolist(), "bias": [2**31 - 1 - 255 * 127 * 9,
                                                                     -(2**31) + 255 * 128 * 9]})
    unit = AccumulatorUnit(height=4, width=4, channels_in=cin, channels_out=cout, kernel_size=k,
                           weights=config.weights, bias=config.bias)
    assert unit.accumulator_width == config.accumulator_width == 32
    # Every pixel at 255: the centre accumulators reach both ends of the range.
    frames = [[(0, y, x, 255) for y in range(4) for x in range(4)],
              [(0, y, x, -255) for y in range(4) for x in range(4)]]
    results = run_chain(config, frames)
    check_chain(config, frames, results)
    assert results[0]["peeked"][0, 1, 1] == 2**31 - 1
    assert results[0]["peeked"][1, 1, 1] == -(2**31)
    small = AccumulatorUnit(height=4, width=4, channels_in=1, channels_out=1, kernel_size=1,
                            weights=[[[[1]]]], bias=[0])
    assert small.accumulator_width == 9   # 0..255


def test_touched_is_deduplicated_but_complete():
    """Groups of one position are one window: at most one touched beat per tap position."""
    rng = np.random.default_rng(8)
    config = make_config(rng, 1, 4, 4, 1, 4, 1)
    frames = [[(0, 0, 0, 5), (0, 0, 1, 5), (0, 1, 0, 5), (0, 3, 3, 5), (0, 0, 0, -5)],
              [(0, 1, 1, 5)], [(0, 1, 1, -5), (0, 1, 1, 5)]]
    results = run_chain(config, frames, stall=0.5, seed=3)
    check_chain(config, frames, results)
    # Windows (0,0) (0,0) (0,0) (1,1) (0,0): three beats and the end of frame. The next frames
    # start on the window the frame before ended on: given again, once.
    assert [result["beats"] for result in results] == [4, 2, 2]


@pytest.mark.parametrize("changes, error, message", [
    ({"kernel_size": 2}, ValueError, r"kernel_size must be one of 1, 3, 5, 7, not 2"),
    ({"height": 5}, ValueError, r"height must be even \(2 x 2 pooling\) and in 3\.\.4096, not 5"),
    ({"width": 2}, ValueError, r"width must be an integer in 3\.\.4096, not 2"),
    ({"channels_in": 0}, ValueError, r"channels_in must be an integer in 1\.\.1024, not 0"),
    ({"channels_out": 2.0}, TypeError, r"channels_out must be an integer in 1\.\.1024, not 2\.0"),
    ({"lanes": 3}, ValueError, r"lanes must divide channels_out = 4, not 3"),
    ({"lanes": 5}, ValueError, r"lanes must be an integer in 1\.\.4, not 5"),
    ({"weights": np.zeros((4, 2, 3, 2), int).tolist()}, ValueError,
     r"weights must be nested lists shaped \[4, 2, 3, 3\], not \[4, 2, 3, 2\]"),
    ({"weights": np.full((4, 2, 3, 3), 128).tolist()}, ValueError,
     r"weights\[0\]\[0\]\[0\]\[0\] must be an integer in -128\.\.127, not 128"),
    ({"bias": [0, 0, 0]}, ValueError, r"bias must be nested lists shaped \[4\], not \[3\]"),
    ({"bias": [0, 0, 0, 2**31]}, ValueError,
     r"bias\[3\] must be an integer in -2147483648\.\.2147483647, not 2147483648"),
    ({"target": True}, TypeError, r"target must be an eventconv.hw.target.Target \(one of "
                                  r"generic, ice40, ecp5\), not True"),
])
def test_accumulator_bad_parameters(changes, error, message):
    params = {"height": 6, "width": 8, "channels_in": 2, "channels_out": 4, "kernel_size": 3,
              "weights": np.ones((4, 2, 3, 3), int).tolist(), "bias": [0, 1, 2, 3], "lanes": 2,
              **changes}
    with pytest.raises(error, match=message):
        AccumulatorUnit(**params)


def test_from_config_rejects_other_objects():
    with pytest.raises(TypeError, match=r"config must be an eventconv.core.config.Config, not 3"):
        AccumulatorUnit.from_config(3)


# The exported Verilog under Icarus, driven by sim/accumulator_tb.py.

@pytest.mark.parametrize("geometry, idle, stall, variant", [
    ((3, 6, 8, 2, 4, 2), 0.3, 0.3, "generic"),
    ((1, 4, 4, 2, 2, 2), 0.0, 0.0, "generic"),
    ((3, 6, 8, 2, 4, 2), 0.3, 0.3, "multiplier"),
    # The board builds' netlists: the ECP5's multipliers are MULT18X18D primitives (our model
    # of it); the iCE40's accumulators SB_SPRAM256KA blocks (Yosys's model).
    ((3, 6, 8, 2, 4, 2), 0.3, 0.3, "ecp5"),
    ((1, 4, 4, 2, 2, 2), 0.0, 0.0, "ecp5"),
    ((3, 6, 8, 2, 4, 2), 0.3, 0.3, "spram"),
    ((1, 4, 4, 2, 2, 2), 0.0, 0.0, "spram"),
])
def test_exported_verilog_under_cocotb(geometry, idle, stall, variant, tmp_path):
    rng = np.random.default_rng(list(geometry) + [9])
    config = make_config(rng, *geometry)
    if geometry[0] == 1:
        reference = {}
        pixels = [(c, 1, 1) for c in range(config.channels_in)] + [(0, 1, 2)]
        frames = [burst(rng, config, pixels, 40, reference), [],
                  burst(rng, config, pixels, 20, reference)]
    else:
        frames = [[]] + video_frames(rng, config, 3)
    ecp5, spram = variant == "ecp5", variant == "spram"
    dut = FanoutAccumulator(config, multiplier_registers=variant in ("multiplier", "ecp5"),
                            spram=spram)
    events = event_layout(config.channels_in, config.height, config.width)
    windows = window_layout(config.height, config.width)
    data_layout = dut.read.signature.members["data"].shape
    case = {
        "frames": [[pack(events, {"channel": c, "y": y, "x": x, "delta": d, "end_of_frame": 0})
                    for c, y, x, d in frame] + [pack(events, END_OF_FRAME)] for frame in frames],
        "end_of_frame_mask": pack(windows, {"end_of_frame": 1}),
        "depth": dut.accumulator.depth // 4 if spram else dut.accumulator.depth,
        "idle": idle, "stall": stall, "seed": 4,
    }
    platform = {"ecp5": ECP5_PRIMITIVES, "spram": ICE40_PRIMITIVES}.get(variant)
    verilog_text = export_verilog(dut, "fanout_accumulator", platform=platform)
    assert ("MULT18X18D" in verilog_text) == ecp5
    assert ("SB_SPRAM256KA" in verilog_text) == spram
    models = ECP5_MODELS if ecp5 else ice40_models(tmp_path) if spram else ()
    result = run_cocotb(verilog_text=verilog_text, toplevel="fanout_accumulator",
                        test_module="eventconv.sim.accumulator_tb", case=case,
                        extra_sources=models)
    for index, ((acc, expected_windows), got) in enumerate(
            zip(expected_frames(config, frames), result["frames"], strict=True)):
        touched = [unpack(windows, beat) for beat in got["touched"]]
        assert touched[-1]["end_of_frame"] == 1 and \
            not any(beat["end_of_frame"] for beat in touched[:-1])
        assert {(beat["y"], beat["x"]) for beat in touched[:-1]} == expected_windows
        words = [data.Const(data_layout, word) for word in got["reads"]]
        image = memory_image(config, [[[word[q][j] for word in words] for q in range(4)]
                                      for j in range(config.lanes)])
        unit = type(dut.accumulator)
        np.testing.assert_array_equal(image, acc, err_msg=f"frame {index}")
        beats = sum(len(fanout_updates(config, c, y, x)) for c, y, x, _ in frames[index])
        print(f"cocotb frame {index}: {beats // config.lanes} beats, {got['cycles']} cycles")
        if stall == idle == 0 and index > 0:
            # Offered, taken, fan-out latency, U beats, end of frame beat, LATENCY to touched;
            # the SPRAM unit takes beats in even cycles only, so the first may wait one.
            least = (beats // config.lanes * unit.BEAT_CYCLES + 1
                     + FanoutAddressGenerator.LATENCY + unit.LATENCY)
            assert got["cycles"] - least in range(unit.BEAT_CYCLES)
    assert result["extra"] == []
