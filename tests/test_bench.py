"""Benchmark accounting: energy counts, bounds, errors, and a tiny bench run on the model.

The real RTL benchmark (``make bench``) is not part of the tests; the RTL path's check against
the model is tested here with a fake simulator result.
"""

import numpy as np
import pytest

from eventconv.backends import rtl as rtl_backend
from eventconv.bench import cli, measure
from eventconv.bench.boards import work_bound
from eventconv.bench.energy import (
    CATEGORIES,
    ENERGY_PJ,
    OperationCounts,
    count_operations,
    energy_per_frame,
    touched_windows,
)
from eventconv.bench.network import NETWORK_CLIP, layer_bounds, network_config
from eventconv.bench.recordings import RECORDINGS, recording_network
from eventconv.bench.report import write_report
from eventconv.core.clip import load_clip
from eventconv.core.kernels import filter_bank_config
from eventconv.core.model import Events, run_model, taps_in_frame
from eventconv.core.network import Network
from eventconv.flow.resources import estimate_resources
from eventconv.hw.boards import BOARDS, board_named, default_config
from eventconv.hw.target import GENERIC, ICE40
from eventconv.recordings import count_frames, read_recording
from eventconv.recordings.excerpts import bundled


def events_at(*points):
    return Events.from_tuples([(0, y, x, 10) for y, x in points])


@pytest.mark.parametrize("points, windows", [
    ([], 0),
    ([(0, 0)], 1),             # outputs (0..1, 0..1): one window
    ([(2, 2)], 4),             # outputs (1..3, 1..3): windows (0..1, 0..1)
    ([(2, 2), (2, 3)], 6),     # outputs (1..3, 1..4): windows (0..1, 0..2)
    ([(7, 7), (0, 7)], 2),     # two corners
])
def test_touched_windows_counts_windows_of_the_updated_accumulators(points, windows):
    config = filter_bank_config(8, 8, channels_out=2)
    assert touched_windows(config, events_at(*points)) == windows


def test_touched_windows_of_every_pixel_is_every_window():
    config = filter_bank_config(8, 12, channels_out=2)
    points = [(y, x) for y in range(8) for x in range(12)]
    assert touched_windows(config, events_at(*points)) == 4 * 6


def test_count_operations_dense_and_static_frames():
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (12, 16), dtype=np.uint8)
    frames = np.stack([frame, frame, frame])
    dense = filter_bank_config(12, 16, channels_out=4, mode="dense")
    counts, pooled = count_operations(dense, frames)
    taps = taps_in_frame(dense).sum()
    np.testing.assert_array_equal(counts.samples, [192] * 3)
    np.testing.assert_array_equal(counts.events_in, [192] * 3)
    np.testing.assert_array_equal(counts.taps, [taps] * 3)
    np.testing.assert_array_equal(counts.macs, [taps * 4] * 3)
    np.testing.assert_array_equal(counts.windows, [6 * 8] * 3)
    np.testing.assert_array_equal(pooled, run_model(dense, frames)["pooled"])
    event, _ = count_operations(dense.replace(mode="event", threshold=0), frames)
    # A frame equal to the last one costs nothing beyond the detector scan.
    for name in ("events_in", "macs", "taps", "windows", "events_out"):
        assert getattr(event, name)[1] == getattr(event, name)[2] == 0, name
    model = run_model(dense.replace(mode="event", threshold=0), frames)
    np.testing.assert_array_equal(event.events_out, model["events_out"])


def one(**counts):
    names = ("samples", "events_in", "macs", "taps", "windows", "events_out")
    return OperationCounts(**{n: np.array([counts.get(n, 0)]) for n in names},
                           channels_out=8, accumulator_width=17)


BIT = 10 / 64


@pytest.mark.parametrize("counts, expected", [
    # N samples: subtract + compare (8-bit adds), an 8-bit reference read.
    (dict(samples=1), {"detector arithmetic": 0.06, "detector memory": 8 * BIT}),
    # An event writes the 8-bit reference.
    (dict(events_in=1), {"detector memory": 8 * BIT}),
    # A mac: multiply, 32-bit add, 8-bit weight read, 17-bit accumulator read and write.
    (dict(macs=1), {"accumulate arithmetic": 0.3, "accumulate memory": (8 + 34) * BIT}),
    # A tap: its output address, two 8-bit adds.
    (dict(taps=1), {"accumulate arithmetic": 0.06}),
    # A window, 8 channels: 3 accumulator-wide max compares, a requantize clamp and a change
    # subtract; 4 accumulator reads and one pooled read per channel.
    (dict(windows=1), {"pool arithmetic": 8 * (3 * 0.1 + 2 * 0.03),
                       "pool memory": 8 * (4 * 17 + 8) * BIT}),
    # A changed pooled value is written.
    (dict(events_out=1), {"pool memory": 8 * BIT}),
])
def test_energy_per_frame_charges_each_count_as_documented(counts, expected):
    energy = energy_per_frame(one(**counts))
    for category in CATEGORIES:
        assert energy[category][0] == pytest.approx(expected.get(category, 0.0)), category
    assert energy["total"][0] == pytest.approx(sum(expected.values()))


def test_energy_table_is_horowitz_and_can_be_overridden():
    assert ENERGY_PJ == {"add8": 0.03, "add32": 0.1, "mult8": 0.2, "sram_bit": 10 / 64}
    energy = energy_per_frame(one(macs=2), table={"mult8": 1.0})
    assert energy["accumulate arithmetic"][0] == pytest.approx(2 * 1.1)


def test_event_mode_spends_a_small_fraction_of_dense_energy_on_the_clip():
    frames = load_clip("vtest_32x32")[:6]
    energy = {}
    for mode in ("event", "dense"):
        counts, _ = count_operations(filter_bank_config(32, 32, mode=mode), frames)
        energy[mode] = energy_per_frame(counts)["total"]
    assert energy["event"][0] == pytest.approx(energy["dense"][0], rel=0.05)
    assert (energy["event"][1:] < 0.25 * energy["dense"][1:]).all()


def test_utilisation_bound_and_pooled_error():
    config = filter_bank_config(8, 8, channels_out=4, lanes=2, pixels_per_cycle=4)
    np.testing.assert_array_equal(measure.utilisation_bound(config, [0, 32, 40]), [16, 16, 20])
    a = np.array([[10, 20], [30, 40]], np.uint8)
    b = np.array([[10, 25], [30, 37]], np.uint8)
    assert measure.pooled_error(a, b) == (2.0, 5, 0.5)
    assert measure.pooled_error(a, a) == (0.0, 0, 0.0)


def test_resource_notes_are_the_estimates_of_flow_resources():
    config = filter_bank_config(16, 16, channels_out=2)
    notes = measure.resource_notes(config)
    layer = next(s for s in estimate_resources(config, board_named("icebreaker"))
                 if s.stage == "layers[0]")
    assert (notes["layer_ebr"], notes["dsp"], notes["ebr"]) == (layer.blocks, 8, 30)
    assert notes["layer_ebr"] > 0 and notes["accumulator_kbit"] > 0


def test_rtl_result_that_differs_from_the_model_is_refused(monkeypatch):
    config = filter_bank_config(16, 16, channels_out=2)
    frames = load_clip("vtest_32x32")[:2, ::2, ::2].copy()

    def fake_rtl(config, frames, **kwargs):
        out = run_model(config, frames)
        out["macs"] = out["macs"] + np.array([0, 1])
        return {**out, "cycles": np.array([100, 100])}

    monkeypatch.setattr(rtl_backend, "run", fake_rtl)
    monkeypatch.setattr(measure, "measure_recordings", lambda settings: [])
    settings = measure.Settings(log=None)
    with pytest.raises(RuntimeError, match="RTL differs from the golden model in 'macs'"):
        measure.run_layer(settings, config, frames)


def test_bench_on_the_model_writes_report_and_plots(tmp_path):
    settings = measure.Settings(clip="vtest_32x32", frames=4, backend="model", out=tmp_path,
                              knob_sweep=((2, 2),), sweep_dense_frames=1, log=None)
    results = measure.run_bench(settings)
    path = write_report(results, tmp_path)
    report = path.read_text()
    frames = load_clip("vtest_32x32")[:4]
    event = run_model(filter_bank_config(32, 32, lanes=8, pixels_per_cycle=4), frames)
    dense = run_model(filter_bank_config(32, 32, mode="dense"), frames)
    assert f"| 1 | {event['events_in'][1]} | {event['macs'][1]} | {dense['macs'][1]} |" in report
    # Steady state: frames 1.. (frame 0 fires every pixel).
    share = event["macs"][1:].sum() / dense["macs"][1:].sum()
    assert f"| accumulate ops / frame | {event['macs'][1:].mean():.0f} | " in report
    assert f"{100 * share:.1f} %" in report
    # Threshold 0 reproduces the dense layer exactly.
    assert "| 0 | " in report and "| 0.000 | 0 | 0.0 % |" in report
    assert "Horowitz" in report and "## Reproduce" in report
    for name in ("per_frame.png", "threshold.png", "energy.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert not (tmp_path / "utilisation.png").exists()   # no cycles without RTL
    # The network, layer by layer, and the output-threshold sweep (U = 0: event mode).
    clip = load_clip("vtest_64x48")[:4]
    net = network_config(threshold=measure.THRESHOLD)
    ev = run_model(net, clip)
    de = run_model(network_config(threshold=measure.THRESHOLD, mode="dense"), clip)
    assert (f"| 0 | {ev['events_in'][1:, 0].mean():.1f} | {ev['events_out'][1:, 0].mean():.1f}"
            f" | {ev['macs'][1:, 0].mean():.0f} | {de['macs'][1:, 0].mean():.0f} |") in report
    error = np.abs(ev["output"].astype(int) - de["output"]).mean()
    share = ev["macs"][1:].sum() / de["macs"][1:].sum()
    assert f"| 0 | {100 * share:.1f} % | {error:.3f} |" in report
    sweep = results["network"]["output_thresholds"]
    assert sweep[-1]["macs_fraction"] < sweep[0]["macs_fraction"]
    assert (tmp_path / "output_threshold.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "network_layers.png").read_bytes()[:4] == b"\x89PNG"
    assert results["network"]["network_cycles"] == {"event": None, "dense": None}
    assert results["pool_modes"] == [] and "## The pool during the frame" not in report
    # The real recordings: the work of the count frames against a dense layer.
    assert "## Real event-camera recordings" in report
    for name in RECORDINGS:
        net = recording_network(name)
        first = net.first
        recording = read_recording(bundled(name))
        frames, _ = count_frames(recording, net.events, height=first.height,
                                 width=first.width, channels_in=first.channels_in)
        frames = frames.reshape(first.frames_shape(len(frames)))[:4]
        ev = run_model(net, frames)
        de = run_model(recording_network(name, "dense"), frames)
        share = ev["macs"][1:].sum() / de["macs"][1:].sum()
        assert f"| {name} | " in report and f"| {100 * share:.2f} % |" in report


def test_main_quick_on_the_model(tmp_path, capsys):
    assert cli.main(["--quick", "--backend", "model", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "report.md").exists()
    assert "--quick --backend model" in (tmp_path / "report.md").read_text()


def test_command_line_settings():
    quick = cli.settings_from_args(["--quick", "--simulator", "icarus"])
    assert (quick.frames, quick.simulator, quick.repeats) == (12, "icarus", 1)
    assert cli.settings_from_args([]).repeats == 3
    assert cli.settings_from_args(["--frames", "30"]).frames == 30
    for bad in (["--frames", "1"], ["--repeats", "0"], ["--simulator", "xsim"]):
        with pytest.raises(SystemExit) as info:
            cli.settings_from_args(bad)
        assert info.value.code == 2


def test_work_bound_counts_the_spram_units_two_cycles_per_beat():
    config = default_config("icebreaker")      # 2 lanes
    macs = np.array([0, 10_000, 100_000])
    samples = config.height * config.width
    np.testing.assert_array_equal(work_bound(config, macs, GENERIC),
                                  np.maximum(samples, macs / 2))
    np.testing.assert_array_equal(work_bound(config, macs, ICE40), np.maximum(samples, macs))


def test_layer_bounds_are_ops_per_lane_or_inputs_per_clock():
    net = network_config(threshold=8)                   # PNet, lanes 5, 4, 8, 2, 64 x 48
    out = {"macs": np.array([[100_000, 40, 0, 0], [0, 8000, 800, 30]]),
           "events_in": np.array([[9, 300, 5, 7], [0, 100, 1000, 3]])}
    np.testing.assert_array_equal(layer_bounds(net, out),
                                  [[20_000, 300, 5, 7], [3072, 2000, 1000, 15]])


def test_rtl_report_path_with_a_fake_simulator(tmp_path, monkeypatch):
    """The RTL sections (cycles, utilisation, fixed overhead) on cycles made up as bound + 10."""
    def fake_rtl(config, frames, **kwargs):
        out = run_model(config, frames)
        if isinstance(config, Network):
            return {**out, "cycles": np.full(len(frames), 1000, np.int64)}
        bound = measure.utilisation_bound(config, out["macs"])
        return {**out, "cycles": (bound + 10).astype(np.int64)}

    monkeypatch.setattr(rtl_backend, "run", fake_rtl)
    monkeypatch.setattr(measure, "measure_recordings", lambda settings: [])
    settings = measure.Settings(clip="vtest_32x32", frames=5, backend="rtl", out=tmp_path,
                              knob_sweep=((2, 2),), sweep_dense_frames=3, speed_runs={},
                              log=None)
    results = measure.run_bench(settings)
    report = write_report(results, tmp_path).read_text()
    rows = {row["knobs"]: row for row in measure.utilisation_rows(results)}
    assert set(rows) == {(8, 4), (2, 2)}
    for row in rows.values():
        assert row["fixed"] == 10                      # the still scene: scan + 10
        assert row["event"]["overhead_median"] == 10
        assert 1 < row["dense"]["ratio_median"] < 1.01
    assert "| 8 x 4 (default) |" in report and "| 2 x 2 |" in report
    # The network's RTL cycles (made up: 1000 a frame) against its busiest layer's bound.
    net = network_config(threshold=measure.THRESHOLD)
    busiest = layer_bounds(net, run_model(net, load_clip(NETWORK_CLIP)[:5]))[1:].max(axis=1)
    ratio = 1000 / busiest
    assert "| event | 1000 | " in report
    assert f"| {np.median(ratio):.2f} / {ratio.max():.2f} |" in report
    assert "## RTL simulation speed" not in report
    assert (tmp_path / "utilisation.png").read_bytes()[:4] == b"\x89PNG"
    # The boards' own builds, each with its family's target and the PLL's clock.
    boards = {row["board"]: row for row in results["boards"]}
    assert set(boards) == set(BOARDS)
    assert boards["icebreaker"]["clock"] == 42e6 and "| icebreaker | 64 x 48" in report
    assert "## The boards' own builds" in report
    # The pool's two ways, each checked run at the defaults (1 lane, 1 pixel per clock).
    modes = {row["mode"]: row for row in results["pool_modes"]}
    assert set(modes) == {"during the frame", "after the frame"}
    assert all(row["config"].lanes == 1 and row["config"].pixels_per_cycle == 1
               for row in modes.values())
    assert "## The pool during the frame against after it" in report
    assert "| during the frame | " in report and "| after the frame | " in report
