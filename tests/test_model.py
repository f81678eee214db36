"""The golden model against references we did not write (scipy, plain numpy), and its
invariants as properties (hypothesis)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage, signal

from eventconv.core.clip import load_clip
from eventconv.core.config import Config
from eventconv.core.model import EventConvModel, correlate_same, fanout_updates, run_model


def random_config(rng, *, k=None, cin=None, cout=None, h=None, w=None, mode=None, **extra):
    k = k or int(rng.choice([1, 3, 5, 7]))
    cin = cin or int(rng.integers(1, 4))
    cout = cout or int(rng.integers(1, 9))
    h = h or int(rng.integers(max(k, 2) // 2 + (k > 2), 9)) * 2
    w = w or int(rng.integers(max(k, 2) // 2 + (k > 2), 9)) * 2
    return Config.from_dict({
        "height": h, "width": w, "channels_in": cin, "channels_out": cout, "kernel_size": k,
        "weights": rng.integers(-128, 128, (cout, cin, k, k)).tolist(),
        "bias": rng.integers(-20000, 20000, cout).tolist(),
        "threshold": int(rng.integers(0, 256)) if extra.get("threshold") is None
        else extra["threshold"],
        "shift": int(rng.integers(0, 14)), "mode": mode or str(rng.choice(["event", "dense"])),
        **{k: v for k, v in extra.items() if k != "threshold"}})


def video(rng, config, frames=6, change=0.1):
    """Random frames where only a fraction of pixels change from one frame to the next."""
    shape = (config.channels_in, config.height, config.width)
    out = [rng.integers(0, 256, shape)]
    for _ in range(frames - 1):
        step = np.where(rng.random(shape) < change, rng.integers(-80, 81, shape), 0)
        out.append(np.clip(out[-1] + step, 0, 255))
    return np.array(out, dtype=np.uint8)


def reference_network(layers, frames):
    """Independent implementation of SPEC's network equations, frame by frame: scipy
    correlation of each layer's whole input map (never its events), strided-slice pooling,
    explicit state. ``layers``: Configs chained as a network (one for a single layer).
    Returns the maps and the counts (T, L) of events_in, events_out, macs."""
    first = layers[0]
    r = np.zeros(frames.shape[1:], np.int64)

    def acc_of(config, image):
        acc = np.zeros((config.channels_out, config.height, config.width), np.int64)
        acc += config.bias[:, None, None]
        for o in range(config.channels_out):
            for c in range(config.channels_in):
                acc[o] += signal.correlate2d(image[c], config.weights[o, c], mode="same",
                                             boundary="fill", fillvalue=0)
        return acc

    def pooled_of(config, acc):
        a = np.clip(np.maximum(acc, 0) >> config.shift, 0, 255)
        if config.pool == 1:
            return a
        return np.maximum.reduce([a[:, 0::2, 0::2], a[:, 0::2, 1::2],
                                  a[:, 1::2, 0::2], a[:, 1::2, 1::2]])

    def taps(config):
        ones = np.ones((config.height, config.width), np.int64)
        return ndimage.correlate(ones, np.ones((config.kernel_size,) * 2, np.int64),
                                 mode="constant", cval=0)

    emitted, image = [], r
    for config in layers:                      # the reset state: an all-zero input
        emitted.append(pooled_of(config, acc_of(config, image)))
        image = emitted[-1]
    dense = first.mode == "dense"
    out = {"maps": [], "events_in": [], "events_out": [], "macs": []}
    for x in frames.astype(np.int64):
        fire = np.ones(x.shape, bool) if dense else np.abs(x - r) > first.threshold
        r[fire] = x[fire]
        image, counts = r, []
        for i, config in enumerate(layers):
            macs = (taps(config)[None] * fire).sum() * config.channels_out
            events_in = fire.sum()
            pooled = pooled_of(config, acc_of(config, image))
            fire = (np.ones(pooled.shape, bool) if dense
                    else np.abs(pooled - emitted[i]) > config.output_threshold)
            emitted[i] = np.where(fire, pooled, emitted[i])
            counts.append((events_in, fire.sum(), macs))
            image = emitted[i]
        out["maps"].append(image)
        for k, name in enumerate(("events_in", "events_out", "macs")):
            out[name].append([c[k] for c in counts])
    return {k: np.array(v) for k, v in out.items()}


def reference_layer(config, frames):
    """:func:`reference_network` of one layer, as OUT.npz's one-layer arrays."""
    out = reference_network([config], frames)
    return {"pooled": out["maps"], **{k: out[k][:, 0] for k in
                                      ("events_in", "events_out", "macs")}}


def assert_same(result, reference):
    for key in ("pooled", "events_in", "events_out", "macs"):
        np.testing.assert_array_equal(result[key], reference[key], err_msg=key)


@pytest.mark.parametrize("seed", range(24))
def test_model_matches_scipy_reference_on_random_configs(seed):
    rng = np.random.default_rng(seed)
    config = random_config(rng)
    frames = video(rng, config)
    if config.channels_in == 1:
        frames = frames[:, 0]
    assert_same(run_model(config, frames), reference_layer(config, frames.reshape(
        len(frames), config.channels_in, config.height, config.width)))


@pytest.mark.parametrize("threshold", [0, 8, 40, 255])
@pytest.mark.parametrize("mode", ["event", "dense"])
def test_model_matches_reference_on_real_clip(threshold, mode):
    rng = np.random.default_rng(threshold)
    clip = load_clip("vtest_32x32")[:20]
    config = random_config(rng, k=3, cin=1, cout=4, h=32, w=32, mode=mode, threshold=threshold)
    assert_same(run_model(config, clip), reference_layer(config, clip[:, None]))


def test_output_types_match_spec():
    rng = np.random.default_rng(5)
    config = random_config(rng, cin=2)
    result = run_model(config, video(rng, config, frames=3))
    assert result["pooled"].dtype == np.uint8
    assert result["pooled"].shape == (3, config.channels_out, config.height // 2,
                                      config.width // 2)
    for key in ("events_in", "events_out", "macs"):
        assert result[key].dtype == np.int64 and result[key].shape == (3,)


configs = st.builds(
    lambda seed, k, cin, cout, hh, ww, t, s: random_config(
        np.random.default_rng(seed), k=k, cin=cin, cout=cout, h=max(hh * 2, k + k % 2),
        w=max(ww * 2, k + k % 2), threshold=t, mode="event"),
    st.integers(0, 2**32), st.sampled_from([1, 3, 5, 7]), st.integers(1, 3), st.integers(1, 4),
    st.integers(1, 6), st.integers(1, 6), st.integers(0, 255), st.integers(0, 31))


@settings(max_examples=40, deadline=None)
@given(config=configs, seed=st.integers(0, 2**32))
def test_invariants_hold_after_every_frame(config, seed):
    rng = np.random.default_rng(seed)
    frames = video(rng, config, frames=4, change=0.3)
    model = EventConvModel(config)
    dense = EventConvModel(config.replace(mode="dense"))
    zero_threshold = EventConvModel(config.replace(threshold=0))
    for frame in frames:
        r = model.step(frame)
        # acc is exactly the correlation of the reference frame, plus bias.
        np.testing.assert_array_equal(
            model.acc, correlate_same(model.reference, config.weights)
            + config.bias[:, None, None])
        # The reference never drifts more than the threshold from the input.
        assert np.abs(model.reference.astype(int) - frame).max() <= config.threshold
        # macs == in-frame taps of the events, times Cout.
        taps = sum(len(fanout_updates(config, c, y, x)) for c, y, x, _ in
                   r.input_events.tuples())
        assert r.macs == taps
        # Dense mode is the plain dense layer on the raw frame.
        d = dense.step(frame)
        np.testing.assert_array_equal(
            dense.acc, correlate_same(frame, config.weights) + config.bias[:, None, None])
        assert d.events_in == frame.size
        # Threshold 0 in event mode gives the dense pooled maps with less or equal work.
        z = zero_threshold.step(frame)
        np.testing.assert_array_equal(z.pooled, d.pooled)
        assert z.macs <= d.macs
        # Output events integrate to the pooled map.
        assert r.events_out == len(r.output_events)


def test_output_events_integrate_to_pooled_maps():
    rng = np.random.default_rng(11)
    config = random_config(rng, k=3, mode="event", threshold=10)
    model = EventConvModel(config)
    integrated = model.pooled.astype(np.int64)
    for frame in video(rng, config, frames=8):
        r = model.step(frame)
        for o, py, px, d in r.output_events.tuples():
            assert d != 0
            integrated[o, py, px] += d
        np.testing.assert_array_equal(integrated, r.pooled)


def test_event_mode_saves_work_on_real_clip():
    """The point of the product: on real video, event mode does a fraction of dense work."""
    clip = load_clip("vtest_64x48")[:15]
    rng = np.random.default_rng(0)
    config = random_config(rng, k=3, cin=1, cout=8, h=48, w=64, mode="event", threshold=8)
    ev = run_model(config, clip)
    de = run_model(config.replace(mode="dense"), clip)
    # Dense: every pixel, every in-frame tap: rows see 3 taps but 2 at the top and bottom.
    assert (de["macs"] == (48 * 3 - 2) * (64 * 3 - 2) * 8).all()
    assert ev["macs"][1:].sum() < 0.1 * de["macs"][1:].sum()
