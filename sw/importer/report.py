"""The accuracy report of an import: eventconv's maps against the float model's.

The float model is the ONNX graph itself, run by ``onnxruntime`` on the same frames (float
input = uint8 frame x input scale), with every layer's last tensor added as a graph output, so
each layer is compared, not only the last. eventconv's maps are the golden model's
(:class:`~eventconv.core.model.NetworkModel`, bit-exact with the hardware) for the network as
imported (its mode and threshold), scaled back by the layer's output scale. Per layer:

* ``correlation``: Pearson correlation over every value of every frame;
* ``mae``: mean absolute error, in the float model's units;
* ``equal_fraction``: how many of eventconv's uint8 values equal the float value divided by
  the scale, rounded and clamped to 0..255 (1.0 where a QDQ graph is reproduced exactly;
  ONNX rounds ties to even, eventconv half up);
* ``macs_fraction``: accumulate ops, event-driven, as a fraction of the dense layer's.
"""

import json

import numpy as np
import onnx
import onnxruntime

from eventconv.core.model import NetworkModel, taps_in_frame
from eventconv.importer.graph import Unsupported

__all__ = ["float_maps", "model_maps", "layer_report", "write_report", "markdown"]


def float_maps(graph, frames, input_scale):
    """Each layer's float output, (T, C, H', W') float64, from onnxruntime on ``frames``
    (uint8 (T, C, H, W)) times ``input_scale``."""
    model = onnx.ModelProto()
    model.CopyFrom(graph.model)
    names = [layer.output for layer in graph.layers]
    present = {o.name for o in model.graph.output}
    for name in names:
        if name not in present:
            model.graph.output.append(onnx.helper.make_tensor_value_info(
                name, onnx.TensorProto.FLOAT, None))
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    try:
        session = onnxruntime.InferenceSession(model.SerializeToString(), options,
                                               providers=["CPUExecutionProvider"])
    except Exception as e:      # onnxruntime raises its own types, one per failure kind
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise Unsupported(f"onnxruntime cannot run the model: {first}") from None
    scale = np.float32(input_scale)
    outs = [[] for _ in names]
    for frame in frames:
        feed = {graph.input_name: frame[None].astype(np.float32) * scale}
        for out, value in zip(outs, session.run(names, feed), strict=True):
            out.append(value[0].astype(np.float64))
    return [np.stack(out) for out in outs]


def model_maps(network, frames):
    """Each layer's map R after each frame, (T, C, H', W') uint8, and its accumulate ops
    event-driven and dense, from the golden model."""
    model = NetworkModel(network)
    maps = [[] for _ in network.layers]
    macs = np.zeros(len(network.layers), np.int64)
    for frame in frames:
        for k, result in enumerate(model.step(frame)):
            maps[k].append(result.pooled.copy())
            macs[k] += result.macs
    dense = np.array([int(taps_in_frame(c).sum()) * c.channels_in * c.channels_out
                      for c in network.layers], np.int64) * len(frames)
    return [np.stack(m) for m in maps], macs, dense


def layer_report(event_map, scale, float_map):
    """Correlation, MAE and equal fraction of one layer's map against the float model's."""
    if event_map.shape != float_map.shape:
        raise RuntimeError(f"eventconv's map is {event_map.shape}, the float model's "
                           f"{float_map.shape}: the import misread the graph")
    ours = event_map.astype(np.float64) * scale
    theirs = float_map.astype(np.float64)
    if ours.std() > 0 and theirs.std() > 0:
        correlation = float(np.corrcoef(ours.ravel(), theirs.ravel())[0, 1])
    else:
        correlation = None     # a constant map: no correlation is defined
    expected = np.clip(np.rint(theirs / scale), 0, 255)
    return {"correlation": correlation, "mae": float(np.abs(ours - theirs).mean()),
            "float_mean_abs": float(np.abs(theirs).mean()),
            "float_max": float(theirs.max()),
            "equal_fraction": float((event_map == expected).mean())}


def write_report(report, json_path, md_path):
    with open(json_path, "w") as f:
        json.dump(report, f, indent=1)
        f.write("\n")
    with open(md_path, "w") as f:
        f.write(markdown(report))


def _number(value, digits=4):
    return "n/a" if value is None else f"{value:.{digits}g}"


def _correlation(value):
    return "n/a" if value is None else f"{value:.5f}"


def markdown(report):
    lines = [
        f"# Import of {report['model']}", "",
        f"Calibration: {report['frames']} frames of `{report['calibration']}`, input scale "
        f"{report['input_scale']:g} (float input = uint8 pixel x scale); network `mode` "
        f"{report['mode']}, `threshold` {report['threshold']}; at most "
        f"{report['saturation_limit']:.3%} of a calibrated layer's outputs may clip at 255.",
        "",
        "eventconv's map (golden model, bit-exact with the hardware) times the layer's scale "
        "against the float model run by onnxruntime on the same frames:", "",
        "| layer | nodes | K | Cin -> Cout | pool | weights | shift | scale | saturated | "
        "correlation | MAE | float mean abs | equal | macs vs dense |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for k, layer in enumerate(report["layers"]):
        lines.append(
            f"| {k} | {' > '.join(layer['nodes']).replace('|', '/')} | {layer['kernel_size']} | "
            f"{layer['channels_in']} -> {layer['channels_out']} | {layer['pool']} | "
            f"{layer['weights']} | {layer['shift']} ({layer['shift_from']}) | "
            f"{layer['scale']:.4g} | {layer['saturated_fraction']:.3%} | "
            f"{_correlation(layer['correlation'])} | {_number(layer['mae'])} | "
            f"{_number(layer['float_mean_abs'])} | {layer['equal_fraction']:.1%} | "
            f"{layer['macs_fraction']:.1%} |")
    out = report["output"]
    lines += ["", f"Last layer: correlation {_correlation(out['correlation'])}, MAE "
                  f"{_number(out['mae'])} (float mean abs {_number(out['float_mean_abs'])}). "
                  f"Import took {report['seconds']:.2f} s.", "",
              "scale: real value of one unit of the layer's uint8 map; saturated: fraction of "
              "the layer's outputs (before pooling) clipped at 255 on the calibration frames; "
              "equal: fraction of uint8 values equal to the float value / scale, rounded; "
              "macs vs dense: the event-driven layer's accumulate ops over the dense layer's.",
              ""]
    return "\n".join(lines)
