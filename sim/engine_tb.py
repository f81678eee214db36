"""cocotb testbench of the whole engine, in its simulation harness
(:class:`eventconv.sim.harness.EngineHarness`): a reusable class and the test the CLI runs.

:class:`EngineBench` streams the frames' pixel beats (or the windows' camera beats) through the
harness's source ring, takes each frame's output events and figures from its sink, and sets
reset and the knobs; the harness's gateware offers and takes the beats, with its random idle
cycles and backpressure, so Python acts once per frame or half ring, not once per clock. The
``run_frames`` test streams a whole clip and writes every frame's output events and figures;
the host side (:mod:`eventconv.backends.rtl`) integrates the events into pooled maps and
checks them.
"""

import json
import os
import random

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles, First, ReadOnly, RisingEdge

from eventconv.core.network import Network
from eventconv.hw.layouts import event_layout, pixel_layout
from eventconv.sim.case import read_case
from eventconv.sim.harness import chance
from eventconv.sim.streams import reset, start_clock

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
    """Source, sink, reset and figures of one
    :class:`~eventconv.hw.layer.engine.EventConvEngine` in its harness."""

    LAYER_FIGURES = ("frame_events_in", "frame_macs", "frame_events_out")

    def __init__(self, dut, network, *, seed=0, idle=0.0, stall=0.0):
        self.dut, self.network = dut, network
        rng = random.Random(seed)
        dut.source_idle.value = chance(idle)
        dut.sink_stall.value = chance(stall)
        dut.source_seed.value = rng.getrandbits(32)
        dut.sink_seed.value = rng.getrandbits(32)
        for name in ("source_end", "source_poke_en", "sink_clear"):
            getattr(dut, name).value = 0
        self.written = 0       # words written into the source's ring, modulo twice its size
        self.source_words = dut.source.words
        self.sink_words = dut.sink.words
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

    async def send(self, words):
        """Stream beats into the engine: written into the source's ring as room frees up
        (no simulated time passes for the writes), after those sent before."""
        depth = len(self.source_words)
        sent = 0
        while sent < len(words):
            await ReadOnly()
            # ``waiting`` may lag a beat taken at this edge: the room is at least this.
            room = depth - int(self.dut.source_waiting.value)
            if room < depth // 2:
                await RisingEdge(self.dut.source_low)
                continue
            await RisingEdge(self.dut.clk)
            count = min(room, len(words) - sent)
            for k in range(count):
                self.source_words[(self.written + k) % depth].value = words[sent + k]
            self.written = (self.written + count) % (2 * depth)
            self.dut.source_end.value = self.written
            sent += count

    async def send_frames(self, frames):
        """Stream frames (T, Cin, H, W) uint8 into the engine, back to back."""
        for frame in frames:
            await self.send(pixel_beats(frame, self.network.first.pixels_per_cycle))

    def check_protocol(self):
        assert not self.dut.sink_protocol_error.value, \
            "events: valid dropped or payload changed before the beat was taken"

    def layer_figure(self, name):
        """A per-layer figure as a list, layer by layer (a port of L equal-width elements)."""
        port = getattr(self.dut, name)
        count = len(self.network.layers)
        width = len(port) // count
        value = int(port.value)
        return [(value >> (width * i)) & ((1 << width) - 1) for i in range(count)]

    async def receive_frame(self):
        """Output events of the next frame, as (o, py, px, delta) tuples, and its figures (valid
        from the cycle after its end of frame, when the sink's ``done`` is high)."""
        await ReadOnly()
        if not (self.dut.sink_done.value or self.dut.sink_overflow.value):
            await First(RisingEdge(self.dut.sink_done), RisingEdge(self.dut.sink_overflow))
            await ReadOnly()
        assert not self.dut.sink_overflow.value, \
            f"a frame gave more than the sink's {len(self.sink_words)} beats"
        self.check_protocol()
        beats = [self.decode(int(self.sink_words[i].value))
                 for i in range(int(self.dut.sink_count.value))]
        assert beats[-1]["end_of_frame"] and not any(b["end_of_frame"] for b in beats[:-1])
        events = [(b["channel"], b["y"], b["x"], b["delta"]) for b in beats[:-1]]
        figures = {name: self.layer_figure(name) for name in self.LAYER_FIGURES}
        figures["frame_cycles"] = int(self.dut.frame_cycles.value)
        await RisingEdge(self.dut.clk)
        self.dut.sink_clear.value = 1
        await RisingEdge(self.dut.clk)
        self.dut.sink_clear.value = 0
        return events, figures

    async def quiet(self, cycles):
        """Beats the engine gives within ``cycles`` (should be none), as payload integers."""
        await ClockCycles(self.dut.clk, cycles)
        await ReadOnly()
        self.check_protocol()
        return [int(self.sink_words[i].value) for i in range(int(self.dut.sink_count.value))]


async def run_case(dut, source, send):
    """Stream the case's frames (or windows) with ``send(bench, items)``, collect every
    frame's output events and figures, write the result."""
    case = read_case()
    network = Network.from_dict(case["config"])
    items = case["windows"] if source == "camera" else \
        network.check_frames(np.load(case["frames"]))
    bench = EngineBench(dut, network, seed=case.get("seed", 0), idle=case.get("idle", 0.0),
                        stall=case.get("stall", 0.0))
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
    extra = await bench.quiet(20)
    with open(os.environ["EVENTCONV_RESULT"], "w") as f:
        json.dump({"frames": results, "extra": extra}, f)


@cocotb.test()
async def run_frames(dut):
    """Case: {"config": {...}, "frames": path.npy, "idle", "stall", "seed", "progress": path}."""
    await run_case(dut, "pixels", lambda bench, frames: bench.send_frames(frames))


async def _send_windows(bench, windows):
    for beats in windows:
        await bench.send(beats)


@cocotb.test()
async def run_windows(dut):
    """Case: as run_frames, with "windows": a list of windows, each the packed camera beats
    (events, then the end-of-window beat), for the engine built with ``address_events``."""
    await run_case(dut, "camera", _send_windows)
