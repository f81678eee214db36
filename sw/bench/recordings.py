"""The benchmark on real event-camera recordings: the address-event input against the frame
scan, side by side in one run, and event mode's work against dense.

For each bundled recording (a DAVIS346 AEDAT4 and a Prophesee EVK4 EVT3 excerpt), one 3 x 3
layer (seeded weights; the input is what is real) runs on the recording's windows twice in the
gateware: taking the events themselves (:class:`~eventconv.hw.layer.address_events.
AddressEventDetector`) and scanning the same windows as count frames. Both must equal the
golden model (a figure never comes from a broken design); the cycles per window of each, the
active pixels per window and the accumulate ops against a dense layer are reported.
"""

import numpy as np

from eventconv.backends import rtl as rtl_backend
from eventconv.core.model import run_model
from eventconv.core.network import Network
from eventconv.recordings import bin_events, count_frames, read_recording
from eventconv.recordings.excerpts import bundled

__all__ = ["RECORDINGS", "measure_recordings"]

#: name -> (height, width, channels_in, events object): each recording downsampled to a frame
#: of a few thousand pixels, 5 ms windows.
RECORDINGS = {
    "davis346.aedat4": (64, 86, 2, {"window_us": 5000, "step": 40, "downsample": 4}),
    "evk4.raw": (40, 80, 1, {"window_us": 5000, "step": 60, "downsample": 16}),
}


def recording_network(name, mode="event"):
    height, width, channels, events = RECORDINGS[name]
    rng = np.random.default_rng(7)
    layer = {"channels_out": 4, "kernel_size": 3, "shift": 6, "pool": 2, "lanes": 4,
             "weights": rng.integers(-128, 128, (4, channels, 3, 3)).tolist(),
             "bias": rng.integers(-500, 2000, 4).tolist()}
    return Network.from_dict({"height": height, "width": width, "channels_in": channels,
                              "threshold": 20, "mode": mode, "events": events,
                              "layers": [layer]})


def _inputs(net, name, windows):
    first = net.first
    size = {"height": first.height, "width": first.width, "channels_in": first.channels_in}
    recording = read_recording(bundled(name))
    frames, _ = count_frames(recording, net.events, **size)
    frames = frames.reshape(first.frames_shape(len(frames)))[:windows]
    binned = bin_events(recording, net.events, **size)
    keep = binned.window < len(frames)
    binned = type(binned)(binned.window[keep], binned.channel[keep], binned.y[keep],
                          binned.x[keep], len(frames), binned.dropped)
    return binned, frames


def _check_equal(name, got, model):
    for key in model:
        if not np.array_equal(got[key], model[key]):
            raise RuntimeError(f"{name}: the RTL differs from the golden model in {key!r}")


def measure_recordings(settings):
    """Per recording: windows, active pixels, work event/dense, and with the rtl backend the
    cycles per window of the address-event input and of the frame scan (means over windows
    1..: window 0 starts from an all-zero reference)."""
    results = []
    for name in RECORDINGS:
        net = recording_network(name)
        binned, frames = _inputs(net, name, settings.frames)
        model = run_model(net, frames)
        dense = run_model(recording_network(name, "dense"), frames)
        active = (frames.reshape(len(frames), -1) > 0).mean(axis=1)
        row = {"recording": name, "windows": len(frames),
               "size": f"{net.first.height} x {net.first.width} x {net.first.channels_in}",
               "active_pct": 100 * float(active[1:].mean()),
               "events_in": float(model["events_in"][1:].mean()),
               "macs_pct": 100 * float(model["macs"][1:].sum() / dense["macs"][1:].sum())}
        if settings.backend == "rtl":
            settings.say(f"bench: {name}: address events and frame scan on the RTL")
            kwargs = {"simulator": settings.simulator, "build_root": settings.build_root}
            events = rtl_backend.run_events(net, binned, **kwargs)
            scan = rtl_backend.run(net, frames, **kwargs)
            _check_equal(name, events, model)
            _check_equal(name, scan, model)
            row["cycles_events"] = float(events["cycles"][1:].mean())
            row["cycles_scan"] = float(scan["cycles"][1:].mean())
            row["cycles_ratio"] = row["cycles_events"] / row["cycles_scan"]
        results.append(row)
    return results
