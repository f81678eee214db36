"""The board (UART, host link, engine) under cocotb, driven by the host driver's own protocol
code through the byte-level bridge: pooled maps equal the model's, and bad bytes on the link
are answered with error codes and recovered from without a reset."""

from pathlib import Path

import numpy as np
import pytest

from eventconv.backends.board import integrate
from eventconv.backends.board import run as run_board
from eventconv.core.clip import load_clip
from eventconv.core.config import Config
from eventconv.core.model import run_model
from eventconv.core.network import Network
from eventconv.host.link import BoardLink
from eventconv.hw.boards import default_config
from eventconv.hw.target import ECP5, GENERIC, ICE40
from eventconv.protocol.codec import LinkError, encode_packet, pixels_packet
from eventconv.protocol.constants import END, Command, ErrorCode, Reply
from eventconv.protocol.crc import crc16
from eventconv.protocol.slip import slip_escape
from eventconv.protocol.upload import shape_digest
from eventconv.sim.board_tb import BoardSimulation

BUILD = Path(__file__).resolve().parent.parent / "build" / "sim"
TIMEOUT = 300e-6          # simulated seconds of silence before the driver resynchronises
LINK_TIMEOUT_CYCLES = 3000


def layer(seed=3, **changes):
    rng = np.random.default_rng(seed)
    return Config.from_dict({
        "height": 8, "width": 8, "channels_in": 1, "channels_out": 3, "kernel_size": 3,
        "weights": rng.integers(-128, 128, (3, 1, 3, 3)).tolist(),
        "bias": rng.integers(-3000, 3000, 3).tolist(), "threshold": 12, "shift": 6,
        **changes})


def video(seed, count, config):
    rng = np.random.default_rng(seed)
    shape = (config.height, config.width)
    out = [rng.integers(0, 256, shape)]
    for _ in range(count - 1):
        step = np.where(rng.random(shape) < 0.2, rng.integers(-90, 91, shape), 0)
        out.append(np.clip(out[-1] + step, 0, 255))
    return np.array(out, dtype=np.uint8)


def assert_equals_model(config, frames, results):
    board = integrate(config, results)
    model = run_model(config, frames)
    for key in ("pooled", "events_in", "events_out", "macs"):
        np.testing.assert_array_equal(board[key], model[key], err_msg=key)


class FaultyTransport:
    """Passes bytes through, but damages chosen writes: the n-th write of PIXELS packets
    gets one byte flipped, or is cut short (the rest never sent)."""

    def __init__(self, transport, *, flip=(), cut=()):
        self.transport, self.flip, self.cut = transport, set(flip), set(cut)
        self.pixels_writes = 0

    def write(self, data):
        if len(data) > 2 and data[1] == Command.PIXELS:
            n = self.pixels_writes
            self.pixels_writes += 1
            if n in self.flip:
                data = bytearray(data)
                data[len(data) // 2] ^= 0x21
                data = bytes(data)
            if n in self.cut:
                data = data[:len(data) // 2]
        self.transport.write(data)

    def read(self, timeout):
        return self.transport.read(timeout)


def test_board_frames_equal_model_and_link_recovers_from_bad_bytes():
    config = layer()
    frames = video(1, 4, config)
    with BoardSimulation(config, chunk=32, timeout_cycles=LINK_TIMEOUT_CYCLES,
                         build_root=BUILD) as board:
        # 1. A clean run through the CLI's function: OUT.npz arrays equal the model's.
        out = run_board(config, frames, transport=board, timeout=TIMEOUT)
        model = run_model(config, frames)
        assert sorted(out) == ["events_in", "events_out", "macs", "pooled"]
        for key, value in out.items():
            np.testing.assert_array_equal(value, model[key], err_msg=key)
            assert value.dtype == model[key].dtype
        link = BoardLink(board, config, timeout=TIMEOUT)
        info = link.query_info()
        assert (info.height, info.width, info.channels_out, info.chunk) == (8, 8, 3, 32)
        assert_equals_model(config, frames, link.run(frames))   # again, after a CONFIG
        assert link.errors == []

        # 2. Bad bytes, each answered with its error code; no reset in between.
        def answer_to(data):
            board.write(data)
            while True:
                packet = link.receive()
                assert packet is not None, "no answer"
                if packet[0] == Reply.ERROR:
                    return ErrorCode(packet[1]["byte"])

        link.configure(threshold=0, shifts=[0], dense=False)
        garbage = bytes((END, 0x13, 0x37, 0x00, 0xFF, 0x42, END))
        assert answer_to(garbage) == ErrorCode.CRC
        good = pixels_packet(0, 0, bytes(range(32)))
        assert answer_to(good[:20]) == ErrorCode.TIMEOUT            # truncated, then silence
        wrong_length = bytearray(good)
        wrong_length[7] += 1                                         # count field 33
        body = bytes(wrong_length[1:-3])                             # type .. samples
        resealed = bytes((END,)) + slip_escape(body + crc16(body).to_bytes(2, "big")) + \
            bytes((END,))
        assert answer_to(resealed) == ErrorCode.LENGTH
        assert answer_to(pixels_packet(0, 32, bytes(32))) == ErrorCode.POSITION
        # A low stop bit: the receiver then waits for the line to go high (the idle time
        # here; a character right behind it would be misread and the packet time out).
        board.write_bad_stop_bit(encode_packet(Command.INFO)[:-1], 2)
        assert board.read(5 * board.byte_seconds) == b""
        assert answer_to(bytes((END,))) == ErrorCode.FRAMING
        assert answer_to(encode_packet(0x7E)) == ErrorCode.COMMAND
        assert link.sync() == (0, 0)          # nothing reached the engine

        # 3. Faults in the middle of a run: a damaged packet, a cut packet. The driver's
        # recovery (SYNC, resend) still gives the model's results.
        faulty = BoardLink(FaultyTransport(board, flip={1}, cut={4}), config, timeout=TIMEOUT)
        assert_equals_model(config, frames, faulty.run(frames))
        # Each damaged packet is refused (CRC), and so is the one behind it (POSITION).
        assert [code for code, _, _ in faulty.errors] == [
            ErrorCode.CRC, ErrorCode.POSITION, ErrorCode.CRC, ErrorCode.POSITION]
    assert board.result["framing_errors"] == 0


@pytest.mark.parametrize("changes", [{"mode": "dense", "channels_out": 2, "lanes": 2,
                                      "weights": [[[[1, -2, 3], [0, 5, 0], [-7, 8, 9]]],
                                                  [[[9, 9, 9], [9, 9, 9], [9, 9, 9]]]],
                                      "bias": [100, -5000], "pixels_per_cycle": 2}])
@pytest.mark.parametrize("target", [GENERIC, ECP5, ICE40], ids=lambda t: t.name)
def test_board_dense_mode_two_pixels_per_cycle(changes, target):
    """Also the boards' variants, with their primitives: the ECP5's (every RAM read port
    behind one register, MULT18X18D multipliers) and the iCE40's (accumulators in
    SB_SPRAM256KA blocks, Yosys's model)."""
    config = layer(**changes)
    frames = video(2, 3, config)
    with BoardSimulation(config, chunk=16, timeout_cycles=LINK_TIMEOUT_CYCLES,
                         build_root=BUILD, target=target) as board:
        link = BoardLink(board, config, timeout=TIMEOUT)
        assert_equals_model(config, frames, link.run(frames))


def run_cli_port_sim(tmp_path, monkeypatch, config, frames, *options, status=0):
    """``eventconv run --backend board --port sim [options]`` on ``config`` and ``frames``:
    exits ``status``; if 0, OUT.npz checked equal to the model's on every model key; returns
    (OUT.npz, model)."""
    import json

    from eventconv.cli import main
    monkeypatch.setenv("XDG_CACHE_HOME", str(BUILD.parent / "cache"))
    (tmp_path / "cfg.json").write_text(json.dumps(config.to_dict()))
    np.save(tmp_path / "frames.npy", frames)
    out = tmp_path / "out.npz"
    assert main(["run", "--config", str(tmp_path / "cfg.json"), "--frames",
                 str(tmp_path / "frames.npy"), "--backend", "board", "--port", "sim",
                 *options, "--out", str(out), "--quiet"]) == status
    if status:
        assert not out.exists()
        return None, None
    board, model = np.load(out), run_model(config, frames)
    for key in model:
        np.testing.assert_array_equal(board[key], model[key], err_msg=key)
    return board, model


def test_cli_port_sim_runs_the_simulated_board(tmp_path, monkeypatch):
    """``--backend board --port sim``: the board's gateware (UART, link, engine) built for the
    config and simulated behind the real driver; OUT.npz equals the model's."""
    config = layer(seed=8, lanes=3)
    board, model = run_cli_port_sim(tmp_path, monkeypatch, config, video(8, 4, config))
    assert sorted(board.files) == sorted(model)


def test_cli_port_sim_runs_the_icebreakers_own_build(tmp_path, monkeypatch, capsys):
    """``--port sim --board icebreaker``: the iCEBreaker's own build (64 x 48, accumulators in
    SB_SPRAM256KA under Yosys's model, no uploads) behind the driver, on the real clip: equal
    to the model. Other weights of its shape are refused in one line (it takes none)."""
    config = default_config("icebreaker")
    frames = load_clip("vtest_64x48")[:2]
    options = ("--board", "icebreaker", "--simulator", "verilator")
    board, model = run_cli_port_sim(tmp_path, monkeypatch, config, frames, *options)
    assert model["macs"].sum() > 0
    other = config.replace(bias=[b + 1 for b in config.bias])
    capsys.readouterr()
    (tmp_path / "out.npz").unlink()
    run_cli_port_sim(tmp_path, monkeypatch, other, frames, *options, status=1)
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "takes no uploads" in error[0], error


def two_layers(output_threshold):
    """8x8 -> 3 channels, pooled to 4x4 -> 2 channels at 4x4 (pool 1), real-sized knobs."""
    rng = np.random.default_rng(11)
    return Network.from_dict({
        "height": 8, "width": 8, "channels_in": 1, "threshold": 10, "layers": [
            {"channels_out": 3, "kernel_size": 3, "shift": 6, "lanes": 3,
             "output_threshold": output_threshold,
             "weights": rng.integers(-128, 128, (3, 1, 3, 3)).tolist(),
             "bias": rng.integers(-2000, 3000, 3).tolist()},
            {"channels_out": 2, "kernel_size": 3, "shift": 7, "pool": 1,
             "weights": rng.integers(-128, 128, (2, 3, 3, 3)).tolist(),
             "bias": rng.integers(-2000, 3000, 2).tolist()}]})


def test_cli_port_sim_runs_a_network(tmp_path, monkeypatch):
    """A network on the simulated board through the command line: the network's OUT.npz
    (``output``, counts per layer, ``cycles``) equal to the model; CONFIG carries each
    layer's knobs (an output threshold on the first), END_OF_FRAME each layer's figures."""
    net = two_layers(output_threshold=3)
    board, model = run_cli_port_sim(tmp_path, monkeypatch, net, video(12, 5, net.first))
    assert sorted(board.files) == sorted([*model, "cycles"])
    assert model["events_out"][:, 0].sum() > 0 and model["macs"][1:, 1].sum() > 0
    assert board["cycles"].shape == (5,) and (board["cycles"] > 0).all()


def test_network_board_recovers_damaged_packets_and_takes_uploaded_weights():
    """Damaged PIXELS packets on the way to a network's board: refused, resent, and the
    results still equal the model's. Then other trained weights and bias of the same shape,
    uploaded over the link (WEIGHTS) into the same bitstream: the results equal the model of
    those, bit for bit, from the first frame. A network of another shape is refused in one
    line that says what differs."""
    net = two_layers(output_threshold=0)
    frames = video(13, 4, net.first)
    with BoardSimulation(net, chunk=16, timeout_cycles=LINK_TIMEOUT_CYCLES,
                         build_root=BUILD) as board:
        faulty = BoardLink(FaultyTransport(board, flip={2}, cut={5}), net, timeout=TIMEOUT)
        results = faulty.run(frames)
        model = run_model(net, frames)
        out = integrate(net, results)
        for key in model:
            np.testing.assert_array_equal(out[key], model[key], err_msg=key)
        assert ErrorCode.CRC in [code for code, _, _ in faulty.errors]
        assert faulty.uploads == 0                  # the built-in weights: nothing to send

        trained, short = retrained(net, seed=5), frames[:3]
        link = BoardLink(board, trained, timeout=TIMEOUT)
        out, model = integrate(trained, link.run(short)), run_model(trained, short)
        for key in model:
            np.testing.assert_array_equal(out[key], model[key], err_msg=key)
        # Differs from the built-in network's: so neither new weights nor new bias went unused.
        assert link.uploads == 1 and not np.array_equal(model["output"],
                                                        run_model(net, short)["output"])

        other = net.to_dict()
        other["layers"][1]["pool"] = 2
        with pytest.raises(LinkError, match="built for another shape.*channels, kernel, pool"):
            BoardLink(board, Network.from_dict(other), timeout=TIMEOUT).query_info()


def retrained(net, seed):
    """``net`` with other weights and bias (what a new training run gives): each output
    channel's weights shuffled and the bias moved a little, keeping the shape (so every
    layer's accumulator width)."""
    rng = np.random.default_rng(seed)
    obj = net.to_dict()
    for layer in obj["layers"]:
        weights = np.array(layer["weights"])
        flat = weights.reshape(len(weights), -1)
        layer["weights"] = np.array([rng.permutation(row) for row in flat]).reshape(
            weights.shape).tolist()
        layer["bias"] = [b + int(rng.integers(-200, 200)) for b in layer["bias"]]
    trained = Network.from_dict(obj)
    assert shape_digest(trained) == shape_digest(net)
    return trained
