"""An ONNX graph read as eventconv layers, or refused with one line.

eventconv runs one chain of layers, each ``Conv -> Relu [-> MaxPool 2x2 stride 2]``
(``SPEC.md``: conv, ReLU in requantize, optional 2 x 2 max pool). The reader walks the graph
from its one input to its one output and accepts exactly that, plus QuantizeLinear /
DequantizeLinear (QDQ) pairs, so a graph is either read whole and exactly or refused with
:class:`Unsupported`: one line naming the node, its op and what is supported. It never guesses:

* a Conv whose output is not rectified (no Relu, no uint8 QuantizeLinear with zero point 0)
  is refused, because eventconv's requantize always applies ReLU and the negative outputs
  would be lost without a word;
* ``Relu`` and ``MaxPool`` may come in either order after a Conv (max and ReLU commute, so
  both are the same layer);
* a QDQ pair on an activation must be uint8 with zero point 0 and one scale: it then clamps at
  0 (a ReLU) and 255 exactly as eventconv's requantize does. Weights behind a
  DequantizeLinear must be int8 with zero point 0 and one scale per tensor. Whether the scales
  chain by powers of two is checked when the layers are quantized
  (:mod:`eventconv.importer.quantize`).
"""

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

from eventconv.core.ranges import KERNEL_SIZES, ConfigError

__all__ = ["Unsupported", "GraphLayer", "Graph", "read_graph", "node_label"]

CHAIN = "one chain of layers, each Conv -> Relu [-> MaxPool 2x2 stride 2]"
LAYER_FORM = "supported: " + CHAIN
OPS = "Conv, Relu, MaxPool, QuantizeLinear/DequantizeLinear"
CONV_FORM = ("supported Conv: 2-D, kernel 1, 3, 5 or 7, stride 1, same padding, dilation 1, "
             "group 1, bias optional")
POOL_FORM = "supported MaxPool: kernel 2x2, stride 2, no padding, dilation 1, one output"
QDQ_FORM = ("supported quantization: activations uint8 with zero point 0, weights int8 with "
            "zero point 0, one scale per tensor")
ACTIVATION_OPS = ("Conv", "Relu", "MaxPool", "QuantizeLinear", "DequantizeLinear")
_HINTS = {"PRelu": "; eventconv's layer rectifies with ReLU: retrain or fine-tune with ReLU",
          "LeakyRelu": "; eventconv's layer rectifies with ReLU: retrain or fine-tune with ReLU",
          "Clip": "; eventconv's layer clamps at 0 and 255 of its uint8 map, use Relu",
          "BatchNormalization": "; fold it into the Conv's weights and bias before "
                                "exporting"}
UINT8, INT8, INT32 = onnx.TensorProto.UINT8, onnx.TensorProto.INT8, onnx.TensorProto.INT32


class Unsupported(ConfigError):
    """The graph holds something eventconv does not run exactly: the message is one line
    naming the node, its op and what is supported (the CLI prints it and exits 2)."""


def node_label(node, index=None):
    """``node 'name' (Op)``; a node without a name is named by its first output."""
    if node.name:
        return f"node '{node.name}' ({node.op_type})"
    out = node.output[0] if node.output else "?"
    return f"node {'#' + str(index) + ' ' if index is not None else ''}({node.op_type}, " \
           f"output '{out}')"


@dataclass
class Quant:
    """A QuantizeLinear -> DequantizeLinear pair on an activation."""

    node: object            # the QuantizeLinear
    scale: float


@dataclass
class GraphLayer:
    """One eventconv layer as the graph states it, in float (weights dequantized)."""

    conv: object                        # the Conv node
    nodes: list                         # every node of the layer on the chain, in order
    weights: np.ndarray                 # float64 [Cout, Cin, K, K]
    bias: np.ndarray                    # float64 [Cout]
    weight_int: np.ndarray | None = None    # int8 values behind a DequantizeLinear
    weight_scale: float | None = None
    bias_int: np.ndarray | None = None      # int32 values behind a DequantizeLinear
    bias_scale: float | None = None
    pool: int = 1
    quants: list = field(default_factory=list)   # Quant pairs after the Conv
    output: str = ""                    # the tensor that ends the layer (its float map)

    @property
    def name(self):
        return self.conv.name or self.conv.output[0]

    @property
    def kernel_size(self):
        return int(self.weights.shape[2])


@dataclass
class Graph:
    model: object
    input_name: str
    input_shape: tuple          # (N, C, H, W), None where not fixed
    input_quant: Quant | None
    layers: list


def _attributes(node):
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _text(value):
    return value.decode() if isinstance(value, bytes) else value


def _constants(graph):
    """name -> numpy value of every initializer and Constant node output."""
    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for index, node in enumerate(graph.node):
        if node.op_type != "Constant":
            continue
        attrs = list(node.attribute)
        if len(attrs) != 1 or attrs[0].name not in ("value", "value_float", "value_floats",
                                                      "value_int", "value_ints"):
            raise Unsupported(f"{node_label(node, index)}: only a tensor or number value is "
                              f"supported in a Constant")
        value = helper.get_attribute_value(attrs[0])
        values[node.output[0]] = (numpy_helper.to_array(value) if attrs[0].name == "value"
                                  else np.array(value))
    return values


def _one_scale(node, value, what):
    scale = np.asarray(value, dtype=np.float64).ravel()
    if scale.size == 0 or not np.all(scale == scale[0]):
        raise Unsupported(f"{node_label(node)}: {what} has {scale.size} different scales "
                          f"(per-channel); {QDQ_FORM}")
    if not (np.isfinite(scale[0]) and scale[0] > 0):
        raise Unsupported(f"{node_label(node)}: {what} scale {scale[0]} is not a positive "
                          f"number; {QDQ_FORM}")
    return float(scale[0])


def _zero_point(node, values, default_type):
    """(zero point array, its ONNX element type) of a Q or DQ node."""
    attrs = _attributes(node)
    if "block_size" in attrs and attrs["block_size"]:
        raise Unsupported(f"{node_label(node)}: block quantization is not supported; "
                          f"{QDQ_FORM}")
    if len(node.input) > 2 and node.input[2]:
        zero = values[node.input[2]]
        return zero, helper.np_dtype_to_tensor_dtype(zero.dtype)
    return np.zeros(1, np.int64), attrs.get("output_dtype") or default_type


class _Reader:
    def __init__(self, model):
        self.model = model
        self.graph = model.graph
        self.values = _constants(self.graph)
        self.index = {id(node): i for i, node in enumerate(self.graph.node)}
        self.parameters = set()     # ids of Constant and weight DequantizeLinear nodes

    def label(self, node):
        return node_label(node, self.index.get(id(node)))

    def refuse(self, node, text):
        raise Unsupported(f"{self.label(node)}: {text}")

    # -- constants: initializers, Constant nodes, DequantizeLinear of those --------------------

    def parameter(self, name, node, what):
        """(float value, int values or None, scale or None) of input ``name`` of ``node``."""
        if name in self.values:
            value = np.asarray(self.values[name])
            if not np.issubdtype(value.dtype, np.floating):
                self.refuse(node, f"{what} '{name}' is {value.dtype}, not float; put integer "
                                  f"{what} behind a DequantizeLinear ({QDQ_FORM})")
            return value.astype(np.float64), None, None
        producer = self.producer.get(name)
        if producer is not None and producer.op_type == "DequantizeLinear" \
                and producer.input[0] in self.values:
            self.parameters.add(id(producer))
            return self.dequantized(producer, what)
        self.refuse(node, f"{what} '{name}' is not a constant (an initializer, a Constant, or "
                          f"a DequantizeLinear of one); eventconv's weights are fixed")

    def dequantized(self, dq, what):
        q = np.asarray(self.values[dq.input[0]])
        scale = _one_scale(dq, self.values.get(dq.input[1], np.nan), what)
        zero, _ = _zero_point(dq, self.values, helper.np_dtype_to_tensor_dtype(q.dtype))
        if np.any(np.asarray(zero) != 0):
            self.refuse(dq, f"{what} zero point {np.asarray(zero).ravel()[0]} is not 0; "
                            f"{QDQ_FORM}")
        wanted = (np.int8,) if what == "weights" else (np.int8, np.int32)
        if q.dtype.type not in wanted:
            self.refuse(dq, f"{what} are {q.dtype}, not {' or '.join(t.__name__ for t in wanted)}"
                            f"; {QDQ_FORM}")
        return q.astype(np.float64) * scale, q.astype(np.int64), scale

    # -- the chain ------------------------------------------------------------------------------

    def read(self):
        graph = self.graph
        self.producer = {out: node for node in graph.node for out in node.output}
        consumers = {}
        for node in graph.node:
            for slot, name in enumerate(node.input):
                if name:
                    consumers.setdefault(name, []).append((node, slot))
        for node in graph.node:
            if node.domain not in ("", "ai.onnx"):
                self.refuse(node, f"op {node.domain}.{node.op_type} is not supported; "
                                  f"supported ops: {OPS}, in {CHAIN}")
        inputs = [i for i in graph.input if i.name not in self.values]
        if len(inputs) != 1:
            raise Unsupported(f"graph has {len(inputs)} inputs "
                              f"({', '.join(i.name for i in inputs) or 'none'}); eventconv "
                              f"takes one image input, (N, C, H, W) float")
        if len(graph.output) != 1:
            names = ", ".join(f"'{o.name}' from {self.label(self.producer[o.name])}"
                              if o.name in self.producer else f"'{o.name}'"
                              for o in graph.output)
            raise Unsupported(f"graph has {len(graph.output)} outputs ({names}); eventconv's "
                              f"network has one output, its last layer's map ({LAYER_FORM})")
        source, output = inputs[0], graph.output[0].name
        shape = self.input_shape(source)
        chain, current = [], source.name
        while True:
            users = consumers.get(current, [])
            where = (self.label(self.producer[current]) if current in self.producer
                     else f"input '{current}'")
            if len(users) > 1 or (users and current == output):
                names = ", ".join(self.label(n) for n, _ in users)
                also = " and the graph output" if current == output else ""
                raise Unsupported(f"{where}: its output '{current}' feeds {names}{also}: a "
                                  f"branch; eventconv takes no branches ({LAYER_FORM})")
            if not users:
                if current == output:
                    break
                raise Unsupported(f"{where}: its output '{current}' is not the graph output "
                                  f"'{output}' and feeds nothing; eventconv takes one chain "
                                  f"from the input to the output ({LAYER_FORM})")
            node, slot = users[0]
            self.check_step(node, slot)
            chain.append(node)
            current = node.output[0]
        input_quant, layers = self.layers(chain)     # notes the weights' DequantizeLinear
        on_chain = {id(node) for node in chain}
        for node in graph.node:
            if id(node) not in on_chain and id(node) not in self.parameters \
                    and node.op_type != "Constant":
                self.refuse(node, f"not on the chain from the input to the output; eventconv "
                                  f"takes one chain without branches ({LAYER_FORM})")
        return Graph(self.model, source.name, shape, input_quant, layers)

    def input_shape(self, source):
        tensor = source.type.tensor_type
        if not source.type.HasField("tensor_type") or tensor.elem_type != onnx.TensorProto.FLOAT:
            raise Unsupported(f"input '{source.name}' is not a float tensor; eventconv's "
                              f"input is float, uint8 frame x input scale")
        dims = tuple(d.dim_value if d.HasField("dim_value") else None
                     for d in tensor.shape.dim)
        if tensor.HasField("shape") and len(dims) != 4:
            raise Unsupported(f"input '{source.name}' has {len(dims)} dimensions, not 4 "
                              f"(N, C, H, W)")
        return dims if dims else (None,) * 4

    def check_step(self, node, slot):
        """``node`` takes the activation at input ``slot``: is it an op of the chain, with the
        activation as its data input?"""
        if node.op_type not in ACTIVATION_OPS:
            self.refuse(node, f"op {node.op_type} is not supported{_HINTS.get(node.op_type, '')}"
                              f"; supported ops: {OPS}, in {CHAIN}")
        if slot != 0:
            self.refuse(node, f"takes an activation as input {slot} ('{node.input[slot]}'); "
                              f"only its first input may be computed ({LAYER_FORM})")
        if node.op_type == "MaxPool" and len(node.output) > 1 and node.output[1]:
            self.refuse(node, f"its Indices output is not supported; {POOL_FORM}")

    # -- layers ---------------------------------------------------------------------------------

    def layers(self, chain):
        input_quant, layers, position = None, [], 0
        while position < len(chain):
            node = chain[position]
            if node.op_type == "QuantizeLinear":
                quant = self.quant_pair(chain, position)
                position += 2
                if layers:
                    layers[-1].quants.append(quant)
                    layers[-1].nodes += chain[position - 2:position]
                elif input_quant is None:
                    input_quant = quant
                else:
                    self.refuse(node, "a second QuantizeLinear on the input; the input is "
                                      "quantized once, to uint8 frame x input scale")
                continue
            if node.op_type == "DequantizeLinear":
                self.refuse(node, f"dequantizes an activation that no QuantizeLinear "
                                  f"quantized; {QDQ_FORM}")
            if node.op_type == "Conv":
                layers.append(self.conv_layer(node))
            elif not layers:
                self.refuse(node, f"comes before the first Conv; eventconv's network starts "
                                  f"with a Conv ({LAYER_FORM})")
            elif node.op_type == "Relu":
                if any(n.op_type == "Relu" for n in layers[-1].nodes):
                    self.refuse(node, f"a second Relu in one layer ({LAYER_FORM})")
            elif node.op_type == "MaxPool":
                self.check_pool(node, layers[-1])
                layers[-1].pool = 2
            if node.op_type != "Conv":
                layers[-1].nodes.append(node)
            position += 1
        if not layers:
            raise Unsupported(f"graph has no Conv ({LAYER_FORM})")
        for layer, after in zip(layers, layers[1:] + [None], strict=True):
            rectified = any(n.op_type == "Relu" for n in layer.nodes) or layer.quants
            if not rectified:
                self.refuse(layer.conv, "its output is not rectified: no Relu follows it before "
                                        f"{self.label(after.conv) if after else 'the output'}; "
                                        "eventconv's layer always applies ReLU when it "
                                        "requantizes, so negative outputs would be lost: add "
                                        f"a Relu ({LAYER_FORM})")
            layer.output = layer.nodes[-1].output[0]
        return input_quant, layers

    def quant_pair(self, chain, position):
        q = chain[position]
        dq = chain[position + 1] if position + 1 < len(chain) else None
        if dq is None or dq.op_type != "DequantizeLinear":
            self.refuse(q, f"is not followed by a DequantizeLinear; eventconv takes "
                           f"QuantizeLinear/DequantizeLinear pairs ({QDQ_FORM})")
        scale = _one_scale(q, self.constant(q, 1, "scale"), "activation")
        zero, dtype = _zero_point(q, self.values, UINT8)
        if dtype != UINT8 or np.any(np.asarray(zero) != 0):
            kind = helper.tensor_dtype_to_np_dtype(dtype).name if dtype else "?"
            self.refuse(q, f"quantizes to {kind} with zero point "
                           f"{np.asarray(zero).ravel()[0]}, not uint8 with zero point 0 "
                           f"(eventconv's maps are uint8 from 0); {QDQ_FORM}")
        dq_scale = _one_scale(dq, self.constant(dq, 1, "scale"), "activation")
        dq_zero, _ = _zero_point(dq, self.values, UINT8)
        if dq_scale != scale or np.any(np.asarray(dq_zero) != 0):
            self.refuse(dq, f"scale {dq_scale:g} or zero point differs from its "
                            f"QuantizeLinear's ({scale:g}, 0); {QDQ_FORM}")
        return Quant(q, scale)

    def constant(self, node, slot, what):
        if len(node.input) <= slot or node.input[slot] not in self.values:
            self.refuse(node, f"its {what} is not a constant; {QDQ_FORM}")
        return self.values[node.input[slot]]

    def conv_layer(self, node):
        attrs = _attributes(node)
        if len(node.input) < 2:
            self.refuse(node, f"has no weights; {CONV_FORM}")
        weights, weight_int, weight_scale = self.parameter(node.input[1], node, "weights")
        if weights.ndim != 4:
            self.refuse(node, f"is {weights.ndim - 2}-D; {CONV_FORM}")
        cout, _, kh, kw = weights.shape
        if kh != kw or kh not in KERNEL_SIZES or attrs.get("kernel_shape", [kh, kw]) != [kh, kw]:
            self.refuse(node, f"kernel {kh}x{kw} is not supported; {CONV_FORM}")
        strides = list(attrs.get("strides", [1, 1]))
        if strides != [1, 1]:
            self.refuse(node, f"stride {strides} is not supported; {CONV_FORM}")
        dilations = list(attrs.get("dilations", [1, 1]))
        if dilations != [1, 1]:
            self.refuse(node, f"dilation {dilations} is not supported; {CONV_FORM}")
        if attrs.get("group", 1) != 1:
            self.refuse(node, f"group {attrs['group']} is not supported (grouped or depthwise "
                              f"convolution); {CONV_FORM}")
        auto_pad = _text(attrs.get("auto_pad", "NOTSET"))
        pad = kh // 2
        if auto_pad == "NOTSET":
            pads = list(attrs.get("pads", [0, 0, 0, 0]))
            if pads != [pad] * 4:
                kind = "valid padding" if not any(pads) else "padding"
                self.refuse(node, f"pads {pads} ({kind}) are not the same padding "
                                  f"{[pad] * 4} of a {kh}x{kh} kernel; {CONV_FORM}")
        elif auto_pad == "VALID" and kh > 1:
            self.refuse(node, f"auto_pad VALID (valid padding) is not supported; {CONV_FORM}")
        elif auto_pad not in ("VALID", "SAME_UPPER", "SAME_LOWER"):
            self.refuse(node, f"auto_pad {auto_pad} is not supported; {CONV_FORM}")
        layer = GraphLayer(node, [node], weights, np.zeros(cout), weight_int=weight_int,
                           weight_scale=weight_scale)
        if len(node.input) > 2 and node.input[2]:
            bias, bias_int, bias_scale = self.parameter(node.input[2], node, "bias")
            if bias.shape != (cout,):
                self.refuse(node, f"bias has shape {bias.shape}, not ({cout},)")
            layer.bias, layer.bias_int, layer.bias_scale = bias, bias_int, bias_scale
        return layer

    def check_pool(self, node, layer):
        attrs = _attributes(node)
        if layer.pool == 2:
            self.refuse(node, f"a second MaxPool in one layer; eventconv pools once per layer "
                              f"({LAYER_FORM})")
        kernel = list(attrs.get("kernel_shape", []))
        strides = list(attrs.get("strides", [1] * len(kernel)))
        pads = list(attrs.get("pads", [0] * 2 * len(kernel)))
        dilations = list(attrs.get("dilations", [1] * len(kernel)))
        if kernel != [2, 2]:
            self.refuse(node, f"kernel {kernel} is not supported; {POOL_FORM}")
        if strides != [2, 2]:
            self.refuse(node, f"stride {strides} is not supported; {POOL_FORM}")
        if any(pads) or dilations != [1, 1]:
            self.refuse(node, f"pads {pads} / dilation {dilations} are not supported; "
                              f"{POOL_FORM}")


def read_graph(model):
    """The eventconv layers of an ONNX ``ModelProto``, or :class:`Unsupported`."""
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise Unsupported(f"the ONNX model is not valid: {first}") from None
    return _Reader(model).read()
