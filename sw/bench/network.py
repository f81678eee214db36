"""The network part of the benchmark: the bundled real trained network (PNet's first four
layers) on the real clip, layer by layer, event mode against dense mode, and the output
threshold's trade of work for accuracy. RTL runs are checked equal to the golden model."""

import sys
import time

import numpy as np

from eventconv.backends import rtl as rtl_backend
from eventconv.bench.boards import work_bound
from eventconv.core.model import run_model
from eventconv.core.nets import load_net
from eventconv.core.network import Network
from eventconv.hw.target import GENERIC

__all__ = ["NET", "NETWORK_CLIP", "NETWORK_LANES", "OUTPUT_THRESHOLDS", "network_config",
           "measure_network", "layer_bounds"]

NET = "pnet_64x48"
NETWORK_CLIP = "vtest_64x48"        # the clip the network was quantized for
#: Accumulate lanes per layer (each divides the layer's Cout: 10, 16, 32, 2).
NETWORK_LANES = (5, 4, 8, 2)
#: Output thresholds U tried on every layer but the last (whose U would hold back the output).
OUTPUT_THRESHOLDS = (0, 1, 2, 4, 8)
# Frame 0 starts from the all-zero reference (every pixel an event): work counts frames 1..
STEADY = slice(1, None)


def network_config(*, threshold, mode="event", output_threshold=0):
    obj = load_net(NET).to_dict()
    obj.update(threshold=threshold, mode=mode)
    last = len(obj["layers"]) - 1
    for index, (layer, lanes) in enumerate(zip(obj["layers"], NETWORK_LANES, strict=True)):
        layer["lanes"] = lanes
        layer["output_threshold"] = output_threshold if index < last else 0
    return Network.from_dict(obj)


def _run(settings, net, frames):
    model = run_model(net, frames)
    if settings.backend == "model":
        return model
    rtl = rtl_backend.run(net, frames, simulator=settings.simulator,
                          build_root=settings.build_root, progress=sys.stderr.isatty())
    for key in model:
        if not np.array_equal(rtl[key], model[key]):
            raise RuntimeError(f"RTL differs from the golden model in {key!r} for the network "
                               f"{NET} in {net.mode} mode")
    return rtl


def layer_bounds(network, out):
    """Each layer's work bound per frame (float (T, L)): the cycles it needs at least, the
    larger of its accumulate ops / lanes and its inputs / input rate (layer 0: the frame's
    samples / pixels per clock; a later layer: its input events, one per clock)."""
    macs, events_in = np.asarray(out["macs"]), np.asarray(out["events_in"])
    bounds = np.empty(macs.shape, dtype=np.float64)
    bounds[:, 0] = work_bound(network.layers[0], macs[:, 0], GENERIC)
    for i, layer in enumerate(network.layers[1:], start=1):
        bounds[:, i] = np.maximum(macs[:, i] / layer.lanes, events_in[:, i])
    return bounds


def _network_cycles(net, out):
    """The network's RTL cycles against its busiest layer's bound, steady frames: mean
    cycles, mean busiest bound, the median and worst ratio, and which layer is busiest."""
    if out.get("cycles") is None:
        return None
    bounds = layer_bounds(net, out)[STEADY]
    cycles = np.asarray(out["cycles"], dtype=np.float64)[STEADY]
    busiest = bounds.max(axis=1)
    ratio = cycles / busiest
    return {"cycles": float(cycles.mean()), "bound": float(busiest.mean()),
            "ratio_median": float(np.median(ratio)), "ratio_max": float(ratio.max()),
            "busiest_layer": int(np.bincount(bounds.argmax(axis=1)).argmax()),
            "layer_bounds": bounds.mean(axis=0).tolist()}


def _layer_rows(event, dense):
    rows = []
    for i in range(event["macs"].shape[1]):
        rows.append({
            "layer": i,
            "events_in": float(event["events_in"][STEADY, i].mean()),
            "events_out": float(event["events_out"][STEADY, i].mean()),
            "macs_event": float(event["macs"][STEADY, i].mean()),
            "macs_dense": float(dense["macs"][STEADY, i].mean()),
        })
    return rows


def _threshold_rows(frames, threshold, dense_output):
    rows = []
    dense_macs = None
    for u in OUTPUT_THRESHOLDS:
        out = run_model(network_config(threshold=threshold, output_threshold=u), frames)
        if dense_macs is None:
            dense_macs = run_model(network_config(threshold=threshold, mode="dense"),
                                   frames)["macs"][STEADY].sum()
        error = np.abs(out["output"].astype(np.int64) - dense_output)
        rows.append({"output_threshold": u,
                     "macs_fraction": float(out["macs"][STEADY].sum() / dense_macs),
                     "mean_abs_error": float(error.mean()), "max_abs_error": int(error.max())})
    return rows


def measure_network(settings, frames, threshold):
    """Per-layer work of event and dense mode on ``frames`` (RTL cycles with the rtl
    backend, on ``settings.network_frames`` frames, dense on 2), and the output-threshold
    sweep on the model. Returns a dict for the report and the plots."""
    start = time.monotonic()
    count = min(len(frames), settings.network_frames)
    event_net = network_config(threshold=threshold)
    dense_net = network_config(threshold=threshold, mode="dense")
    event = _run(settings, event_net, frames[:count])
    # Dense on 2 frames: frame 0 and a steady one (dense work does not depend on the pixels).
    dense = _run(settings, dense_net, frames[:min(count, 2)])
    event_model = run_model(event_net, frames)
    dense_model = run_model(dense_net, frames)
    result = {
        "net": NET, "frames": count, "threshold": threshold, "lanes": NETWORK_LANES,
        "layers": _layer_rows(event_model, dense_model),
        "per_frame": {"macs_event": event_model["macs"], "macs_dense": dense_model["macs"],
                      "events_in": event_model["events_in"],
                      "events_out": event_model["events_out"]},
        "network_cycles": {"event": _network_cycles(event_net, event),
                           "dense": _network_cycles(dense_net, dense)},
        "output_thresholds": _threshold_rows(frames, threshold,
                                             dense_model["output"].astype(np.int64)),
        "cycles_event": event.get("cycles"), "cycles_dense": dense.get("cycles"),
    }
    settings.say(f"bench: network {NET}: {count} frames event, {min(count, 2)} dense, "
                 f"output thresholds {OUTPUT_THRESHOLDS} ({time.monotonic() - start:.0f} s)")
    return result
