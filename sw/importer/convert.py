"""``eventconv import``: an ONNX model and calibration frames in, a network JSON and its
accuracy report out.

Everything is read, checked, quantized and compared before anything is written: a refused
model (:class:`~eventconv.importer.graph.Unsupported`, one line) leaves no file behind.

Network fields the graph does not give:

* ``threshold`` 0 (unless ``threshold`` is given): the event-driven network then computes
  exactly the dense quantized network, so the report measures the quantization alone; a
  higher threshold saves more work on noisy video at a cost the report shows when the import
  is run with it;
* ``mode`` ``"event"``; every layer's ``output_threshold`` 0 (every change is passed on);
* ``pixels_per_cycle`` and ``lanes`` left at their defaults (they change cycles, not results).
"""

import json
import os
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import onnx

from eventconv.core.config import read_npy
from eventconv.core.network import Network
from eventconv.core.outputs import check_outputs, staged_outputs
from eventconv.core.ranges import ConfigError
from eventconv.importer.graph import Unsupported, node_label, read_graph
from eventconv.importer.quantize import SATURATION, quantize_layers
from eventconv.importer.report import float_maps, layer_report, model_maps, write_report

__all__ = ["DEFAULT_INPUT_SCALE", "convert", "import_onnx", "load_model", "load_calibration",
           "parse_scale", "report_paths"]

DEFAULT_INPUT_SCALE = 1 / 255


def parse_scale(text, name="--input-scale"):
    """A positive scale from ``0.0039``, ``1/255`` or a number."""
    try:
        value = float(Fraction(text)) if isinstance(text, str) else float(text)
    except (ValueError, ZeroDivisionError):
        value = None
    if value is None or not (np.isfinite(value) and value > 0):
        raise ConfigError(f"{name} must be a positive number such as 0.00392 or 1/255, "
                          f"not {text!r}")
    return value


def load_model(path):
    try:
        return onnx.load(str(path))
    except FileNotFoundError:
        raise ConfigError(f"MODEL: no such file: {path}") from None
    except Exception as e:      # protobuf's DecodeError and onnx's own errors
        raise ConfigError(f"MODEL: {path} is not an ONNX model ({type(e).__name__})") from None


def load_calibration(path):
    """Calibration frames as uint8 (T, C, H, W): FRAMES.npy holds (T, H, W) or (T, C, H, W)."""
    frames = read_npy(path, "--calibrate")
    if frames.dtype != np.uint8 or frames.ndim not in (3, 4) or frames.shape[0] < 1:
        raise ConfigError(f"--calibrate: frames must be uint8 (T, H, W) or (T, C, H, W) with "
                          f"T >= 1, not {frames.dtype} {tuple(frames.shape)}")
    return frames[:, None] if frames.ndim == 3 else frames


def _check_input(graph, frames):
    """The frames fit the graph's input (N, C, H, W) and its first Conv."""
    _, channels, height, width = frames.shape
    batch, *sizes = graph.input_shape
    if batch not in (None, 1):
        raise Unsupported(f"input '{graph.input_name}' has a fixed batch of {batch}; export "
                          f"the model with batch 1 or a dynamic batch")
    for name, want, have in zip(("C", "H", "W"), sizes, (channels, height, width), strict=True):
        if want is not None and want != have:
            raise ConfigError(f"--calibrate: frames are (T, C, H, W) = {tuple(frames.shape)}, "
                              f"the model's input '{graph.input_name}' takes {name} = {want}")
    first = graph.layers[0]
    if first.weights.shape[1] != channels:
        raise ConfigError(f"--calibrate: frames have {channels} channel(s), "
                          f"{node_label(first.conv)} takes {first.weights.shape[1]}")


def convert(model, frames, *, input_scale=DEFAULT_INPUT_SCALE, threshold=0,
            saturation=SATURATION, mode="event"):
    """An ONNX ``ModelProto`` as a network object (``SPEC.md``, "A network") calibrated on
    ``frames`` (uint8 (T, C, H, W)), and the report comparing it with the float model.

    Raises :class:`~eventconv.importer.graph.Unsupported` (one line naming the node) for a
    graph eventconv cannot run exactly, ConfigError for bad arguments.
    """
    start = time.perf_counter()
    if not 0 <= saturation < 1:
        raise ConfigError(f"--saturation must be a fraction in 0..1, not {saturation!r}")
    graph = read_graph(model)
    _check_input(graph, frames)
    layers, scales = quantize_layers(graph, frames, input_scale, saturation)
    _, channels, height, width = frames.shape
    obj = {"height": height, "width": width, "channels_in": channels, "threshold": threshold,
           "mode": mode, "layers": layers}
    network = Network.from_dict(obj)        # every field checked, as for a hand-written one
    reference = float_maps(graph, frames, input_scale)
    ours, macs, dense = model_maps(network, frames)
    rows = []
    for k, (layer, config, scale) in enumerate(zip(graph.layers, network.layers, scales,
                                                   strict=True)):
        row = {"nodes": [n.name or n.output[0] for n in layer.nodes],
               "kernel_size": config.kernel_size, "channels_in": config.channels_in,
               "channels_out": config.channels_out, "pool": config.pool,
               "weights": "graph's int8" if layer.weight_int is not None
                          else "float to int8",
               "input_scale": scale.input_scale, "weight_scale": scale.weight_scale,
               "shift": scale.shift,
               "shift_from": "graph" if scale.from_graph else "calibrated",
               "scale": scale.scale, "saturated_fraction": scale.saturated,
               "macs_fraction": float(macs[k] / dense[k]),
               "output_tensor": layer.output}
        row.update(layer_report(ours[k], scale.scale, reference[k]))
        rows.append(row)
    report = {"input_scale": input_scale, "threshold": threshold, "mode": mode,
              "saturation_limit": saturation, "frames": int(len(frames)), "layers": rows,
              "output": {key: rows[-1][key] for key in ("correlation", "mae",
                                                        "float_mean_abs", "equal_fraction")},
              "seconds": time.perf_counter() - start}
    return network.to_dict(), report


def report_paths(out_path):
    """(NET.md, NET.report.json) beside NET.json."""
    path = Path(out_path)
    base = path.with_suffix("") if path.suffix == ".json" else path
    return base.with_name(base.name + ".md"), base.with_name(base.name + ".report.json")


def import_onnx(model_path, frames_path, out_path, *, input_scale=DEFAULT_INPUT_SCALE,
                threshold=0, saturation=SATURATION):
    """``eventconv import``: write NET.json, NET.md and NET.report.json; returns their paths.
    Nothing is written unless the whole import succeeds."""
    start = time.perf_counter()
    input_scale = parse_scale(input_scale)
    md_path, json_path = report_paths(out_path)
    paths = check_outputs("-o", [out_path, md_path, json_path], ".json",
                          inputs=[model_path, frames_path])
    frames = load_calibration(frames_path)
    model = load_model(model_path)
    network, report = convert(model, frames, input_scale=input_scale, threshold=threshold,
                              saturation=saturation)
    report = {"model": os.fspath(model_path), "calibration": os.fspath(frames_path),
              **report, "seconds": time.perf_counter() - start}
    with staged_outputs("-o", paths) as (net_file, md_file, json_file):
        net_file.write_text(json.dumps(network, separators=(",", ":")) + "\n")
        write_report(report, json_file, md_file)
    return paths
