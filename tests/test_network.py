"""Networks (SPEC "A network"): the configuration's checks, and the golden model against an
independent implementation of the network equations (tests/test_model.py's reference)."""

import json

import numpy as np
import pytest
from test_model import reference_network, video

from eventconv.core.clip import load_clip
from eventconv.core.config import Config
from eventconv.core.model import run_model
from eventconv.core.network import Network
from eventconv.core.ranges import ConfigError


def random_layer(rng, cin, pool=None, k=None):
    k = k or int(rng.choice([1, 3, 5]))
    cout = int(rng.integers(1, 5))
    return {"channels_out": cout, "kernel_size": k,
            "weights": rng.integers(-128, 128, (cout, cin, k, k)).tolist(),
            "bias": rng.integers(-3000, 9000, cout).tolist(), "shift": int(rng.integers(4, 10)),
            "pool": pool or int(rng.choice([1, 2])),
            "output_threshold": int(rng.choice([0, 0, 2, 9]))}


def random_network(rng, layers=3, h=16, w=12, cin=1, mode="event", threshold=6):
    """A valid network: pooling by 2 only where the size is even, kernels that fit."""
    out, channels, size = [], cin, (h, w)
    for i in range(layers):
        even = size[0] % 2 == 0 and size[1] % 2 == 0 and min(size) >= 4
        pool = 2 if i == 0 else (int(rng.choice([1, 2])) if even else 1)
        k = 3 if i < 2 else int(rng.choice([k for k in (1, 3, 5) if k <= min(size)]))
        layer = random_layer(rng, channels, pool=pool, k=k)
        out.append(layer)
        channels, size = layer["channels_out"], (size[0] // pool, size[1] // pool)
    return {"height": h, "width": w, "channels_in": cin, "threshold": threshold, "mode": mode,
            "layers": out}


@pytest.mark.parametrize("mode", ["event", "dense"])
@pytest.mark.parametrize("seed", range(8))
def test_network_model_equals_reference(seed, mode):
    rng = np.random.default_rng(seed)
    network = Network.from_dict(random_network(rng, layers=int(rng.integers(2, 5)), mode=mode))
    frames = video(rng, network.first, frames=5, change=0.15)[:, 0]
    got = run_model(network, frames)
    want = reference_network(list(network.layers), frames[:, None])
    np.testing.assert_array_equal(got["output"], want["maps"])
    for key in ("events_in", "events_out", "macs"):
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    assert got["output"].dtype == np.uint8 and got["macs"].shape == (5, len(network.layers))


def test_network_on_the_real_clip_saves_work_in_every_layer():
    clip = load_clip("vtest_64x48")[:8]
    rng = np.random.default_rng(3)
    network = Network.from_dict(random_network(rng, layers=3, h=48, w=64, threshold=8))
    event = run_model(network, clip)
    dense = run_model(Network.from_dict({**network.to_dict(), "mode": "dense"}), clip)
    want = reference_network(list(network.layers), clip[:, None])
    np.testing.assert_array_equal(event["output"], want["maps"])
    np.testing.assert_array_equal(event["macs"], want["macs"])
    # Dense mode: every layer emits every position of its map, every frame.
    sizes = [int(np.prod(layer.output_shape)) for layer in network.layers]
    assert (dense["events_out"] == sizes).all()
    assert (event["macs"][1:].sum(axis=0) < dense["macs"][1:].sum(axis=0)).all()


def test_one_layer_form_is_a_network_of_one_layer():
    rng = np.random.default_rng(1)
    obj = random_network(rng, layers=1)
    single = {"height": 16, "width": 12, "channels_in": 1, "threshold": 6, **obj["layers"][0]}
    network, one = Network.from_dict(obj), Network.from_dict(single)
    assert one.single and not network.single
    frames = video(rng, one.first, frames=4)[:, 0]
    a, b = run_model(network, frames), run_model(one, frames)
    np.testing.assert_array_equal(a["output"], b["pooled"])
    assert b["macs"].shape == (4,) and a["macs"].shape == (4, 1)
    assert Network.from_dict(network.to_dict()).to_dict() == network.to_dict()
    assert Network.from_dict(json.loads(json.dumps(one.to_dict()))).single


@pytest.mark.parametrize("pool, output_threshold", [(1, 0), (1, 5), (2, 3)])
def test_one_layer_pool_and_output_threshold_equal_reference(pool, output_threshold):
    rng = np.random.default_rng(pool * 10 + output_threshold)
    config = Config.from_dict({"height": 10, "width": 8, "channels_in": 2, "threshold": 4,
                               **random_layer(rng, 2, pool=pool, k=3),
                               "output_threshold": output_threshold})
    frames = video(rng, config, frames=6)
    got = run_model(config, frames)
    want = reference_network([config], frames)
    np.testing.assert_array_equal(got["pooled"], want["maps"])
    np.testing.assert_array_equal(got["events_out"], want["events_out"][:, 0])


def network_with(**layer1_changes):
    rng = np.random.default_rng(0)
    obj = random_network(rng, layers=2, h=8, w=8)
    obj["layers"][1].update(layer1_changes)
    return obj


@pytest.mark.parametrize("obj, message", [
    (network_with(weights=np.ones((2, 7, 3, 3), int).tolist()),
     r"^layers\[1\]\.weights must be nested lists shaped \[\d, \d, 3, 3\], not \[2, 7, 3, 3\] "
     r"\(channels_in = \d from layers\[0\]\)$"),
    (network_with(shift=40), r"^layers\[1\]\.shift must be an integer in 0\.\.31, not 40$"),
    (network_with(output_threshold=256),
     r"^layers\[1\]\.output_threshold must be an integer in 0\.\.255, not 256$"),
    (network_with(pool=3), r"^layers\[1\]\.pool must be one of 1, 2, not 3$"),
    (network_with(colour=1), r"^unknown field 'layers\[1\]\.colour'; allowed fields:"),
    (network_with(channels_in=9), r"^layers\[1\]\.channels_in must be \d \(from layers\[0\]\), "
                                  r"not 9$"),
    ({**network_with(pool=2, kernel_size=3), "height": 6},
     r"^layers\[1\]\.height must be even \(2 x 2 pooling\) and in 3\.\.4096, not 3 \(the size "
     r"3 x 4 from layers\[0\]"),
    ({**network_with(), "layers": []}, r"^layers must be a list of 1\.\.16 layer objects, not 0$"),
    ({**network_with(), "threshold": 300}, r"^threshold must be an integer in 0\.\.255, not 300$"),
    ({**network_with(), "shift": 1}, r"^unknown field 'shift'; allowed fields: height"),
    ({k: v for k, v in network_with().items() if k != "channels_in"},
     r"^missing field 'channels_in'$"),
])
def test_bad_networks_name_the_layer_field_and_range(obj, message):
    with pytest.raises(ConfigError, match=message):
        Network.from_dict(obj)
