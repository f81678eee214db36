"""`eventconv import`: a real trained model (PNet, facenet-pytorch's weights) read from ONNX,
quantized on the bundled clip and checked against onnxruntime; every unsupported graph
refused with one line naming the node, exit 2, no file written."""

import json
import math

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

from eventconv.cli import main
from eventconv.core.clip import load_clip
from eventconv.core.model import NetworkModel, correlate_same, max_pool, requantize, run_model
from eventconv.core.network import Network
from eventconv.importer import convert
from eventconv.importer.pnet import INPUT_SCALE, pnet_float_model, pnet_qdq_model

CALIBRATION = 20
SATURATION = 0.001


@pytest.fixture(scope="module")
def clip():
    return load_clip("vtest_64x48")             # (60, 48, 64), real video


def ort_run(model, frames, scale, names=None):
    """``model`` run by onnxruntime on uint8 ``frames`` (T, H, W) x ``scale``: the tensors
    ``names`` (default: the graph output), each (T, C, H', W')."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    names = names or [model.graph.output[0].name]
    for name in names:
        if name not in [o.name for o in model.graph.output]:
            model.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT,
                                                                    None))
    session = onnxruntime.InferenceSession(model.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    outs = [session.run(names, {"input": f[None, None].astype(np.float32)
                                * np.float32(scale)}) for f in frames]
    return [np.concatenate([o[k] for o in outs]).astype(np.float64) for k in range(len(names))]


def corr(a, b):
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def run_import(tmp_path, model, frames, *extra, name="net.json"):
    model_path, frames_path = tmp_path / "model.onnx", tmp_path / "frames.npy"
    onnx.save(model, model_path)
    np.save(frames_path, frames)
    out = tmp_path / name
    code = main(["import", str(model_path), "--calibrate", str(frames_path), "-o", str(out),
                 *map(str, extra)])
    return code, out


@pytest.fixture(scope="module")
def pnet_import(tmp_path_factory, clip):
    """PNet's real float weights (ReLU for PReLU) imported through the command line."""
    tmp = tmp_path_factory.mktemp("pnet")
    code, out = run_import(tmp, pnet_float_model(), clip[:CALIBRATION],
                           "--input-scale", "1/128")
    assert code == 0
    return out, json.loads((tmp / "net.report.json").read_text())


def test_import_writes_the_network_and_its_report(pnet_import):
    out, report = pnet_import
    assert (out.parent / "net.md").is_file()
    net = Network.from_json(out)
    assert [(c.channels_in, c.channels_out, c.kernel_size, c.pool) for c in net.layers] == \
        [(1, 10, 3, 2), (10, 16, 3, 1), (16, 32, 3, 1), (32, 2, 1, 1)]
    assert (net.first.threshold, net.mode) == (0, "event")
    for layer in net.layers:
        assert np.abs(layer.weights).max() == 127           # int8 per layer, range used whole
        assert 0 < layer.shift <= 31
    assert [row["nodes"] for row in report["layers"]] == [
        ["conv1", "relu1", "pool1"], ["conv2", "relu2"], ["conv3", "relu3"],
        ["conv4_1", "relu4_1"]]
    assert report["frames"] == CALIBRATION and report["input_scale"] == 1 / 128
    assert report["seconds"] < 10                           # the import budget
    md = (out.parent / "net.md").read_text()
    assert md.count("| conv") == 4 and "correlation" in md


def test_pnet_on_the_clip_matches_onnxruntime_per_layer(pnet_import, clip):
    """The issue's target: correlation >= 0.99 of the last layer's map with the float model,
    on the whole clip (40 frames the calibration never saw), by the golden model."""
    out, report = pnet_import
    net = Network.from_json(out)
    ours = run_model(net, clip)["output"].astype(np.float64) * report["layers"][-1]["scale"]
    (theirs,) = ort_run(pnet_float_model(), clip, INPUT_SCALE)
    assert ours.shape == theirs.shape == (60, 2, 24, 32)
    assert corr(ours, theirs) >= 0.99
    assert np.abs(ours - theirs).mean() < 0.05 * np.abs(theirs).mean()
    # The report's figures are those of the model on the calibration frames, layer by layer.
    names = [row["output_tensor"] for row in report["layers"]]
    floats = ort_run(pnet_float_model(), clip[:CALIBRATION], INPUT_SCALE, names)
    model = NetworkModel(net)
    maps = list(zip(*[[r.pooled for r in model.step(f[None])] for f in clip[:CALIBRATION]],
                    strict=True))
    for row, ours, theirs in zip(report["layers"], maps, floats, strict=True):
        ours = np.stack(ours) * row["scale"]
        assert row["correlation"] == pytest.approx(corr(ours, theirs), abs=1e-9)
        assert row["mae"] == pytest.approx(np.abs(ours - theirs).mean(), rel=1e-9)
        assert row["correlation"] >= 0.99


def test_calibrated_shift_is_the_smallest_within_the_saturation_limit(pnet_import, clip):
    out, report = pnet_import
    dense = Network.from_dict({**Network.from_json(out).to_dict(), "mode": "dense"})
    model = NetworkModel(dense)
    accs = [[] for _ in dense.layers]
    for frame in clip[:CALIBRATION]:
        model.step(frame[None])
        for k, layer in enumerate(model.layers):
            accs[k].append(layer.acc.copy())
    for layer, row, acc in zip(dense.layers, report["layers"], accs, strict=True):
        acc, s = np.stack(acc), layer.shift
        clipped = ((np.maximum(acc, 0) >> s) > 255).mean()
        assert clipped <= SATURATION and clipped == pytest.approx(row["saturated_fraction"])
        # One shift less, rounding offset moved along, clips more than the limit.
        smaller = acc - (1 << (s - 1)) + ((1 << (s - 1)) >> 1)
        assert ((np.maximum(smaller, 0) >> (s - 1)) > 255).mean() > SATURATION


def test_qdq_graph_is_imported_with_its_own_integers(tmp_path, clip):
    """A quantized graph with power-of-two scales: its int8 weights, int32 bias and scales
    become the network as they are; each layer then equals onnxruntime's quantized layer
    but where ONNX rounds a tie to even and eventconv half up."""
    frames = clip[:CALIBRATION]
    model = pnet_qdq_model(frames[:, None])
    code, out = run_import(tmp_path, model, frames, "--input-scale", "1/128")
    assert code == 0
    net, report = Network.from_json(out), json.loads((tmp_path / "net.report.json").read_text())
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    scale_in = INPUT_SCALE
    names = [row["output_tensor"] for row in report["layers"]]
    floats = ort_run(model, frames, INPUT_SCALE, names)
    previous = frames[:, None].astype(np.int64)
    for layer, row, name, theirs in zip(net.layers, report["layers"], ("conv1", "conv2",
                                        "conv3", "conv4_1"), floats, strict=True):
        assert row["shift_from"] == "graph"
        np.testing.assert_array_equal(layer.weights, inits[f"{name}.weight_int8"])
        w_scale, out_scale = float(inits[f"{name}.weight_scale"]), row["scale"]
        assert 2.0 ** layer.shift == out_scale / (scale_in * w_scale)
        np.testing.assert_array_equal(layer.bias, inits[f"{name}.bias_int32"]
                                      + ((1 << layer.shift) >> 1))
        theirs = np.rint(theirs / out_scale).astype(np.int64)     # onnxruntime's uint8
        accs = [correlate_same(p, layer.weights) + layer.bias[:, None, None] for p in previous]
        ours = np.stack([max_pool(requantize(a, layer.shift), layer.pool) for a in accs])
        half = (1 << layer.shift) >> 1
        to_even = np.stack([max_pool(np.clip(np.rint(np.maximum(a - half, 0) / 2**layer.shift),
                                             0, 255), layer.pool) for a in accs])
        np.testing.assert_array_equal(to_even, theirs)             # same integers, same maps
        assert np.abs(ours.astype(np.int64) - theirs).max() <= 1   # ties only
        assert (ours != theirs).mean() < 0.01
        previous, scale_in = theirs, out_scale
    (theirs,) = ort_run(model, clip, INPUT_SCALE)
    ours = run_model(net, clip)["output"] * report["layers"][-1]["scale"]
    assert corr(ours, theirs) >= 0.999


def test_relu_and_max_pool_in_either_order_are_the_same_layer(clip):
    frames = clip[:4, None]
    model = pnet_float_model()
    swapped = onnx.ModelProto.FromString(model.SerializeToString())
    nodes = list(swapped.graph.node)
    names = [n.name for n in nodes]
    relu, pool = nodes[names.index("relu1")], nodes[names.index("pool1")]
    assert (relu.input[0], pool.input[0], pool.output[0]) == ("conv1_out", "relu1_out",
                                                              "pool1_out")
    # conv1 -> pool1 -> relu1 -> conv2 (relu1 now writes the tensor conv2 reads).
    pool.input[0], relu.input[0], relu.output[0], pool.output[0] = \
        "conv1_out", "pooled", "pool1_out", "pooled"
    nodes[names.index("relu1")], nodes[names.index("pool1")] = pool, relu
    del swapped.graph.node[:]
    swapped.graph.node.extend(nodes)
    a, _ = convert(model, frames, input_scale=INPUT_SCALE)
    b, report = convert(swapped, frames, input_scale=INPUT_SCALE)
    assert report["layers"][0]["nodes"] == ["conv1", "pool1", "relu1"]
    assert a == b


def _small_model(kernels=(5, 7, 1), bias=(False, True, True), auto_pad=("SAME_UPPER", None,
                 None), seed=1):
    """Random weights in a chain Conv K -> Relu [-> MaxPool] with every kernel size."""
    rng = np.random.default_rng(seed)
    nodes, inits, current, cin = [], [], "input", 1
    for index, (k, has_bias, pad) in enumerate(zip(kernels, bias, auto_pad, strict=True)):
        cout = 4 + index
        inits.append(numpy_helper.from_array(
            rng.normal(0, 1 / k, (cout, cin, k, k)).astype(np.float32), f"w{index}"))
        inputs = [current, f"w{index}"]
        if has_bias:
            inits.append(numpy_helper.from_array(rng.normal(0, 0.1, cout).astype(np.float32),
                                                 f"b{index}"))
            inputs.append(f"b{index}")
        attrs = {"auto_pad": pad} if pad else {"pads": [k // 2] * 4}
        nodes.append(helper.make_node("Conv", inputs, [f"c{index}"], name=f"conv{index}",
                                      **attrs))
        nodes.append(helper.make_node("Relu", [f"c{index}"], [f"r{index}"], name=f"relu{index}"))
        current, cin = f"r{index}", cout
    nodes.append(helper.make_node("MaxPool", [current], ["out"], name="pool", kernel_shape=[2, 2],
                                  strides=[2, 2]))
    graph = helper.make_graph(nodes, "small",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                             [1, 1, 48, 64])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT,
                                                             [1, cin, 24, 32])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_every_kernel_size_with_and_without_bias(clip):
    frames = clip[:6]
    model = _small_model()
    obj, report = convert(model, frames[:, None])        # default input scale 1/255
    net = Network.from_dict(obj)
    assert [(c.kernel_size, c.pool) for c in net.layers] == [(5, 1), (7, 1), (1, 2)]
    assert (net.layers[0].bias == (1 << net.layers[0].shift) >> 1).all()   # rounding only
    (theirs,) = ort_run(model, frames, 1 / 255)
    ours = run_model(net, frames)["output"] * report["layers"][-1]["scale"]
    assert corr(ours, theirs) >= 0.99


def test_quantized_activation_after_float_weights_fixes_the_shift(clip):
    """A graph quantizing only an activation: the layer's float weights get the finest
    scale that makes the output scale a power of two times the accumulator unit."""
    frames = clip[:6]
    model = _qdq(2.0**-4)
    obj, report = convert(model, frames[:, None])
    last, row = Network.from_dict(obj).layers[-1], report["layers"][-1]
    assert row["shift_from"] == "graph" and row["scale"] == pytest.approx(2.0**-4)
    assert 64 <= np.abs(last.weights).max() <= 127              # finest scale that fits
    assert row["scale"] / (row["input_scale"] * row["weight_scale"]) == \
        pytest.approx(2.0**last.shift)
    (theirs,) = ort_run(model, frames, 1 / 255)
    ours = run_model(Network.from_dict(obj), frames)["output"] * row["scale"]
    assert corr(ours, theirs) >= 0.99


# -- refusals: one line naming the node and its op, exit 2, no file ----------------------------

def _base():
    """A valid two-layer float graph as (nodes, initializers): conv1 3x3 -> relu1 -> pool1 ->
    conv2 3x3 -> relu2."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(0, 0.3, s).astype(np.float32), n)
             for n, s in (("w1", (4, 1, 3, 3)), ("b1", (4,)), ("w2", (3, 4, 3, 3)),
                          ("b2", (3,)), ("w2b", (3, 4, 3, 3)))]
    nodes = [helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], name="conv1",
                              pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2],
                              strides=[2, 2]),
             helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], name="conv2",
                              pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c2"], ["out"], name="relu2")]
    return nodes, inits


def _model(nodes, inits, extra_inits=()):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(
        "input", TensorProto.FLOAT, ["N", 1, "H", "W"])], [helper.make_tensor_value_info(
            "out", TensorProto.FLOAT, ["N", 3, "H2", "W2"])], list(inits) + list(extra_inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _edited(name, **attrs):
    nodes, inits = _base()
    for i, node in enumerate(nodes):
        if node.name == name:
            kept = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            merged = {k: v for k, v in {**kept, **attrs}.items() if v is not None}
            nodes[i] = helper.make_node(node.op_type, node.input, node.output, name=node.name,
                                        **merged)
    return _model(nodes, inits)


def _replaced(name, op, *extra_inputs, **attrs):
    nodes, inits = _base()
    for i, node in enumerate(nodes):
        if node.name == name:
            nodes[i] = helper.make_node(op, [node.input[0], *extra_inputs], node.output,
                                        name=name, **attrs)
    return nodes, inits


def _other_op():
    nodes, inits = _replaced("relu2", "Sigmoid")
    return _model(nodes, inits)


def _prelu():
    nodes, inits = _replaced("relu1", "PRelu", "slope")
    return _model(nodes, inits, [numpy_helper.from_array(np.full((4, 1, 1), 0.25, np.float32),
                                                         "slope")])


def _branch():
    nodes, inits = _base()
    nodes[-1] = helper.make_node("Relu", ["c2"], ["r2"], name="relu2")
    nodes += [helper.make_node("Conv", ["p1", "w2b"], ["c2b"], name="conv2b", pads=[1] * 4),
              helper.make_node("Relu", ["c2b"], ["r2b"], name="relu2b"),
              helper.make_node("Add", ["r2", "r2b"], ["out"], name="add")]
    return _model(nodes, inits)


def _no_relu():
    nodes, inits = _base()
    nodes[-2].output[0] = "out"                 # conv2 is the output, relu2 gone
    return _model(nodes[:-1], inits)


def _qdq(scale, zero_type=TensorProto.UINT8):
    nodes, inits = _base()
    nodes[-1] = helper.make_node("Relu", ["c2"], ["r2"], name="relu2")
    nodes += [helper.make_node("QuantizeLinear", ["r2", "s", "z"], ["q"], name="quant2"),
              helper.make_node("DequantizeLinear", ["q", "s", "z"], ["out"], name="dequant2")]
    zero = helper.make_tensor("z", zero_type, [], [0])
    return _model(nodes, inits, [numpy_helper.from_array(np.float32(scale), "s"), zero])


def _qdq_input(frames):
    return pnet_qdq_model(frames[:2, None])


def _qdq_not_power_of_two():
    """PNet's QDQ graph with conv2's output scale 0.03: not a power of two times conv2's
    accumulator unit."""
    model = pnet_qdq_model(load_clip("vtest_64x48")[:2, None])
    for init in model.graph.initializer:
        if init.name == "relu2_scale":
            init.CopyFrom(numpy_helper.from_array(np.float32(0.03), init.name))
    return model


REFUSED = {
    "other op": (_other_op, "'relu2' (Sigmoid)", "not supported"),
    "stride 2": (lambda: _edited("conv2", strides=[2, 2]), "'conv2' (Conv)", "stride [2, 2]"),
    "padding valid": (lambda: _edited("conv1", pads=[0, 0, 0, 0]), "'conv1' (Conv)",
                      "valid padding"),
    "auto_pad valid": (lambda: _edited("conv1", pads=None, auto_pad="VALID"), "'conv1' (Conv)",
                       "valid padding"),
    "group 2": (lambda: _edited("conv2", group=2), "'conv2' (Conv)", "group 2"),
    "dilation 2": (lambda: _edited("conv2", dilations=[2, 2], pads=[2, 2, 2, 2]),
                   "'conv2' (Conv)", "dilation [2, 2]"),
    "prelu": (_prelu, "'relu1' (PRelu)", "ReLU"),
    "branch": (_branch, "'pool1' (MaxPool)", "branch"),
    "conv without relu": (_no_relu, "'conv2' (Conv)", "not rectified"),
    "max pool 3x3": (lambda: _edited("pool1", kernel_shape=[3, 3], strides=[2, 2]),
                     "'pool1' (MaxPool)", "kernel [3, 3]"),
    "max pool stride 1": (lambda: _edited("pool1", strides=[1, 1]), "'pool1' (MaxPool)",
                          "stride [1, 1]"),
    "qdq scale not a power of two": (_qdq_not_power_of_two, "'relu2_q' (QuantizeLinear)",
                                     "not a power of two", "--input-scale", "1/128"),
    "qdq int8 activation": (lambda: _qdq(2.0**-4, TensorProto.INT8), "'quant2' (QuantizeLinear)",
                            "not uint8"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_unsupported_graph_is_refused_with_one_line_naming_the_node(case, tmp_path, clip,
                                                                    capsys):
    build, label, reason, *args = REFUSED[case]
    code, out = run_import(tmp_path, build(), clip[:2], *args)
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("eventconv: error: node ")
    assert label in err and reason in err and "supported" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames.npy", "model.onnx"]


def test_real_pnet_with_prelu_and_qdq_input_scale_are_refused(tmp_path, clip, capsys):
    code, _ = run_import(tmp_path, pnet_float_model(activation="PRelu"), clip[:2],
                         "--input-scale", "1/128")
    assert code == 2 and "node 'prelu1' (PRelu): op PRelu is not supported" in \
        capsys.readouterr().err
    # A QDQ graph whose input quantization is not the frames' scale would see other pixels.
    code, _ = run_import(tmp_path, _qdq_input(clip), clip[:2])     # default scale 1/255
    err = capsys.readouterr().err
    assert code == 2 and "node 'input_q' (QuantizeLinear)" in err and "--input-scale" in err
    assert not (tmp_path / "net.json").exists()


@pytest.mark.parametrize("args, message", [
    (["--input-scale", "0"], "--input-scale must be a positive number"),
    (["--input-scale", "x"], "--input-scale must be a positive number"),
    (["--threshold", "300"], "threshold must be an integer in 0..255"),
    (["--saturation", "1.5"], "--saturation must be a fraction"),
])
def test_bad_arguments_exit_2_with_one_line(tmp_path, clip, capsys, args, message):
    code, out = run_import(tmp_path, _model(*_base()), clip[:2], *args)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err
    assert not out.exists()


def test_bad_files_exit_2_with_one_line(tmp_path, clip, capsys):
    onnx.save(_model(*_base()), tmp_path / "m.onnx")
    np.save(tmp_path / "rgb.npy", np.zeros((2, 3, 48, 64), np.uint8))
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    for argv, message in [
            (["missing.onnx", "--calibrate", tmp_path / "rgb.npy"], "no such file"),
            ([tmp_path / "junk.onnx", "--calibrate", tmp_path / "rgb.npy"],
             "is not an ONNX model"),
            ([tmp_path / "m.onnx", "--calibrate", tmp_path / "none.npy"], "--calibrate: no such"),
            ([tmp_path / "m.onnx", "--calibrate", tmp_path / "rgb.npy"],
             "the model's input 'input' takes C = 1")]:
        code = main(["import", *map(str, argv), "-o", str(tmp_path / "n.json")])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "n.json").exists()


def test_import_budget_on_four_layers_and_twenty_frames(clip):
    """The issue's budget: under 10 s for a 4-layer model and 20 calibration frames (here,
    the work of the command past reading its files)."""
    _, report = convert(pnet_float_model(), clip[:CALIBRATION, None], input_scale=INPUT_SCALE)
    assert len(report["layers"]) == 4 and report["seconds"] < 10
    assert math.isclose(report["output"]["correlation"], report["layers"][-1]["correlation"])


def test_imported_network_runs_on_the_rtl_exactly(tmp_path, clip):
    """PNet's first two layers (real trained weights) imported on a 12 x 12 crop of the clip
    run through the simulated gateware exactly as through the bit-exact model: every layer's
    counts and the output map."""
    from pathlib import Path

    from eventconv.backends.rtl import run as run_rtl
    from eventconv.importer.pnet import _layers, chain_model
    crop = np.ascontiguousarray(clip[:CALIBRATION, 18:30, 26:38])
    code, out = run_import(tmp_path, chain_model(_layers()[:2], height=12, width=12), crop,
                           "--input-scale", "1/128", "--threshold", "6")
    assert code == 0
    obj = json.loads(out.read_text())
    for layer, lanes in zip(obj["layers"], (5, 4), strict=True):
        layer["lanes"] = lanes      # a hardware knob: the same results in fewer cycles
    network = Network.from_dict(obj)
    build = Path(__file__).resolve().parent.parent / "build" / "sim"
    rtl = run_rtl(network, crop[:3], build_root=build, stall=0.2, seed=1)
    model = run_model(network, crop[:3])
    for key in model:
        np.testing.assert_array_equal(rtl[key], model[key], err_msg=key)
    assert model["events_out"][1:, -1].sum() > 0
