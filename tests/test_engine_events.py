"""The engine with its address-event input on real event-camera recordings: the results of
the windows' count frames, in cycles that grow with the events, not with the frame size."""

from pathlib import Path

import numpy as np

from eventconv.backends.rtl import run as run_rtl
from eventconv.backends.rtl import run_events
from eventconv.core.model import run_model
from eventconv.core.network import Network
from eventconv.recordings import Recording, bin_events, count_frames, read_recording

BUILD = Path(__file__).resolve().parent.parent / "build" / "sim"
DATA = Path(__file__).resolve().parent.parent / "sw" / "recordings" / "data"


def network(rng, *, height, width, channels, events, layers):
    out, cin = [], channels
    for cout, pool, lanes in layers:
        out.append({"channels_out": cout, "kernel_size": 3, "shift": 6, "pool": pool,
                    "lanes": lanes, "weights": rng.integers(-128, 128, (cout, cin, 3, 3)).tolist(),
                    "bias": rng.integers(-500, 2000, cout).tolist()})
        cin = cout
    return Network.from_dict({"height": height, "width": width, "channels_in": channels,
                              "threshold": 20, "events": events, "layers": out})


def inputs(net, name):
    first = net.first
    size = {"height": first.height, "width": first.width, "channels_in": first.channels_in}
    recording = read_recording(DATA / name)
    frames, _ = count_frames(recording, net.events, **size)
    frames = frames.reshape(first.frames_shape(len(frames)))
    return bin_events(recording, net.events, **size), frames


def test_davis_recording_two_layers_under_stalls():
    """A real DAVIS346 recording, two layers, random idle input and backpressure: every
    layer's counts and the output equal the model's on the count frames."""
    rng = np.random.default_rng(2)
    net = network(rng, height=32, width=44, channels=2, layers=[(4, 2, 2), (2, 1, 2)],
                  events={"window_us": 20000, "step": 40, "downsample": 8})
    binned, frames = inputs(net, "davis346.aedat4")
    rtl = run_events(net, binned, build_root=BUILD, idle=0.3, stall=0.3, seed=3)
    model = run_model(net, frames)
    for key in model:
        np.testing.assert_array_equal(rtl[key], model[key], err_msg=key)
    assert model["events_out"][:, -1].sum() > 0


def test_evk4_recording_equals_model():
    """A real Prophesee EVK4 recording (bursts: many events per pixel and window)."""
    rng = np.random.default_rng(4)
    net = network(rng, height=40, width=80, channels=1, layers=[(4, 2, 4)],
                  events={"window_us": 5000, "step": 60, "downsample": 16})
    binned, frames = inputs(net, "evk4.raw")
    rtl = run_events(net, binned, build_root=BUILD, stall=0.2, seed=1)
    model = run_model(net, frames)
    for key in model:
        np.testing.assert_array_equal(rtl[key], model[key], err_msg=key)


def test_sparse_windows_cost_a_tenth_of_the_frame_scan():
    """30 ms of the DAVIS346 recording, about 1 % of the pixels active per window: the
    address-event engine and the frame-scan engine give the same results, side by side in one
    run, and each window costs at most 10 % of the frame scan's cycles (a 1 x 1 kernel and
    every output channel in one lane, so that the input's cost shows)."""
    recording = read_recording(DATA / "davis346.aedat4")
    keep = recording.t < recording.t[0] + 30_000
    recording = Recording(recording.t[keep], recording.x[keep], recording.y[keep],
                          recording.p[keep], recording.format, recording.sensor)
    rng = np.random.default_rng(6)
    out = {"channels_out": 4, "kernel_size": 1, "shift": 4, "lanes": 4,
           "weights": rng.integers(-128, 128, (4, 2, 1, 1)).tolist(), "bias": [0, 50, 100, 0]}
    net = Network.from_dict({"height": 64, "width": 86, "channels_in": 2, "threshold": 20,
                             "events": {"window_us": 5000, "step": 40, "downsample": 4},
                             "layers": [out]})
    size = {"height": 64, "width": 86, "channels_in": 2}
    frames, _ = count_frames(recording, net.events, **size)
    assert (frames.reshape(len(frames), -1) > 0).mean(axis=1).max() <= 0.05
    events = run_events(net, bin_events(recording, net.events, **size), build_root=BUILD)
    scan = run_rtl(net, frames, build_root=BUILD)
    for key in ("output", "events_in", "events_out", "macs"):
        np.testing.assert_array_equal(events[key], scan[key], err_msg=key)
    assert (events["cycles"] <= 0.10 * scan["cycles"]).all(), (events["cycles"],
                                                               scan["cycles"])
