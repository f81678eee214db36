"""cocotb testbench of the whole engine: a reusable class and the test the CLI runs.

:class:`EngineBench` holds the driver (frames to pixel beats), the monitor (output events until
end of frame, plus the frame's figures), reset, and the knobs. The ``run_frames`` test streams a
whole clip and writes every frame's output events and figures; the host side
(:mod:`eventconv.backends.rtl`) integrates the events into pooled maps and checks them.
"""

import json
import os
import random

import cocotb
import numpy as np
from cocotb.triggers import ReadOnly, RisingEdge

from eventconv.core.network import Network
from eventconv.hw.layouts import event_layout, pixel_layout
from eventconv.sim.case import read_case
from eventconv.sim.streams import StreamDriver, StreamMonitor, reset, start_clock

__all__ = ["EngineBench", "pixel_beats", "FieldDecoder"]


def pixel_beats(frame, pixels_per_cycle):
    """Packed pixel beats of one frame, uint8 (Cin, H, W), in raster order (channels adjacent)."""
    samples = np.ascontiguousarray(frame.transpose(1, 2, 0)).reshape(-1, pixels_per_cycle)
    layout = pixel_layout(pixels_per_cycle)
    first_bit, last_bit = layout["first"].offset, layout["last"].offset
    words = np.zeros(len(samples), dtype=object)
    for i in range(pixels_per_cycle):
        words += samples[:, i].astype(object) << (8 * i)
    beats = [int(w) for w in words]
    beats[0] |= 1 << first_bit
    beats[-1] |= 1 << last_bit
    return beats


class FieldDecoder:
    """Unpacks payload integers of a struct layout quickly (no Amaranth objects per beat)."""

    def __init__(self, layout):
        self.fields = []
        for name, field in layout:
            width = field.width
            signed = field.shape.signed if hasattr(field.shape, "signed") else False
            self.fields.append((name, field.offset, width, signed))

    def __call__(self, value):
        out = {}
        for name, offset, width, signed in self.fields:
            v = (value >> offset) & ((1 << width) - 1)
            if signed and v >> (width - 1):
                v -= 1 << width
            out[name] = v
        return out


class EngineBench:
    """Driver, monitor, reset and figures of one
    :class:`~eventconv.hw.layer.engine.EventConvEngine`."""

    LAYER_FIGURES = ("frame_events_in", "frame_macs", "frame_events_out")

    def __init__(self, dut, network, *, seed=0, idle=0.0, stall=0.0, source="pixels"):
        self.dut, self.network = dut, network
        rng = random.Random(seed)
        self.driver = StreamDriver(dut, source, rng=random.Random(rng.random()), idle=idle)
        self.monitor = StreamMonitor(dut, "events", rng=random.Random(rng.random()), stall=stall)
        self.decode = FieldDecoder(event_layout(*network.output_shape))

    async def reset(self):
        """Reset with the network's knobs on the runtime inputs, one element per layer."""
        layers = self.network.layers
        self.dut.threshold.value = layers[0].threshold
        self.dut.dense.value = int(layers[0].mode == "dense")
        self.dut.shift.value = sum(c.shift << (5 * i) for i, c in enumerate(layers))
        self.dut.output_threshold.value = sum(c.output_threshold << (8 * i)
                                              for i, c in enumerate(layers))
        if self.network.events is not None and hasattr(self.dut, "step"):
            self.dut.step.value = self.network.events.step
        start_clock(self.dut)
        await reset(self.dut)

    async def send_frames(self, frames):
        """Stream frames (T, Cin, H, W) uint8 into the engine, back to back."""
        for frame in frames:
            await self.driver.send_all(pixel_beats(frame, self.network.first.pixels_per_cycle))

    def layer_figure(self, name):
        """A per-layer figure as a list, layer by layer (a port of L equal-width elements)."""
        port = getattr(self.dut, name)
        count = len(self.network.layers)
        width = len(port) // count
        value = int(port.value)
        return [(value >> (width * i)) & ((1 << width) - 1) for i in range(count)]

    async def receive_frame(self):
        """Output events of the next frame, as (o, py, px, delta) tuples, and its figures."""
        events = []
        while True:
            beat = self.decode(await self.monitor.receive())
            if beat["end_of_frame"]:
                break
            events.append((beat["channel"], beat["y"], beat["x"], beat["delta"]))
        await ReadOnly()
        figures = {name: self.layer_figure(name) for name in self.LAYER_FIGURES}
        figures["frame_cycles"] = int(self.dut.frame_cycles.value)
        await RisingEdge(self.dut.clk)
        return events, figures


async def run_case(dut, source, send):
    """Stream the case's frames (or windows) with ``send(bench, items)``, collect every
    frame's output events and figures, write the result."""
    case = read_case()
    network = Network.from_dict(case["config"])
    items = case["windows"] if source == "camera" else \
        network.check_frames(np.load(case["frames"]))
    bench = EngineBench(dut, network, seed=case.get("seed", 0), idle=case.get("idle", 0.0),
                        stall=case.get("stall", 0.0), source=source)
    await bench.reset()
    sender = cocotb.start_soon(send(bench, items))
    results = []
    progress = case.get("progress")
    for t in range(len(items)):
        events, figures = await bench.receive_frame()
        results.append({"events": events, **figures})
        if progress:
            with open(progress, "w") as f:
                f.write(f"{t + 1} {len(items)}")
    await sender
    extra = await bench.monitor.quiet(20)
    with open(os.environ["EVENTCONV_RESULT"], "w") as f:
        json.dump({"frames": results, "extra": extra}, f)


@cocotb.test()
async def run_frames(dut):
    """Case: {"config": {...}, "frames": path.npy, "idle", "stall", "seed", "progress": path}."""
    await run_case(dut, "pixels", lambda bench, frames: bench.send_frames(frames))


async def _send_windows(bench, windows):
    for beats in windows:
        await bench.driver.send_all(beats)


@cocotb.test()
async def run_windows(dut):
    """Case: as run_frames, with "windows": a list of windows, each the packed camera beats
    (events, then the end-of-window beat), for the engine built with ``address_events``."""
    await run_case(dut, "camera", _send_windows)
