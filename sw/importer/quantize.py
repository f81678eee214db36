"""The layers read from a graph as eventconv layers: int8 weights, bias in accumulator units,
and one power-of-two requantization ``shift`` per layer.

Per layer, with ``s_in`` the real value of one unit of the layer's input map (the first
layer's: the input scale S, a uint8 pixel p is the float p x S):

* **weights**: int8, one scale per layer, ``s_w = max |w| / 127`` (the int8 range used whole);
  weights a graph gives as int8 behind a DequantizeLinear are taken as they are.
* **bias**: in accumulator units, ``round(b / (s_in x s_w))``, plus ``2^(shift-1)`` so that the
  shift rounds to nearest (half up) instead of truncating.
* **shift**: the smallest ``s`` in 0..31 for which at most ``saturation`` of the layer's
  accumulator outputs on the calibration frames clip at 255 (``max(acc, 0) >> s > 255``; the
  default 0.1 %), so the uint8 map uses its range. The layer's output scale is then
  ``s_in x s_w x 2^s``. Where the graph quantizes the layer's output (a uint8 QuantizeLinear),
  its scale fixes the shift instead, when it is ``s_in x s_w`` times a power of two 2^0..2^31;
  another ratio is refused, since eventconv requantizes by a shift alone (float weights are
  then given the finest scale that makes the ratio a power of two).

Calibration runs the layers densely, layer after layer, with the golden model's own stages
(:func:`~eventconv.core.model.correlate_same`, :func:`~eventconv.core.model.requantize`,
:func:`~eventconv.core.model.max_pool`), so each layer is calibrated on the maps the previous
quantized layer really gives.
"""

import math
from dataclasses import dataclass

import numpy as np

from eventconv.core.model import correlate_same, max_pool, requantize
from eventconv.core.ranges import BIAS_MAX, BIAS_MIN
from eventconv.importer.graph import QDQ_FORM, Unsupported, node_label

__all__ = ["SATURATION", "LayerScales", "quantize_layers"]

#: Default largest fraction of a layer's outputs allowed to clip at 255 on calibration.
SATURATION = 0.001
MAX_SHIFT = 31
# Scales written as float32 differ from exact products by ~1e-7.
SCALE_TOLERANCE = 1e-5


@dataclass
class LayerScales:
    input_scale: float       # real value of one unit of the layer's input map
    weight_scale: float      # real value of one unit of its int8 weights
    shift: int
    saturated: float         # fraction of accumulator outputs clipped at 255 (calibration)
    from_graph: bool         # shift (and weights) fixed by the graph's QDQ scales

    @property
    def scale(self):
        """Real value of one unit of the layer's output map."""
        return self.input_scale * self.weight_scale * 2**self.shift


def _close(a, b):
    return abs(a / b - 1) <= SCALE_TOLERANCE


def _int8_weights(layer, scale_in):
    """(int8 weights, their scale): the graph's, or float weights quantized to int8 with
    ``max |w| / 127``; where the graph fixes the layer's output scale, the finest weight scale
    that leaves ``output scale / (s_in x s_w)`` a power of two."""
    if layer.weight_int is not None:
        return layer.weight_int, layer.weight_scale
    top = float(np.abs(layer.weights).max())
    scale = top / 127 if top > 0 else 1.0
    if layer.quants:
        ratio = layer.quants[0].scale / scale_in / scale     # 2^shift x (s_w / (max|w|/127))
        if ratio < 1:
            q = layer.quants[0]
            raise Unsupported(f"{node_label(q.node)}: scale {q.scale:g} is finer than input "
                              f"scale x int8 weight scale of {node_label(layer.conv)} "
                              f"({scale_in * scale:g}): eventconv's shift cannot be negative "
                              f"({QDQ_FORM})")
        scale = layer.quants[0].scale / scale_in / 2.0 ** min(math.floor(math.log2(ratio)),
                                                             MAX_SHIFT)
    return np.rint(layer.weights / scale).astype(np.int64), scale


def _bias(layer, unit):
    if layer.bias_int is not None and _close(layer.bias_scale, unit):
        return layer.bias_int.copy()
    return np.rint(layer.bias / unit).astype(np.int64)


def _graph_shift(layer, unit):
    """The shift the layer's QuantizeLinear scales fix, or a refusal naming the node."""
    first = layer.quants[0]
    for quant in layer.quants[1:]:
        if not _close(quant.scale, first.scale):
            raise Unsupported(f"{node_label(quant.node)}: requantizes with scale "
                              f"{quant.scale:g} after {first.scale:g} in the same layer; "
                              f"eventconv requantizes once per layer ({QDQ_FORM})")
    ratio = first.scale / unit
    shift = round(math.log2(ratio))
    if not (0 <= shift <= MAX_SHIFT and _close(ratio, 2.0**shift)):
        raise Unsupported(f"{node_label(first.node)}: scale {first.scale:g} is {ratio:.6g} "
                          f"times the accumulator unit of {node_label(layer.conv)} (input scale "
                          f"x weight scale = {unit:g}), not a power of two 2^0..2^{MAX_SHIFT}; "
                          f"eventconv requantizes by a shift ({QDQ_FORM}; or import the float "
                          f"model and let eventconv calibrate)")
    return shift


def _half(shift):
    return (1 << shift) >> 1


def _clipped_counts(accs):
    """For every shift s: how many accumulator values clip at 255 with s and its rounding
    offset (``acc + 2^(s-1) >= 256 x 2^s``)."""
    values = np.sort(np.concatenate([a.ravel() for a in accs]))
    limits = np.array([(256 << s) - _half(s) for s in range(MAX_SHIFT + 1)])
    return len(values) - np.searchsorted(values, limits, side="left"), len(values)


def quantize_layers(graph, frames, input_scale, saturation=SATURATION):
    """The graph's layers as eventconv layer objects (``SPEC.md``: ``channels_out``,
    ``kernel_size``, ``weights``, ``bias``, ``shift``, ``pool``, ``output_threshold``), with
    their :class:`LayerScales`.

    ``frames``: uint8 (T, C, H, W), the calibration frames.
    """
    if graph.input_quant is not None and not _close(graph.input_quant.scale, input_scale):
        q = graph.input_quant
        raise Unsupported(f"{node_label(q.node)}: quantizes the input with scale {q.scale:g}, "
                          f"not the input scale {input_scale:g}, so its uint8 values are not "
                          f"the frames' pixels; give --input-scale {q.scale!r}")
    maps = [frame.astype(np.int64) for frame in frames]
    scale_in, objects, scales = input_scale, [], []
    for layer in graph.layers:
        weights, weight_scale = _int8_weights(layer, scale_in)
        unit = scale_in * weight_scale
        bias = _bias(layer, unit)
        accs = [correlate_same(m, weights) + bias[:, None, None] for m in maps]
        clipped, total = _clipped_counts(accs)
        if layer.quants:
            shift = _graph_shift(layer, unit)
        else:
            fits = np.nonzero(clipped <= saturation * total)[0]
            shift = int(fits[0]) if len(fits) else MAX_SHIFT
        bias = bias + _half(shift)
        if bias.min() < BIAS_MIN or bias.max() > BIAS_MAX:
            raise Unsupported(f"{node_label(layer.conv)}: its bias is {np.abs(bias).max()} "
                              f"accumulator units (input scale x weight scale = {unit:g}), "
                              f"beyond the int32 bias of eventconv")
        maps = [max_pool(requantize(a + _half(shift), shift), layer.pool).astype(np.int64)
                for a in accs]
        objects.append({"channels_out": int(weights.shape[0]),
                        "kernel_size": int(weights.shape[2]),
                        "weights": weights.tolist(), "bias": bias.tolist(), "shift": shift,
                        "pool": layer.pool, "output_threshold": 0})
        scales.append(LayerScales(scale_in, weight_scale, shift,
                                  float(clipped[shift]) / total, bool(layer.quants)))
        scale_in = scales[-1].scale
    return objects, scales
