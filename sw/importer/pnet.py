"""A real trained model to import: PNet (MTCNN's face proposal network, facenet-pytorch's
trained weights) as ONNX graphs, built with ``onnx.helper``: no PyTorch needed.

``data/pnet_float.npz`` holds facenet-pytorch 2.6.0's float weights of PNet's conv1, conv2,
conv3, conv4_1 and the PReLU slopes, unchanged (MIT licence, ``data/LICENSE.pnet``). The
graphs take one grey channel, float = pixel x 1/128 (give ``--input-scale 1/128``), and are
PNet's first four layers with eventconv's layer form:

* conv1 3x3 (10 channels) -> ReLU -> MaxPool 2x2, conv2 3x3 (16) -> ReLU, conv3 3x3 (32) ->
  ReLU, conv4_1 1x1 (2: face / not face) -> ReLU;
* ReLU in place of PNet's PReLU (``activation="PRelu"`` keeps PNet's, which eventconv
  refuses) and after conv4_1 (PNet's softmax input);
* "same" zero padding instead of none; conv1's weights summed over R, G, B (exact for a grey
  picture given as RGB); PNet's input normalisation ``(x - 127.5) / 128`` folded into conv1's
  bias (exact but at the borders).

:func:`pnet_qdq_model` is the same network already quantized (QuantizeLinear /
DequantizeLinear pairs): int8 weights and uint8 activations with power-of-two scales, the
activation scales calibrated on frames with onnxruntime, as a quantization-aware training
flow with power-of-two scales would export it.

Write the graphs, or extract the weights again::

    python -m eventconv.importer.pnet pnet.onnx            # float
    python -m eventconv.importer.pnet --qdq pnet_qdq.onnx  # quantized on the bundled clip
    python -m eventconv.importer.pnet --extract facenet_pytorch/data/pnet.pt
"""

import argparse
import math
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from eventconv.core.clip import load_clip
from eventconv.core.nets import read_torch_legacy
from eventconv.importer.graph import read_graph
from eventconv.importer.report import float_maps

__all__ = ["WEIGHTS", "INPUT_SCALE", "LAYERS", "pnet_weights", "pnet_float_model",
           "pnet_qdq_model", "chain_model"]

WEIGHTS = Path(__file__).parent / "data" / "pnet_float.npz"
#: PNet's layers as eventconv layers: (name, pool).
LAYERS = (("conv1", 2), ("conv2", 1), ("conv3", 1), ("conv4_1", 1))
INPUT_SCALE = 1 / 128               # a pixel x is x / 128; PNet's (x - 127.5) / 128
INPUT_OFFSET = 127.5 / 128
OPSET = 17


def pnet_weights():
    """name -> (weights, bias, PReLU slopes or None), float32, conv1 for one grey channel
    with PNet's input offset folded into its bias."""
    data = np.load(WEIGHTS, allow_pickle=False)
    out = {}
    for index, (name, _) in enumerate(LAYERS):
        w = data[f"{name}_weight"].astype(np.float64)
        b = data[f"{name}_bias"].astype(np.float64)
        if name == "conv1":
            w = w.sum(axis=1, keepdims=True)
            b = b - INPUT_OFFSET * w.sum(axis=(1, 2, 3))
        slope = data.get(f"prelu{index + 1}_weight")
        out[name] = (w.astype(np.float32), b.astype(np.float32), slope)
    return out


def _shape(height, width):
    return ["N", 1, height or "H", width or "W"]


def chain_model(layers, *, height=None, width=None, activation="Relu", quant=None):
    """A chain of ``(name, weights, bias, pool, slope)`` layers as an ONNX model.

    ``quant``: None for a float graph, else ``(input_scale, [(weight_scale, output_scale),
    ...])``, every scale a float: the weights become int8 and the bias int32 behind
    DequantizeLinear, the input and every layer's activations QuantizeLinear /
    DequantizeLinear pairs (uint8, zero point 0), as onnxruntime lays out a QDQ graph.
    """
    nodes, inits = [], []
    current = "input"

    def const(name, value):
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def qdq(name, tensor, scale):
        const(f"{name}_scale", np.float32(scale))
        const(f"{name}_zero", np.uint8(0))
        nodes.append(helper.make_node("QuantizeLinear", [tensor, f"{name}_scale",
                                      f"{name}_zero"], [f"{name}_q"], name=f"{name}_q"))
        nodes.append(helper.make_node("DequantizeLinear", [f"{name}_q", f"{name}_scale",
                                      f"{name}_zero"], [f"{name}_dq"], name=f"{name}_dq"))
        return f"{name}_dq"

    scale_in = None
    if quant is not None:
        scale_in, layer_scales = quant
        current = qdq("input", current, scale_in)
    for index, (name, w, b, pool, slope) in enumerate(layers):
        k = w.shape[2]
        if quant is None:
            weights, bias = const(f"{name}.weight", w.astype(np.float32)), \
                const(f"{name}.bias", b.astype(np.float32))
        else:
            w_scale, out_scale = layer_scales[index]
            weights, bias = f"{name}.weight_dq", f"{name}.bias_dq"
            w_int = np.clip(np.rint(w / w_scale), -128, 127).astype(np.int8)
            b_int = np.rint(b / (scale_in * w_scale)).astype(np.int32)
            const(f"{name}.weight_int8", w_int)
            const(f"{name}.weight_scale", np.float32(w_scale))
            const(f"{name}.weight_zero", np.int8(0))
            const(f"{name}.bias_int32", b_int)
            const(f"{name}.bias_scale", np.float32(scale_in * w_scale))
            const(f"{name}.bias_zero", np.int32(0))
            for part in ("weight", "bias"):
                nodes.append(helper.make_node(
                    "DequantizeLinear", [f"{name}.{part}_int{8 if part == 'weight' else 32}",
                                         f"{name}.{part}_scale", f"{name}.{part}_zero"],
                    [f"{name}.{part}_dq"], name=f"{name}_{part}_dq"))
        nodes.append(helper.make_node("Conv", [current, weights, bias], [f"{name}_out"],
                                      name=name, kernel_shape=[k, k], pads=[k // 2] * 4,
                                      strides=[1, 1]))
        current = f"{name}_out"
        act = f"{'prelu' if activation == 'PRelu' else 'relu'}{name[4:]}"
        inputs = [current]
        if activation == "PRelu" and slope is not None:
            inputs.append(const(f"{act}.weight", slope.astype(np.float32)[:, None, None]))
        if activation == "PRelu" and slope is None:
            act, inputs = f"relu{name[4:]}", [current]
        nodes.append(helper.make_node("PRelu" if len(inputs) > 1 else "Relu", inputs,
                                      [f"{act}_out"], name=act))
        current = f"{act}_out"
        if quant is not None:
            current = qdq(act, current, layer_scales[index][1])
        if pool == 2:
            nodes.append(helper.make_node("MaxPool", [current], [f"pool{name[4:]}_out"],
                                          name=f"pool{name[4:]}", kernel_shape=[2, 2],
                                          strides=[2, 2]))
            current = f"pool{name[4:]}_out"
            if quant is not None:
                current = qdq(f"pool{name[4:]}", current, layer_scales[index][1])
        if quant is not None:
            scale_in = layer_scales[index][1]
    graph = helper.make_graph(
        nodes, "pnet", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                      _shape(height, width))],
        [helper.make_tensor_value_info(current, TensorProto.FLOAT,
                                       ["N", int(layers[-1][1].shape[0]), "Hout", "Wout"])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="eventconv.importer.pnet")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _layers():
    weights = pnet_weights()
    return [(name, *weights[name][:2], pool, weights[name][2]) for name, pool in LAYERS]


def pnet_float_model(height=None, width=None, activation="Relu"):
    """PNet's first four layers, float, as an ONNX model (input (N, 1, H, W))."""
    return chain_model(_layers(), height=height, width=width, activation=activation)


def _power_of_two_above(value):
    return 2.0 ** math.ceil(math.log2(value))


def pnet_qdq_model(frames, height=None, width=None, clipped=0.001):
    """PNet quantized with power-of-two scales (a QDQ graph): weights ``2^ceil(log2(max|w| /
    127))``, each activation's scale the power of two that leaves ``clipped`` of its float
    values on ``frames`` (uint8 (T, 1, H, W)) above 255 units, and never below the
    accumulator unit (eventconv's shift is 0..31)."""
    layers = _layers()
    maps = float_maps(read_graph(pnet_float_model(height, width)), frames, INPUT_SCALE)
    scale_in, scales = INPUT_SCALE, []
    for (_, w, *_), values in zip(layers, maps, strict=True):
        w_scale = _power_of_two_above(np.abs(w).max() / 127)
        top = float(np.quantile(values, 1 - clipped)) / 255
        out_scale = max(_power_of_two_above(top) if top > 0 else 1.0, scale_in * w_scale)
        scales.append((w_scale, out_scale))
        scale_in = out_scale
    return chain_model(layers, height=height, width=width, quant=(INPUT_SCALE, scales))


def extract(pt_path, out=WEIGHTS):
    """``data/pnet_float.npz`` from facenet-pytorch's ``pnet.pt`` (see ``data/LICENSE.pnet``)."""
    state = read_torch_legacy(pt_path)
    keep = {key.replace(".", "_"): value.astype(np.float32) for key, value in state.items()
            if key.split(".")[0] in ("conv1", "conv2", "conv3", "conv4_1", "prelu1", "prelu2",
                                     "prelu3")}
    np.savez_compressed(out, **keep)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m eventconv.importer.pnet",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("output", metavar="OUT.onnx | pnet.pt")
    parser.add_argument("--qdq", action="store_true",
                        help="quantized graph, scales calibrated on the bundled clip")
    parser.add_argument("--extract", action="store_true",
                        help="read facenet-pytorch's pnet.pt and write data/pnet_float.npz")
    args = parser.parse_args(argv)
    if args.extract:
        print(extract(args.output))
        return
    model = (pnet_qdq_model(load_clip("vtest_64x48")[:20, None]) if args.qdq
             else pnet_float_model())
    onnx.save(model, args.output)
    print(args.output)


if __name__ == "__main__":
    main()
