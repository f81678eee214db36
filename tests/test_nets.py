"""The bundled real trained network (PNet's first four layers) and its quantizer."""

import numpy as np

from eventconv.core.clip import load_clip
from eventconv.core.model import run_model
from eventconv.core.nets import load_net, quantize_pnet
from eventconv.core.network import Network

PNET_SHAPES = {"conv1": (10, 3, 3, 3), "conv2": (16, 10, 3, 3), "conv3": (32, 16, 3, 3),
               "conv4_1": (2, 32, 1, 1)}


def test_bundled_pnet_has_pnets_shapes_and_runs_sparse_on_the_clip():
    net = load_net("pnet_64x48")
    assert [(layer.channels_in, layer.channels_out, layer.kernel_size, layer.pool)
            for layer in net.layers] == [(1, 10, 3, 2), (10, 16, 3, 1), (16, 32, 3, 1),
                                         (32, 2, 1, 1)]
    assert net.output_shape == (2, 24, 32)
    clip = load_clip("vtest_64x48")[:6]
    event = run_model(net, clip)
    dense = run_model(Network.from_dict({**net.to_dict(), "mode": "dense"}), clip)
    # A real network on real video: every layer does a fraction of its dense work.
    assert (event["macs"][1:].sum(axis=0) < 0.2 * dense["macs"][1:].sum(axis=0)).all()
    assert event["output"].max() > 0        # the face channel is not dead


def test_quantizer_uses_int8_and_fits_the_outputs_in_uint8():
    rng = np.random.default_rng(4)
    state = {}
    for name, shape in PNET_SHAPES.items():
        state[f"{name}.weight"] = rng.normal(0, 0.5, shape)
        state[f"{name}.bias"] = rng.normal(0, 0.5, shape[0])
    frames = load_clip("vtest_64x48")[:4]
    obj = quantize_pnet(state, frames)
    net = Network.from_dict(obj)
    for layer in net.layers:
        assert np.abs(layer.weights).max() == 127      # the int8 range, used whole
    # The calibration: at most ~0.1 % of each layer's outputs clip at 255 (dense, exact maps).
    dense = Network.from_dict({**obj, "mode": "dense"})
    for depth in range(1, 5):
        prefix = Network.from_dict({**dense.to_dict(), "layers": dense.to_dict()["layers"][:depth]})
        out = run_model(prefix, frames)["output"]
        pooled = dense.layers[depth - 1].pool == 2
        assert (out == 255).mean() <= (0.004 if pooled else 0.0011)
