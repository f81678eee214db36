"""Fuzzing with Hypothesis: the SLIP/CRC decoder never crashes and never accepts a damaged
packet; the command line refuses every bad configuration and every bad frames file with exit
code 2, one line on stderr and nothing written.

The examples are derandomized (one fixed sequence per test, the same in CI as here); ``make
soak`` runs many more (``EVENTCONV_SOAK=1``).
"""

import contextlib
import io
import json
import os
import string
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from eventconv.cli import main
from eventconv.core.config import Config
from eventconv.protocol.codec import LinkError, encode_packet, event_fields, parse_reply
from eventconv.protocol.constants import (
    END,
    ESC,
    INFO_BYTES,
    MAX_REPLY_BYTES,
    STATUS_BYTES,
    Command,
    Reply,
    end_of_frame_bytes,
)
from eventconv.protocol.crc import crc16
from eventconv.protocol.slip import SlipDecoder, slip_escape

SOAK = bool(os.environ.get("EVENTCONV_SOAK"))
FUZZ = settings(derandomize=True, deadline=None, max_examples=3000 if SOAK else 150,
                suppress_health_check=[HealthCheck.too_slow])
CLI_FUZZ = settings(derandomize=True, deadline=None, max_examples=1000 if SOAK else 60,
                    suppress_health_check=[HealthCheck.too_slow])


def layer_dict(cout=3, **changes):
    rng = np.random.default_rng(0)
    return {"height": 8, "width": 8, "channels_in": 1, "channels_out": cout,
            "kernel_size": 3, "weights": rng.integers(-128, 128, (cout, 1, 3, 3)).tolist(),
            "bias": rng.integers(-3000, 3000, cout).tolist(), "threshold": 12, "shift": 6,
            **changes}


CONFIG = Config.from_dict(layer_dict())
FIELDS = event_fields(CONFIG)
EVENT_BYTES = 1 + (max(o + w for _, o, w, _ in FIELDS) + 7) // 8


# -- the SLIP/CRC decoder --------------------------------------------------------------------
def board_packet(kind, fields):
    """A packet as the board sends it: the body escaped, its CRC, END (no END before)."""
    body = bytes((kind,)) + bytes(fields)
    return slip_escape(body + crc16(body).to_bytes(2, "big")) + bytes((END,))


@st.composite
def board_packets(draw):
    kind = draw(st.sampled_from(list(Reply)))
    size = {Reply.ACK: STATUS_BYTES, Reply.ERROR: STATUS_BYTES, Reply.SYNC: STATUS_BYTES,
            Reply.INFO: INFO_BYTES, Reply.END_OF_FRAME: end_of_frame_bytes(1),
            Reply.EVENT: EVENT_BYTES}[kind]
    # Bytes that need escaping come often: they are where framing bugs hide.
    byte = st.one_of(st.integers(0, 255), st.sampled_from([END, ESC, 0xDC, 0xDD]))
    fields = bytes(draw(st.lists(byte, min_size=size - 1, max_size=size - 1)))
    if kind == Reply.EVENT:
        # Only events this layer can give (the driver refuses others as damaged).
        word = int.from_bytes(fields, "little")
        for name, offset, width, _ in FIELDS:
            limit = {"channel": CONFIG.channels_out, "y": CONFIG.height // 2,
                     "x": CONFIG.width // 2}.get(name)
            if limit is not None:
                value = (word >> offset) & ((1 << width) - 1)
                word += ((value % limit) - value) << offset
        fields = word.to_bytes(EVENT_BYTES - 1, "little")
    return board_packet(kind, fields)


def decode(stream, pieces=()):
    """Every good packet in ``stream`` (fed in pieces cut at ``pieces``), as the driver
    decodes it, and the count of refused ones."""
    decoder = SlipDecoder(limit=MAX_REPLY_BYTES)
    good, refused = [], 0
    cuts = sorted({min(max(p, 0), len(stream)) for p in pieces})
    for start, stop in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        for body, damaged in decoder.feed(stream[start:stop]):
            assert len(body) <= MAX_REPLY_BYTES
            if damaged:
                refused += 1
                continue
            try:
                good.append(parse_reply(body, FIELDS))
            except LinkError:
                refused += 1
    assert len(decoder.body) <= MAX_REPLY_BYTES
    return good, refused


@FUZZ
@given(st.binary(max_size=600), st.lists(st.integers(0, 600), max_size=8))
def test_decoder_never_crashes_on_any_bytes(data, pieces):
    """Any bytes, fed in any pieces: the decoder raises nothing (parse_reply only LinkError,
    caught in decode) and holds at most MAX_REPLY_BYTES."""
    decode(data, pieces)


@FUZZ
@given(st.lists(board_packets(), min_size=1, max_size=6),
       st.lists(st.integers(0, 300), max_size=6))
def test_good_packets_come_through_whole(packets, pieces):
    good, refused = decode(b"".join(packets), pieces)
    assert refused == 0
    assert good == [decode(p)[0][0] for p in packets]


@settings(FUZZ, max_examples=1000 if SOAK else 50)
@given(board_packets(), board_packets(), board_packets())
def test_any_single_bit_flip_or_lost_byte_is_refused(before, packet, after):
    """Every single-bit flip and every single lost byte of a packet between two others
    (all tried): nothing but the two others is ever accepted, and each at most once. (CRC-16
    catches a flipped bit in the body, a lost byte changes the length that every type has;
    a flipped or lost END merges the packet with its neighbour, refused by its length.)"""
    genuine = [decode(before)[0][0], decode(after)[0][0]]
    start = len(before)
    damaged_streams = []
    for i in range(len(packet)):
        for bit in range(8):
            wrong = bytearray(packet)
            wrong[i] ^= 1 << bit
            damaged_streams.append(bytes(wrong))
        damaged_streams.append(packet[:i] + packet[i + 1:])
    for wrong in damaged_streams:
        good, _ = decode(before + wrong + after)
        assert (decode(packet)[0][0] not in good or decode(packet)[0][0] in genuine)
        remaining = list(genuine)
        for item in good:
            assert item in remaining, (start, wrong.hex(), item)
            remaining.remove(item)


@FUZZ
@given(st.sampled_from(list(Command)),
       st.binary(max_size=40), st.data())
def test_host_packets_single_bit_flips_fail_the_crc(kind, fields, data):
    """What the board checks: every single-bit flip in a host packet's body or CRC leaves a
    CRC that is not 0 (CRC-16/CCITT detects every burst of up to 16 bits)."""
    wire = encode_packet(kind, fields)
    body = SlipDecoder().feed(wire)[0][0]
    assert crc16(body) == 0
    index = data.draw(st.integers(0, len(body) - 1))
    for bit in range(8):
        wrong = bytearray(body)
        wrong[index] ^= 1 << bit
        assert crc16(bytes(wrong)) != 0


@FUZZ
@given(st.binary(min_size=1, max_size=40))
def test_parse_reply_with_a_good_crc_refuses_or_parses(body):
    """A body whose CRC is right but whose type or length may be anything: a value or a
    LinkError, nothing else."""
    body = body + crc16(body).to_bytes(2, "big")
    try:
        kind, _ = parse_reply(body, FIELDS)
    except LinkError:
        return
    assert kind in set(Reply)


def test_decoder_holds_at_most_its_limit_on_an_endless_packet():
    decoder = SlipDecoder(limit=MAX_REPLY_BYTES)
    for _ in range(1000):
        assert decoder.feed(b"login: " * 100) == []
    assert len(decoder.body) == MAX_REPLY_BYTES and decoder.dropped > 600_000
    (body, damaged), = decoder.feed(bytes((END,)))
    assert damaged and len(body) == MAX_REPLY_BYTES


# -- the command line: bad configs and frames --------------------------------------------
def run_cli(config_bytes, frames_bytes=None, backend="model"):
    """``eventconv run`` in a fresh folder; returns (exit code, stderr, files written)."""
    with tempfile.TemporaryDirectory(prefix="eventconv-fuzz-") as folder:
        folder = Path(folder)
        (folder / "cfg.json").write_bytes(config_bytes)
        if frames_bytes is None:
            buffer = io.BytesIO()
            np.save(buffer, np.zeros((2, 8, 8), np.uint8))
            frames_bytes = buffer.getvalue()
        (folder / "frames.npy").write_bytes(frames_bytes)
        before = set(folder.iterdir())
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(["run", "--config", str(folder / "cfg.json"), "--frames",
                         str(folder / "frames.npy"), "--backend", backend, "--out",
                         str(folder / "out.npz")])
        written = sorted(p.name for p in set(folder.iterdir()) - before)
    return code, err.getvalue(), written


def assert_refused(code, err, written):
    assert code == 2, (code, err)
    assert err.count("\n") == 1 and err.startswith("eventconv: error: "), err
    assert written == [], written


def test_the_base_config_and_frames_are_good():
    code, err, written = run_cli(json.dumps(layer_dict()).encode())
    assert code == 0 and written == ["out.npz"], err


INT_FIELDS = {"height": (2, 4096), "width": (2, 4096), "channels_in": (1, 1024),
              "channels_out": (1, 1024), "threshold": (0, 255), "shift": (0, 31),
              "output_threshold": (0, 255)}
json_scalars = st.one_of(st.none(), st.booleans(), st.text(max_size=8),
                         st.floats(allow_nan=False, allow_infinity=False).filter(
                             lambda f: f != int(f)))
json_values = st.recursive(json_scalars, lambda children: st.one_of(
    st.lists(children, max_size=3), st.dictionaries(st.text(max_size=5), children,
                                                    max_size=3)), max_leaves=6)
ALLOWED = ("height", "width", "channels_in", "channels_out", "kernel_size", "weights", "bias",
           "threshold", "shift", "mode", "pool", "output_threshold", "pixels_per_cycle",
           "lanes", "events", "layers")


@st.composite
def bad_layers(draw):
    """A one-layer config with one thing wrong (by construction)."""
    config = layer_dict()
    how = draw(st.sampled_from(["type", "range", "unknown", "missing", "weights", "bias",
                                "choice"]))
    if how == "type":
        field = draw(st.sampled_from(sorted(INT_FIELDS) + ["kernel_size", "pool", "lanes",
                                                           "pixels_per_cycle", "mode"]))
        config[field] = draw(json_values.filter(lambda v: v not in ("event", "dense")))
    elif how == "range":
        field = draw(st.sampled_from(sorted(INT_FIELDS)))
        lo, hi = INT_FIELDS[field]
        config[field] = draw(st.one_of(st.integers(max_value=lo - 1),
                                       st.integers(min_value=hi + 1)))
    elif how == "unknown":
        key = draw(st.text(string.ascii_letters + "_", min_size=1, max_size=12))
        assume(key not in ALLOWED)
        config[key] = draw(st.one_of(json_values, st.integers()))
    elif how == "missing":
        del config[draw(st.sampled_from(["height", "width", "channels_in", "channels_out",
                                         "kernel_size", "weights"]))]
    elif how == "weights":
        config["weights"] = draw(bad_weights((3, 1, 3, 3)))
    elif how == "bias":
        config["bias"] = draw(bad_bias(3))
    else:
        field, value = draw(bad_choices)
        config[field] = draw(value)
    return config


def bad_weights(shape):
    """Nested lists of another shape, or of the right shape with a value out of -128..127."""
    def build(draw_shape):
        if draw_shape == list(shape):
            return st.integers(128, 2**70) | st.integers(-2**70, -129) | json_scalars
        return st.just(None)

    @st.composite
    def weights(draw):
        wrong = draw(st.lists(st.integers(0, 4), max_size=5))
        if wrong == list(shape):
            value = draw(build(wrong))
            return np.full(shape, value, dtype=object).tolist()
        return np.zeros(wrong, int).tolist()
    return weights()


def bad_bias(count):
    """Not ``count`` integers in the int32 range (null is the default: no bias)."""
    return st.one_of(
        st.lists(st.integers(-2**31, 2**31 - 1), max_size=5).filter(lambda b: len(b) != count),
        st.lists(st.integers(min_value=2**31), min_size=count, max_size=count),
        st.lists(json_scalars, min_size=count, max_size=count),
        json_scalars.filter(lambda v: v is not None))


bad_choices = st.sampled_from([
    ("kernel_size", st.sampled_from([0, 2, 4, 9, -3])),
    ("pool", st.sampled_from([0, 3, 4])),
    ("mode", st.text(max_size=6).filter(lambda m: m not in ("event", "dense"))),
    ("pixels_per_cycle", st.sampled_from([0, 3, 16])),
    ("lanes", st.sampled_from([0, 2, 4]))])


@st.composite
def bad_networks(draw):
    """A network config with one bad part: its layers, a layer, a network field, or two
    layers that do not chain."""
    good_layer = {k: v for k, v in layer_dict().items()
                  if k not in ("height", "width", "channels_in", "threshold")}
    network = {"height": 8, "width": 8, "channels_in": 1, "threshold": 3,
               "layers": [good_layer, dict(good_layer, weights=np.zeros((3, 3, 3, 3), int)
                                           .tolist())]}
    how = draw(st.sampled_from(["layers", "layer", "field", "chain"]))
    if how == "layers":
        network["layers"] = draw(st.one_of(st.just([]), json_scalars, st.just([good_layer] * 17),
                                           st.lists(json_scalars, min_size=1, max_size=3)))
    elif how == "layer":
        bad = dict(good_layer)
        what = draw(st.sampled_from(["type", "range", "unknown", "missing", "derived",
                                     "weights", "bias"]))
        if what == "type":
            bad[draw(st.sampled_from(["channels_out", "kernel_size", "shift", "pool",
                                      "output_threshold", "lanes"]))] = draw(json_values)
        elif what == "range":
            bad[draw(st.sampled_from(["shift", "output_threshold"]))] = draw(
                st.integers(max_value=-1) | st.integers(min_value=256))
        elif what == "unknown":
            key = draw(st.text(string.ascii_letters + "_", min_size=1, max_size=12))
            assume(key not in ALLOWED or key in ("threshold", "mode", "events", "layers"))
            bad[key] = draw(st.integers() | json_values)
        elif what == "missing":
            del bad[draw(st.sampled_from(["channels_out", "kernel_size", "weights"]))]
        elif what == "derived":
            bad[draw(st.sampled_from(["height", "width", "channels_in"]))] = draw(
                st.integers(9, 100) | st.text(max_size=4) | st.none())
        elif what == "weights":
            bad["weights"] = draw(bad_weights((3, 1, 3, 3)))
        else:
            bad["bias"] = draw(bad_bias(3))
        network["layers"][0] = bad
    elif how == "field":
        network[draw(st.sampled_from(["height", "width", "channels_in", "threshold"]))] = \
            draw(st.one_of(json_scalars, st.integers(max_value=-1)))
    else:
        # The second layer's weights must take the first's channels_out (3): give it 2.
        network["layers"][1] = dict(good_layer, weights=np.zeros((3, 2, 3, 3), int).tolist())
    return network


@CLI_FUZZ
@given(bad_layers())
def test_cli_refuses_every_bad_layer_config(config):
    assert_refused(*run_cli(json.dumps(config).encode()))


@CLI_FUZZ
@given(bad_networks())
def test_cli_refuses_every_bad_network_config(network):
    assert_refused(*run_cli(json.dumps(network).encode()))


@CLI_FUZZ
@given(st.one_of(json_values, st.integers()).filter(lambda v: not isinstance(v, dict)))
def test_cli_refuses_a_config_that_is_not_an_object(value):
    assert_refused(*run_cli(json.dumps(value).encode()))


@CLI_FUZZ
@given(st.text(max_size=200))
def test_cli_refuses_a_config_that_is_not_json(text):
    try:
        json.loads(text)
        assume(False)
    except ValueError:
        pass
    assert_refused(*run_cli(text.encode()))


def npy_bytes(array):
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


@st.composite
def bad_frames(draw):
    how = draw(st.sampled_from(["dtype", "shape", "empty", "objects", "bytes"]))
    if how == "dtype":
        dtype = draw(st.sampled_from([np.int8, np.int16, np.uint16, np.int32, np.int64,
                                      np.float16, np.float32, np.float64, np.bool_,
                                      np.complex64]))
        return npy_bytes(np.zeros((2, 8, 8), dtype))
    if how == "shape":
        shape = tuple(draw(st.lists(st.integers(0, 9), max_size=5)))
        assume(len(shape) != 3 or shape[1:] != (8, 8))
        return npy_bytes(np.zeros(shape, np.uint8))
    if how == "empty":
        return npy_bytes(np.zeros((0, 8, 8), np.uint8))
    if how == "objects":
        return npy_bytes(np.array([[1, 2], "x"], dtype=object))
    data = draw(st.binary(min_size=1, max_size=300))
    assume(not data.startswith(b"\x93NUMPY"))
    return data


@CLI_FUZZ
@given(bad_frames())
def test_cli_refuses_every_bad_frames_file(frames):
    assert_refused(*run_cli(json.dumps(layer_dict()).encode(), frames))


def test_cli_refuses_an_empty_frames_file():
    assert_refused(*run_cli(json.dumps(layer_dict()).encode(), b""))


def test_cli_refuses_a_deeply_nested_config():
    assert_refused(*run_cli(b"[" * 100_000 + b"]" * 100_000))


def test_cli_refuses_a_config_that_is_not_utf8():
    assert_refused(*run_cli(b'{"height": "\\xff\xff"}'))
