# amaranth: UnusedElaboratable=no
"""FanoutAddressGenerator against the model's fanout_updates, beat for beat, under stalls."""

import numpy as np
import pytest

from eventconv.core.config import Config
from eventconv.core.model import Events, accumulate, fanout_updates
from eventconv.hw.layer.fanout import FanoutAddressGenerator
from streams import make_rng, simulate, stall_profiles, stream_put

UPDATE_FIELDS = ("y", "x", "group", "channel", "tap", "delta", "end_of_frame")
END_OF_FRAME = {"channel": 0, "y": 0, "x": 0, "delta": 0, "end_of_frame": 1}

# (kernel_size, height, width, channels_in, channels_out, lanes)
GEOMETRIES = [
    (1, 4, 6, 2, 3, 1),
    (3, 6, 8, 2, 4, 2),
    (3, 4, 4, 3, 2, 2),
    (5, 6, 8, 2, 4, 4),
    (5, 8, 6, 3, 6, 2),
    (7, 8, 10, 2, 2, 1),
    (7, 8, 8, 2, 4, 4),
]


def make_config(rng, k, h, w, cin, cout, lanes):
    return Config.from_dict({
        "height": h, "width": w, "channels_in": cin, "channels_out": cout, "kernel_size": k,
        "weights": rng.integers(-128, 128, (cout, cin, k, k)).tolist(), "lanes": lanes})


def random_frames(rng, config, frames, events_per_frame):
    """Lists of (c, y, x, d): every corner and some border pixels, then random pixels."""
    h, w = config.height, config.width
    out = []
    for _ in range(frames):
        pixels = [(0, 0), (0, w - 1), (h - 1, 0), (h - 1, w - 1),
                  (0, int(rng.integers(w))), (int(rng.integers(h)), w - 1)]
        pixels += [(int(rng.integers(h)), int(rng.integers(w))) for _ in range(events_per_frame)]
        order = rng.permutation(len(pixels))[:int(rng.integers(0, len(pixels) + 1))]
        out.append([(int(rng.integers(config.channels_in)), *pixels[i],
                     int(rng.integers(-255, 256))) for i in order])
    return out


def expected_beats(config, frame):
    """The model's updates of a frame regrouped by lanes, then the end-of-frame beat."""
    beats = []
    for c, y, x, d in frame:
        for o, oy, ox, ky, kx in fanout_updates(config, c, y, x):
            if o % config.lanes == 0:
                beats.append({"y": oy, "x": ox, "group": o // config.lanes, "channel": c,
                              "tap": ky * config.kernel_size + kx, "delta": d,
                              "end_of_frame": 0})
    return beats + [dict(END_OF_FRAME, group=0, tap=0)]


def run_fanout(config, frames, *, idle=0.0, stall=0.0, seed=0):
    """Simulate; returns (beats as dicts, cycle of each beat's transfer, cycle of first take)."""
    dut = FanoutAddressGenerator(height=config.height, width=config.width,
                                 channels_in=config.channels_in,
                                 channels_out=config.channels_out,
                                 kernel_size=config.kernel_size, lanes=config.lanes)
    items = []
    for frame in frames:
        items += [{"channel": c, "y": y, "x": x, "delta": d, "end_of_frame": 0}
                  for c, y, x, d in frame]
        items.append(END_OF_FRAME)
    count = sum(len(expected_beats(config, frame)) for frame in frames)
    rng = make_rng(seed)
    source_rng, sink_rng = make_rng(rng.random()), make_rng(rng.random())
    beats, cycles, first_take = [], [], []

    async def source(ctx):
        for item in items:
            await stream_put(ctx, dut.events, item, rng=source_rng, idle=idle)

    async def sink(ctx):
        cycle = 0
        while len(beats) < count:
            ready = sink_rng.random() >= stall
            ctx.set(dut.updates.ready, ready)
            _, _, valid, payload, took = await ctx.tick().sample(
                dut.updates.valid, dut.updates.payload,
                dut.events.valid & dut.events.ready)
            if took and not first_take:
                first_take.append(cycle)
            if ready and valid:
                beats.append({name: payload[name] for name in UPDATE_FIELDS})
                cycles.append(cycle)
            cycle += 1
            assert cycle < 100_000, "the design hangs"
        # Nothing more may come out.
        ctx.set(dut.updates.ready, 1)
        for _ in range(20):
            _, _, valid = await ctx.tick().sample(dut.updates.valid)
            assert not valid, "a beat after the expected ones"

    simulate(dut, [source, sink])
    assert len(beats) == count, "simulation stopped before every beat came out"
    return beats, cycles, first_take[0]


@pytest.mark.parametrize("idle, stall", stall_profiles())
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=lambda g: "k{}_{}x{}_c{}_o{}_l{}".format(*g))
def test_fanout_matches_model(geometry, idle, stall):
    rng = np.random.default_rng(list(geometry) + [int(idle * 10)])
    config = make_config(rng, *geometry)
    frames = random_frames(rng, config, frames=3, events_per_frame=6 if geometry[0] < 7 else 3)
    frames.insert(1, [])   # a frame without events still ends
    beats, _, _ = run_fanout(config, frames, idle=idle, stall=stall, seed=int(rng.integers(99)))
    expected = [beat for frame in frames for beat in expected_beats(config, frame)]
    assert beats == expected
    # The accumulate ops carried equal the model's macs, frame by frame.
    ends = [i for i, beat in enumerate(beats) if beat["end_of_frame"]]
    starts = [0] + [i + 1 for i in ends[:-1]]
    acc = np.zeros((config.channels_out, config.height, config.width), np.int64)
    for frame, start, end in zip(frames, starts, ends, strict=True):
        macs = accumulate(config, acc, Events.from_tuples(frame))
        assert (end - start) * config.lanes == macs


def test_fanout_border_events_spend_no_cycle_outside_the_frame():
    """Corner events of a 7 x 7 kernel: 16 of 49 taps in frame, so 16 beats and 16 cycles."""
    config = make_config(np.random.default_rng(1), 7, 8, 8, 1, 1, 1)
    frame = [(0, 0, 0, 5), (0, 7, 7, -5), (0, 0, 7, 1), (0, 7, 0, 2)]
    beats, cycles, first_take = run_fanout(config, [frame])
    assert len(beats) == 4 * 16 + 1
    assert cycles[-1] - first_take == 4 * 16 + FanoutAddressGenerator.LATENCY


@pytest.mark.parametrize("geometry", [(1, 4, 4, 2, 2, 2), (1, 4, 6, 1, 3, 1), (3, 6, 6, 2, 4, 2),
                                      (7, 8, 8, 1, 2, 1)],
                         ids=lambda g: "k{}_{}x{}_c{}_o{}_l{}".format(*g))
def test_fanout_throughput_one_beat_per_cycle(geometry):
    """Dense frame, no stalls: U beats in U + LATENCY cycles (the first event's decode and
    load), no gap between events."""
    config = make_config(np.random.default_rng(2), *geometry)
    frame = [(c, y, x, 1) for y in range(config.height) for x in range(config.width)
             for c in range(config.channels_in)]
    beats, cycles, first_take = run_fanout(config, [frame, frame[:3]])
    first_end = next(i for i, beat in enumerate(beats) if beat["end_of_frame"])
    updates = first_end   # beats before the end-of-frame beat
    # The end-of-frame beat follows the last update directly: U + 1 beats, from LATENCY cycles
    # after the first event is taken.
    latency = FanoutAddressGenerator.LATENCY
    assert cycles[first_end] - first_take == updates + latency
    assert cycles[:first_end + 1] == list(range(first_take + latency,
                                                first_take + latency + updates + 1))
    print(f"fanout {geometry}: {len(frame)} events, {updates} beats, "
          f"{cycles[first_end] - first_take} cycles")


@pytest.mark.parametrize("changes, error, message", [
    ({"kernel_size": 4}, ValueError, r"kernel_size must be one of 1, 3, 5, 7, not 4"),
    ({"kernel_size": True}, ValueError, r"kernel_size must be one of 1, 3, 5, 7, not True"),
    ({"height": 7}, ValueError, r"height must be even \(2 x 2 pooling\) and in 3\.\.4096, not 7"),
    ({"height": 2}, ValueError, r"height must be an integer in 3\.\.4096, not 2"),
    ({"width": 6, "kernel_size": 7, "height": 8}, ValueError,
     r"width must be an integer in 7\.\.4096, not 6"),
    ({"width": 8.0}, TypeError, r"width must be an integer in 3\.\.4096, not 8\.0"),
    ({"width": 5000}, ValueError, r"width must be an integer in 3\.\.4096, not 5000"),
    ({"channels_in": 0}, ValueError, r"channels_in must be an integer in 1\.\.1024, not 0"),
    ({"channels_in": "2"}, TypeError, r"channels_in must be an integer in 1\.\.1024, not '2'"),
    ({"channels_out": 1025}, ValueError,
     r"channels_out must be an integer in 1\.\.1024, not 1025"),
    ({"lanes": 0}, ValueError, r"lanes must be an integer in 1\.\.4, not 0"),
    ({"lanes": 8}, ValueError, r"lanes must be an integer in 1\.\.4, not 8"),
    ({"lanes": 3}, ValueError, r"lanes must divide channels_out = 4, not 3"),
    ({"lanes": None}, TypeError, r"lanes must be an integer in 1\.\.4, not None"),
])
def test_fanout_bad_parameters(changes, error, message):
    params = {"height": 6, "width": 8, "channels_in": 2, "channels_out": 4, "kernel_size": 3,
              "lanes": 2, **changes}
    with pytest.raises(error, match=message):
        FanoutAddressGenerator(**params)


def test_fanout_accepts_numpy_integers():
    dut = FanoutAddressGenerator(height=np.int64(4), width=4, channels_in=1,
                                 channels_out=np.int32(2), kernel_size=3, lanes=2)
    assert dut.groups == 1
