"""The memories weights are uploaded into (eventconv.protocol.upload): their numbering and
contents follow the accumulator unit's weight order; the accumulator width and the shape
digest of a board built for uploads."""

import numpy as np

from eventconv.core.config import Config
from eventconv.core.network import Network
from eventconv.hw.layer.accumulator import AccumulatorUnit
from eventconv.protocol.upload import (
    UPLOAD_MIN_WIDTH,
    shape_digest,
    upload_images,
    upload_memories,
    upload_width,
)


def layer(cout=4, cin=2, lanes=2, seed=0, **changes):
    rng = np.random.default_rng(seed)
    k = changes.pop("kernel_size", 3)
    return Config.from_dict({
        "height": 8, "width": 8, "channels_in": cin, "channels_out": cout, "kernel_size": k,
        "weights": rng.integers(-128, 128, (cout, cin, k, k)).tolist(),
        "bias": rng.integers(-5000, 5000, cout).tolist(), "lanes": lanes, **changes})


def test_images_are_the_units_weight_memories_and_the_bias_bytes():
    config = layer()
    unit = AccumulatorUnit.from_config(config, upload_base=0)
    memories, images = upload_memories(config), upload_images(config)
    assert [(m.layer, m.lane, m.size) for m in memories] == [(0, 0, 36), (0, 1, 36),
                                                               (0, None, 16)]
    for lane in range(config.lanes):
        rom = unit._weight_rom(lane)
        assert list(np.frombuffer(images[lane], np.int8)) == list(rom.init)
    assert list(np.frombuffer(images[-1], "<i4")) == config.bias.tolist()


def test_upload_width_is_the_layers_own_and_at_least_one_dp16kd_word():
    small = layer(weights=np.ones((4, 2, 3, 3), int).tolist(), bias=[0] * 4)
    assert small.accumulator_width < UPLOAD_MIN_WIDTH == upload_width(small)
    wide = layer(weights=np.full((4, 2, 3, 3), 127).tolist())
    assert upload_width(wide) == wide.accumulator_width > UPLOAD_MIN_WIDTH


def test_shape_digest_ignores_weights_bias_and_knobs_but_not_the_shape():
    config = layer()
    weights = np.array(config.weights)
    shuffled = np.array([np.random.default_rng(o).permutation(w.reshape(-1))
                         for o, w in enumerate(weights)]).reshape(weights.shape)
    same = config.replace(weights=shuffled.tolist(), threshold=30, shift=4,
                          output_threshold=2)
    assert shape_digest(config) == shape_digest(same)
    for changes in ({"lanes": 1}, {"pool": 1}, {"height": 10}):
        assert shape_digest(config) != shape_digest(config.replace(**changes))
    net = Network.of(config)
    assert shape_digest(net) == shape_digest(config)
