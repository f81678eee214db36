"""The engine's ``frame_cycles`` figure against cycles counted in the Amaranth simulator: from the
cycle a frame's first beat is taken (a pixel, or a window's first camera event, or an empty
window's end) to the cycle its end of frame is given, both included, with idle cycles on the
input and backpressure on the output."""

import numpy as np

from eventconv.core.kernels import filter_bank_config
from eventconv.hw.layer.engine import EventConvEngine
from streams import make_rng, simulate, stream_put

CONFIG = filter_bank_config(4, 4, channels_out=2)


def counted_cycles(dut, source, items):
    """Send ``items`` (each a list of payloads) on ``source`` and take the events; returns
    (``frame_cycles`` after each end of frame, the cycles counted from the transfers)."""
    rng = make_rng(5)
    now = {"cycle": 0, "first": [], "end": [], "open": False}
    seen = []

    async def clock(ctx):
        # A frame's first beat is the first after the last one's end (its last pixel, or an
        # end of window), and its end of frame; both counted by their transfer cycles.
        async for _, _, *sample in ctx.tick().sample(
                source.valid, source.ready, source.payload,
                dut.events.valid, dut.events.ready, dut.events.payload.end_of_frame):
            valid, ready, payload, event_valid, event_ready, end = sample
            if valid and ready:
                if not now["open"]:
                    now["first"].append(now["cycle"])
                closing = payload.last if hasattr(payload, "last") else payload.end_of_window
                now["open"] = not closing
            if event_valid and event_ready and end:
                now["end"].append(now["cycle"])
            now["cycle"] += 1

    async def sender(ctx):
        for beats in items:
            for beat in beats:
                await stream_put(ctx, source, beat, rng=rng, idle=0.3)

    async def sink(ctx):
        while len(seen) < len(items):
            ready = rng.random() > 0.3
            ctx.set(dut.events.ready, ready)
            _, _, valid, end = await ctx.tick().sample(dut.events.valid,
                                                       dut.events.payload.end_of_frame)
            if valid and ready and end:
                # The figures are valid from the cycle after the beat.
                await ctx.tick()
                seen.append(ctx.get(dut.frame_cycles))

    simulate(dut, [clock, sender, sink], deadline_cycles=20_000)
    assert len(seen) == len(items) == len(now["first"]) == len(now["end"])
    return seen, [end - first + 1 for first, end in zip(now["first"], now["end"], strict=True)]


def test_frame_cycles_count_from_first_pixel_to_end_of_frame():
    dut = EventConvEngine(CONFIG)
    frames = np.random.default_rng(3).integers(0, 256, size=(4, 4, 4), dtype=np.uint8)
    items = [[{"data": [int(sample)], "first": n == 0, "last": n == 15}
              for n, sample in enumerate(frame.reshape(-1))] for frame in frames]
    figures, counted = counted_cycles(dut, dut.pixels, items)
    assert figures == counted


def test_frame_cycles_of_camera_windows_an_empty_one_included():
    dut = EventConvEngine(CONFIG, address_events=True)
    end = {"channel": 0, "y": 0, "x": 0, "end_of_window": 1}
    windows = [[{"channel": 0, "y": y, "x": x, "end_of_window": 0}
                for y, x in events] + [end]
               for events in ([(0, 0), (1, 2), (3, 3)], [], [(2, 1)] * 4, [])]
    figures, counted = counted_cycles(dut, dut.camera, windows)
    assert figures == counted
