"""Design-space sweeps as tasks on Dask (issue 22): a real LocalCluster of 2 worker processes
runs the points; each row is what the golden model and the estimates give for that point."""

import csv
import json

import numpy as np
import pytest

from eventconv.bench.sweep import load_spec, pareto, run_point, run_sweep, sweep_points
from eventconv.cli import main
from eventconv.core.clip import load_clip
from eventconv.core.kernels import filter_bank_config
from eventconv.core.model import run_model


@pytest.fixture
def spec_file(tmp_path):
    config = filter_bank_config(16, 16, channels_out=4, threshold=8)
    (tmp_path / "layer.json").write_text(json.dumps(config.to_dict()))
    np.save(tmp_path / "frames.npy", load_clip("vtest_32x32")[:4, ::2, ::2].copy())
    spec = tmp_path / "sweep.yaml"
    spec.write_text("config: layer.json\nframes: frames.npy\nboards: [icebreaker]\n"
                    "sweep:\n  threshold: [0, 16]\n  lanes: [1, 4]\n")
    return spec


def test_a_local_cluster_runs_every_point_as_here(spec_file):
    spec = load_spec(spec_file)
    rows = run_sweep(spec, workers=2)
    points = sweep_points(spec)
    assert [{k: row[k] for k in ("threshold", "lanes", "board")} for row in rows] == points
    dense = run_model(spec.network.first.replace(mode="dense"), spec.frames)["pooled"]
    for row, point in zip(rows, points, strict=True):
        assert row == run_point(spec.network, spec.frames, dense.astype(np.int64), point)
        layer = spec.network.first.replace(threshold=point["threshold"], lanes=point["lanes"])
        model = run_model(layer, spec.frames)
        error = np.abs(model["pooled"][1:].astype(int) - dense[1:]).mean()
        assert row["error"] == pytest.approx(error, abs=1e-4)
        assert row["dsp"] == point["lanes"]
    by = {(r["threshold"], r["lanes"]): r for r in rows}
    assert by[0, 1]["error"] == 0                       # threshold 0: exactly dense's output
    assert by[16, 1]["work_pct"] < by[0, 1]["work_pct"]  # a higher threshold does less work
    assert by[0, 4]["cycles"] < by[0, 1]["cycles"]       # more lanes: fewer cycles
    assert by[0, 4]["work_pct"] == by[0, 1]["work_pct"]  # ... the same work


def test_pareto_keeps_exactly_the_points_nothing_beats():
    rows = [{"cycles": 10, "error": 1, "logic": 5}, {"cycles": 20, "error": 0, "logic": 5},
            {"cycles": 20, "error": 1, "logic": 5}, {"cycles": 10, "error": 1, "logic": 5},
            {"cycles": 5, "error": 2, "logic": 9}]
    assert pareto(rows) == [True, True, False, True, True]


def test_cli_sweep_writes_table_and_plot(spec_file, tmp_path, capsys):
    out = tmp_path / "out.csv"
    assert main(["sweep", str(spec_file), "-o", str(out), "--quiet"]) == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 4 and {"work_pct", "cycles", "fps", "error", "pareto"} <= set(rows[0])
    assert any(row["pareto"] == "True" for row in rows)
    assert (tmp_path / "out.md").read_text().startswith("| threshold | lanes | board |")
    assert (tmp_path / "out.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("text, message", [
    ("config: layer.json\nframes: frames.npy\nsweeep: {}\n", "unknown key 'sweeep'"),
    ("config: layer.json\nframes: frames.npy\nsweep:\n  lanes: [0]\n", "sweep.lanes[0]"),
    ("config: layer.json\nframes: frames.npy\nsweep:\n  pixels_per_cycle: [3]\n",
     "sweep.pixels_per_cycle[0]"),
    ("config: layer.json\nframes: frames.npy\nboards: [arty]\n", "boards[0] must be one of"),
    ("config: layer.json\n", "one of 'frames' or 'clip'"),
    ("[1, 2\n", "cannot read the sweep spec"),
])
def test_bad_spec_is_one_line_and_no_output(spec_file, tmp_path, capsys, text, message):
    spec_file.write_text(text)
    out = tmp_path / "out.csv"
    assert main(["sweep", str(spec_file), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not out.exists() and not (tmp_path / "out.png").exists()
