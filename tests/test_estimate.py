"""Estimates before synthesis (issue 22): memories mapped as Yosys maps them, a network that
cannot fit refused naming the resource, and the work figures from the golden model. The
estimates are checked against real synthesis in tests/test_synth.py and against simulated
cycles in tests/test_engine.py."""

import json
from pathlib import Path

import numpy as np
import pytest

from eventconv.bench.estimate import estimate, frame_cycles, network_work, row_slacks
from eventconv.cli import main
from eventconv.core.clip import load_clip
from eventconv.core.kernels import filter_bank_config
from eventconv.core.model import run_model
from eventconv.core.network import Network
from eventconv.flow.families import FAMILIES
from eventconv.flow.resources import (
    DoesNotFit,
    Memory,
    check_fits,
    estimate_resources,
    map_memory,
    totals,
)
from eventconv.hw.boards import BOARDS, default_config
from eventconv.hw.layer.engine import EventConvEngine
from eventconv.hw.target import TARGETS

PNET = Path(__file__).parents[1] / "sw" / "core" / "data" / "pnet_64x48.json"
ICE40, ECP5 = FAMILIES["ice40"].memory, FAMILIES["ecp5"].memory
# Engines are built here to read their parameters, not to be elaborated.
pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


@pytest.mark.parametrize("memory, library, expected", [
    # What the default builds' netlists hold (tests/test_synth.py checks the totals).
    (Memory("a", 968, 17, True), ICE40, ("ICESTORM_RAM", 5)),     # 4 bits wide, 5 blocks
    (Memory("a", 72, 8, False), ICE40, ("logic", 576)),           # a small ROM: LUTs
    (Memory("a", 15, 10, True), ICE40, ("ICESTORM_RAM", 1)),      # a small RAM: a block
    (Memory("a", 15, 10, True), ECP5, ("TRELLIS_RAMW", 3)),       # ... or LUT RAM
    (Memory("a", 63, 23, True), ECP5, ("TRELLIS_RAMW", 24)),
    (Memory("a", 63, 25, True), ECP5, ("DP16KD", 1)),            # PNet's last event queue
    (Memory("a", 4096, 8, True), ECP5, ("DP16KD", 2)),
    (Memory("a", 512, 30, True), ECP5, ("DP16KD", 1)),            # 36 wide, one port each way
    # A bank with the pool's own read port: a copy per read port; a ROM needs none.
    (Memory("a", 1024, 18, True, read_ports=2), ECP5, ("DP16KD", 2)),
    (Memory("a", 15, 10, True, read_ports=2), ECP5, ("TRELLIS_RAMW", 6)),
    (Memory("a", 72, 8, False, read_ports=2), ICE40, ("logic", 576)),
])
def test_memories_map_as_yosys_maps_them(memory, library, expected):
    assert map_memory(memory, library) == expected


def test_stages_add_up_and_dsps_are_lanes():
    net = Network.from_json(PNET)
    stages = estimate_resources(net, BOARDS["ulx3s-85f"])
    assert [s.stage for s in stages] == ["input", *(f"layers[{i}]" for i in range(4)), "link"]
    total = totals(stages)
    assert total.dsp == sum(layer.lanes for layer in net.layers)
    assert total.blocks == sum(s.blocks for s in stages)
    # Each layer's accumulators alone: Cout x H x W words of its width.
    for layer, stage in zip(net.layers, stages[1:], strict=False):
        assert stage.memory_bits >= layer.channels_out * layer.height * layer.width * \
            layer.accumulator_width


def test_the_estimates_row_slacks_are_the_engines():
    """The cycle model's slacks are the pools' the engine builds: early evaluation in every
    layer of the generic build (PNet: K = 3, 3, 3, 1; pool 2, 1, 1, 1), in none on the ECP5
    or behind the address-event detector."""
    net = Network.from_json(PNET)
    generic = EventConvEngine(net)
    assert row_slacks(net) == [layer.pool.row_slack for layer in generic.layers] == [1, 2, 4, 5]
    assert all(layer.pool.early for layer in generic.layers)
    ecp5 = TARGETS["ecp5"]
    assert row_slacks(net, ecp5) == [None] * 4
    for engine in (EventConvEngine(net, target=ecp5), EventConvEngine(net, address_events=True)):
        assert not any(layer.pool.early for layer in engine.layers)


def test_a_network_too_big_for_the_board_is_refused_naming_the_resource():
    net = Network.from_json(PNET)
    with pytest.raises(DoesNotFit, match=r"needs \d+ block RAMs \(ICESTORM_RAM\) and "
                                         r"icebreaker has 30 \(layers\[\d\] alone"):
        check_fits(net, BOARDS["icebreaker"])
    check_fits(net, BOARDS["ulx3s-85f"])   # fits the ECP5


def test_accumulators_deeper_than_one_spram_are_refused():
    """SinglePortRam builds one SPRAM deep: with one lane the iCEBreaker's 64 x 48 layer would
    need 24576 words per RAM."""
    one_lane = default_config("icebreaker").replace(lanes=1)
    with pytest.raises(DoesNotFit, match=r"layers\[0\]'s accumulators need 24576 words per "
                                         r"lane .* ICESTORM_SPRAM holds 16384"):
        check_fits(one_lane, BOARDS["icebreaker"])
    check_fits(default_config("icebreaker"), BOARDS["icebreaker"])


def test_cli_estimate_and_synth_refuse_what_does_not_fit(tmp_path, capsys):
    assert main(["estimate", "--config", str(PNET), "--board", "icebreaker"]) == 2
    captured = capsys.readouterr()
    assert "| layers[3] |" in captured.out
    assert captured.err.count("\n") == 1 and "block RAMs" in captured.err
    build = tmp_path / "build"
    assert main(["synth", "--board", "icebreaker", "--config", str(PNET),
                 "--build-dir", str(build)]) == 2
    assert "icebreaker has 30" in capsys.readouterr().err and not build.exists()


def test_cli_estimate_with_frames_gives_work_cycles_and_frame_rate(tmp_path, capsys):
    frames = tmp_path / "frames.npy"
    np.save(frames, load_clip("vtest_64x48")[:4])
    assert main(["estimate", "--config", str(PNET), "--board", "ulx3s-85f",
                 "--frames", str(frames)]) == 0
    out = capsys.readouterr().out
    assert "fits: DP16KD" in out and "cycles per frame (estimate, mean, generic gateware" in out
    assert "frames per second at ulx3s-85f's 125 MHz" in out


def test_work_is_the_golden_models_and_dense_costs_more():
    net = Network.from_json(PNET)
    frames = load_clip("vtest_64x48")[:4]
    model = run_model(net, frames)
    result = estimate(net, [BOARDS["ulx3s-85f"]], frames)["work"]
    for i, layer in enumerate(result["event"]["work"]):
        np.testing.assert_array_equal(layer.counts.macs, model["macs"][:, i])
        np.testing.assert_array_equal(layer.counts.events_out, model["events_out"][:, i])
    event, dense = result["event"], result["dense"]
    assert (event["cycles"][1:] < dense["cycles"][1:]).all()
    assert (event["energy_pj"][1:] < dense["energy_pj"][1:]).all()


def test_cycles_grow_with_work():
    config = filter_bank_config(16, 16, channels_out=4, threshold=4, lanes=2)
    net = Network.of(config)
    still = np.zeros((2, 16, 16), np.uint8)
    moving = np.stack([still[0], np.full((16, 16), 200, np.uint8)])
    quiet = frame_cycles(net, network_work(net, still))
    busy = frame_cycles(net, network_work(net, moving))
    assert quiet[1] < busy[1]
    assert quiet[1] >= 16 * 16   # the scan of every pixel is left


def test_estimate_without_board_gives_every_board(tmp_path, capsys):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(filter_bank_config(16, 16).to_dict()))
    assert main(["estimate", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    for name, board in BOARDS.items():
        assert f"{name} ({board.pll_frequency / 1e6:g} MHz)" in out
    assert out.count("fits: ") == len(BOARDS)
