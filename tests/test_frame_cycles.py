"""The engine's ``frame_cycles`` figure against cycles counted in the Amaranth simulator: from the
cycle a frame's first pixel is taken to the cycle its end of frame is given, both included,
with idle cycles on the input and backpressure on the output."""

import numpy as np

from eventconv.core.kernels import filter_bank_config
from eventconv.hw.layer.engine import EventConvEngine
from streams import make_rng, simulate, stream_put


def test_frame_cycles_count_from_first_pixel_to_end_of_frame():
    config = filter_bank_config(4, 4, channels_out=2)
    dut = EventConvEngine(config)
    frames = np.random.default_rng(3).integers(0, 256, size=(4, 4, 4), dtype=np.uint8)
    rng = make_rng(5)
    now = {"cycle": 0, "first": [], "end": []}
    seen = []

    async def clock(ctx):
        # The cycles of the transfers: a frame's first pixel, and its end of frame.
        async for _, _, *sample in ctx.tick().sample(
                dut.pixels.valid, dut.pixels.ready, dut.pixels.payload.first,
                dut.events.valid, dut.events.ready, dut.events.payload.end_of_frame):
            pixel_valid, pixel_ready, first, event_valid, event_ready, end = sample
            if pixel_valid and pixel_ready and first:
                now["first"].append(now["cycle"])
            if event_valid and event_ready and end:
                now["end"].append(now["cycle"])
            now["cycle"] += 1

    async def source(ctx):
        for frame in frames:
            samples = frame.reshape(-1)
            for n, sample in enumerate(samples):
                await stream_put(ctx, dut.pixels, {"data": [int(sample)], "first": n == 0,
                                                   "last": n == len(samples) - 1},
                                 rng=rng, idle=0.3)

    async def sink(ctx):
        while len(seen) < len(frames):
            ready = rng.random() > 0.3
            ctx.set(dut.events.ready, ready)
            _, _, valid, end = await ctx.tick().sample(dut.events.valid,
                                                       dut.events.payload.end_of_frame)
            if valid and ready and end:
                # The figures are valid from the cycle after the beat.
                await ctx.tick()
                seen.append(ctx.get(dut.frame_cycles))

    simulate(dut, [clock, source, sink], deadline_cycles=20_000)
    assert len(seen) == len(frames) == len(now["first"]) == len(now["end"])
    for cycles, first, end in zip(seen, now["first"], now["end"], strict=True):
        assert cycles == end - first + 1
