"""The network engine: layers chained by their events, simulated from its exported Verilog,
equal to the golden model layer by layer, under stalls."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from eventconv.backends.rtl import run as run_rtl
from eventconv.cli import main
from eventconv.core.clip import load_clip
from eventconv.core.model import run_model
from eventconv.core.nets import load_net
from eventconv.core.network import Network
from eventconv.core.ranges import ConfigError
from eventconv.hw.target import ECP5

BUILD = Path(__file__).resolve().parent.parent / "build" / "sim"
BIN = Path(sys.executable).parent


def network(rng, shape, layers, *, threshold=6, mode="event", bias=(-2000, 3000)):
    """A random network: ``layers`` of (cout, k, shift, pool, output_threshold, lanes)."""
    cin, h, w = shape
    out = []
    for cout, k, shift, pool, output_threshold, lanes in layers:
        out.append({"channels_out": cout, "kernel_size": k,
                    "weights": rng.integers(-128, 128, (cout, cin, k, k)).tolist(),
                    "bias": rng.integers(*bias, cout).tolist(), "shift": shift,
                    "pool": pool, "output_threshold": output_threshold, "lanes": lanes})
        cin = cout
    return Network.from_dict({"height": h, "width": w, "channels_in": shape[0],
                              "threshold": threshold, "mode": mode, "layers": out})


def video(rng, shape, frames):
    """Frames that change in patches, as a camera's would."""
    out = [rng.integers(0, 256, shape)]
    for _ in range(frames - 1):
        step = np.where(rng.random(shape) < 0.2, rng.integers(-90, 91, shape), 0)
        out.append(np.clip(out[-1] + step, 0, 255))
    out = np.array(out, dtype=np.uint8)
    return out[:, 0] if shape[0] == 1 else out


def assert_equal_model(net, frames, **kwargs):
    rtl = run_rtl(net, frames, build_root=BUILD, **kwargs)
    model = run_model(net, frames)
    assert sorted(rtl) == sorted([*model, "cycles"])
    for key in model:
        np.testing.assert_array_equal(rtl[key], model[key], err_msg=key)
    return rtl, model


THREE_LAYERS = [(4, 3, 6, 2, 0, 2), (4, 3, 7, 1, 3, 4), (2, 1, 6, 2, 0, 1)]


@pytest.mark.parametrize("stalls, target", [((0.3, 0.4), None), ((0.0, 0.0), ECP5)])
def test_three_layers_equal_model_under_stalls(stalls, target):
    """Pool 2, pool 1 with an output threshold, a 1 x 1 kernel: every layer's counts and the
    last map equal the model's, frame by frame, with random idle input and backpressure."""
    rng = np.random.default_rng(7)
    net = network(rng, (1, 8, 8), THREE_LAYERS)
    kwargs = {"target": target} if target else {}
    rtl, model = assert_equal_model(net, video(rng, (1, 8, 8), 5), idle=stalls[0],
                                    stall=stalls[1], seed=5, **kwargs)
    assert model["events_in"][:, 1:].sum() > 0  # the later layers really see events
    assert (rtl["cycles"] > 0).all()


def test_reset_state_is_that_of_a_zero_input():
    """Zero frames change nothing: the priming after reset left every layer in the state an
    all-zero input gives (later layers' accumulators differ at the borders), so no layer emits
    and nothing is counted."""
    rng = np.random.default_rng(3)
    net = network(rng, (2, 8, 8), [(4, 3, 5, 1, 0, 4), (3, 3, 6, 2, 0, 3)], bias=(500, 3000))
    frames = np.zeros((3, 2, 8, 8), np.uint8)
    rtl, model = assert_equal_model(net, frames, stall=0.3, seed=2)
    assert rtl["events_out"].sum() == 0 and rtl["macs"].sum() == 0
    # The reset map is not trivial: the last layer's map is not uniform.
    assert len(np.unique(rtl["output"][0])) > 1


def test_dense_network_emits_every_position():
    rng = np.random.default_rng(5)
    net = network(rng, (1, 8, 8), [(2, 3, 6, 2, 0, 1), (2, 3, 6, 1, 0, 2)], mode="dense")
    rtl, model = assert_equal_model(net, video(rng, (1, 8, 8), 3), stall=0.2, seed=4)
    assert (rtl["events_out"] == [2 * 4 * 4, 2 * 4 * 4]).all()


def test_real_trained_pnet_on_real_clip():
    """facenet-pytorch's PNet (the bundled quantized net) on a crop of the real clip, on
    Verilator: every layer's counts and the output equal the model's."""
    pnet = load_net("pnet_64x48").to_dict()
    pnet.update(height=16, width=16)
    for layer, lanes in zip(pnet["layers"], (5, 4, 8, 2), strict=True):
        layer["lanes"] = lanes
    net = Network.from_dict(pnet)
    clip = load_clip("vtest_64x48")[:4, 16:32, 24:40].copy()
    rtl, model = assert_equal_model(net, clip, simulator="verilator")
    assert model["events_out"][1:, -1].sum() > 0


def test_cli_rtl_network_out_npz(tmp_path):
    rng = np.random.default_rng(9)
    net = network(rng, (1, 8, 8), [(2, 3, 6, 2, 0, 1), (2, 1, 6, 1, 0, 2)])
    (tmp_path / "net.json").write_text(json.dumps(net.to_dict()))
    frames = video(rng, (1, 8, 8), 3)
    np.save(tmp_path / "frames.npy", frames)
    proc = subprocess.run([str(BIN / "eventconv"), "run", "--config", tmp_path / "net.json",
                           "--frames", tmp_path / "frames.npy", "--backend", "rtl",
                           "--out", tmp_path / "out.npz", "--quiet"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    out = np.load(tmp_path / "out.npz")
    assert sorted(out.files) == ["cycles", "events_in", "events_out", "macs", "output"]
    assert out["output"].shape == (3, 2, 4, 4) and out["output"].dtype == np.uint8
    for key in ("events_in", "events_out", "macs"):
        assert out[key].shape == (3, 2) and out[key].dtype == np.int64
    assert out["cycles"].shape == (3,)
    model = run_model(net, frames)
    np.testing.assert_array_equal(out["output"], model["output"])


def test_export_network_port_table(tmp_path):
    rng = np.random.default_rng(1)
    net = network(rng, (1, 8, 8), THREE_LAYERS)
    (tmp_path / "net.json").write_text(json.dumps(net.to_dict()))
    assert main(["export", "--config", str(tmp_path / "net.json"),
                 "-o", str(tmp_path / "net.v")]) == 0
    doc = (tmp_path / "net.md").read_text()
    assert "| 2 | 4 x 4 x 4 | 2 x 2 x 2 | 1 | 2 |" in doc
    assert "| shift | in | 15 |" in doc and "layer i in bits [5(i+1)-1 : 5i]" in doc
    assert Network.from_json(tmp_path / "net.json").to_dict() == net.to_dict()
    assert main(["export", "--config", str(tmp_path / "net.json"),
                 "-o", str(tmp_path / "other.v")]) == 0
    assert Network.from_json(tmp_path / "other.json").to_dict() == net.to_dict()


def test_gateware_refuses_odd_sizes():
    from eventconv.hw.layer.engine import engine_network
    rng = np.random.default_rng(1)
    net = network(rng, (1, 12, 12), [(2, 3, 6, 2, 0, 1), (2, 3, 6, 1, 0, 1)])
    net = Network.from_dict({**net.to_dict(), "height": 10, "width": 10})
    with pytest.raises(ConfigError, match=r"layers\[1\]\.height must be even for the gateware "
                                          r"in this version, not 5"):
        engine_network(net)
