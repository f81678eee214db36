"""The command line: OUT.npz exactly as SPEC.md says; every bad input exits 2 with one line."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from eventconv.cli import main
from eventconv.core.clip import load_clip
from eventconv.core.kernels import filter_bank_config
from eventconv.core.model import run_model

EVENTCONV = str(Path(sys.executable).parent / "eventconv")


@pytest.fixture
def job(tmp_path):
    config = filter_bank_config(32, 32, channels_out=4, threshold=6)
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(config.to_dict()))
    frames = tmp_path / "frames.npy"
    np.save(frames, load_clip("vtest_32x32")[:6])
    return config, cfg, frames, tmp_path / "out.npz"


def run_cli(*args):
    return subprocess.run([EVENTCONV, *map(str, args)], capture_output=True, text=True)


def test_run_model_writes_spec_npz(job):
    config, cfg, frames, out = job
    proc = run_cli("run", "--config", cfg, "--frames", frames, "--backend", "model", "--out", out)
    assert proc.returncode == 0, proc.stderr
    result = np.load(out)
    assert sorted(result.files) == ["events_in", "events_out", "macs", "pooled"]
    assert result["pooled"].dtype == np.uint8 and result["pooled"].shape == (6, 4, 16, 16)
    expected = run_model(config, np.load(frames))
    for key in result.files:
        assert result[key].dtype == expected[key].dtype
        np.testing.assert_array_equal(result[key], expected[key])


def test_help_explains_commands():
    proc = run_cli("--help")
    assert proc.returncode == 0
    for word in ("run", "export", "synth", "demo"):
        assert word in proc.stdout
    proc = run_cli("run", "--help")
    assert "--backend" in proc.stdout and "channels_in == 1" in proc.stdout


def refuse(capsys, *args):
    assert main([str(a) for a in args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("eventconv: error: "), err
    return err


def write_config(tmp_path, **changes):
    obj = {**filter_bank_config(32, 32, channels_out=4).to_dict(), **changes}
    obj = {k: v for k, v in obj.items() if v is not None}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(obj))
    return path


@pytest.mark.parametrize("changes, message", [
    ({"threshold": 300}, "threshold must be an integer in 0..255, not 300"),
    ({"shift": 40}, "shift must be an integer in 0..31, not 40"),
    ({"kernel_size": 2}, "kernel_size must be one of 1, 3, 5, 7, not 2"),
    ({"height": 31}, "height must be even"),
    ({"speed": "fast"}, "unknown field 'speed'"),
    ({"mode": "DENSE"}, "mode must be \"event\" or \"dense\""),
    ({"bias": [2**40] * 4}, "bias[0] must be an integer in -2147483648..2147483647"),
])
def test_bad_config_exits_2(job, capsys, changes, message):
    _, _, frames, out = job
    err = refuse(capsys, "run", "--config", write_config(out.parent, **changes),
                 "--frames", frames, "--backend", "model", "--out", out)
    assert message in err
    assert not out.exists()


@pytest.mark.parametrize("array, message", [
    (np.zeros((3, 32, 32), np.float64), "dtype uint8"),
    (np.zeros((3, 1, 32, 32), np.uint8), "shape (T, H, W) = (T, 32, 32), not (3, 1, 32, 32)"),
    (np.zeros((3, 32, 30), np.uint8), "not (3, 32, 30)"),
    (np.zeros((32, 32), np.uint8), "not (32, 32)"),
])
def test_bad_frames_exit_2(job, capsys, array, message):
    _, cfg, frames, out = job
    np.save(frames, array)
    err = refuse(capsys, "run", "--config", cfg, "--frames", frames, "--backend", "model",
                 "--out", out)
    assert message in err
    assert not out.exists()


def test_unreadable_inputs_exit_2(job, capsys, tmp_path):
    _, cfg, frames, out = job
    assert "no such file" in refuse(capsys, "run", "--config", cfg, "--frames",
                                    tmp_path / "none.npy", "--backend", "model", "--out", out)
    (tmp_path / "text.npy").write_text("hello")
    assert "not a .npy array file" in refuse(capsys, "run", "--config", cfg, "--frames",
                                             tmp_path / "text.npy", "--backend", "model",
                                             "--out", out)
    (tmp_path / "empty.npy").write_bytes(b"")   # numpy raises EOFError here
    assert "not a .npy array file" in refuse(capsys, "run", "--config", cfg, "--frames",
                                             tmp_path / "empty.npy", "--backend", "model",
                                             "--out", out)
    assert "folder" in refuse(capsys, "run", "--config", cfg, "--frames", frames,
                              "--backend", "model", "--out", tmp_path / "no" / "out.npz")
    assert "invalid choice" in refuse(capsys, "run", "--config", cfg, "--frames", frames,
                                      "--backend", "fpga", "--out", out)
    assert "required" in refuse(capsys, "run", "--config", cfg)
    for backend in ("--backend", "model"), ("--backend", "board", "--port", "/dev/ttyUSB1"):
        assert "--board goes with --backend board --port sim" in refuse(
            capsys, "run", "--config", cfg, "--frames", frames, *backend, "--board",
            "icebreaker", "--out", out)
    assert not out.exists()


def test_subprocess_exit_code_and_single_line(job):
    _, cfg, frames, out = job
    np.save(frames, np.zeros((2, 16, 16), np.uint8))
    proc = run_cli("run", "--config", cfg, "--frames", frames, "--backend", "model",
                   "--out", out)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "frames must have shape" in proc.stderr


def test_demo_prints_saving_table(capsys):
    assert main(["demo", "--clip", "vtest_32x32"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[1].split() == ["frame", "events_in", "macs", "event", "macs", "dense", "saving",
                                "events_out"]
    assert len(lines) == 2 + 60 + 1
    saving = float(lines[-1].split("saving ")[1].split("%")[0])
    assert 80 < saving < 100
    assert main(["demo", "--threshold", "300"]) == 2


def test_boards_lists_the_registry(capsys):
    from eventconv.hw.boards import BOARDS
    assert main(["boards"]) == 0
    assert capsys.readouterr().out.split() == list(BOARDS)


def network_config(tmp_path, **layer1):
    layer = {k: v for k, v in filter_bank_config(32, 32, channels_out=4).to_dict().items()
             if k in ("channels_out", "kernel_size", "weights", "bias", "shift")}
    second = {"channels_out": 2, "kernel_size": 3, "weights": np.ones((2, 4, 3, 3), int).tolist(),
              "bias": [-500, 100], "shift": 4, "pool": 1, "output_threshold": 2, **layer1}
    obj = {"height": 32, "width": 32, "channels_in": 1, "threshold": 6, "layers": [layer, second]}
    path = tmp_path / "net.json"
    path.write_text(json.dumps(obj))
    return path


def test_run_model_on_a_network_writes_the_network_npz(job):
    _, _, frames, out = job
    cfg = network_config(out.parent)
    proc = run_cli("run", "--config", cfg, "--frames", frames, "--backend", "model", "--out", out)
    assert proc.returncode == 0, proc.stderr
    result = np.load(out)
    assert sorted(result.files) == ["events_in", "events_out", "macs", "output"]
    assert result["output"].dtype == np.uint8 and result["output"].shape == (6, 2, 16, 16)
    for key in ("events_in", "events_out", "macs"):
        assert result[key].dtype == np.int64 and result[key].shape == (6, 2)
    # Layer 2's input events are layer 1's output events.
    np.testing.assert_array_equal(result["events_in"][:, 1], result["events_out"][:, 0])


@pytest.mark.parametrize("changes, message", [
    ({"weights": np.ones((2, 3, 3, 3), int).tolist()},
     "layers[1].weights must be nested lists shaped [2, 4, 3, 3], not [2, 3, 3, 3] "
     "(channels_in = 4 from layers[0])"),
    ({"output_threshold": -1}, "layers[1].output_threshold must be an integer in 0..255, not -1"),
    ({"threshold": 3}, "unknown field 'layers[1].threshold'"),
])
def test_bad_network_exits_2_naming_the_layer_field(job, capsys, changes, message):
    _, _, frames, out = job
    err = refuse(capsys, "run", "--config", network_config(out.parent, **changes),
                 "--frames", frames, "--backend", "model", "--out", out)
    assert message in err
    assert not out.exists()


def test_gateware_refuses_an_odd_size_it_cannot_bank(tmp_path, capsys):
    """The model runs a pool-1 layer of odd size; the gateware banks by 2 x 2 and says so."""
    path = write_config(tmp_path, height=31, width=32, pool=1)
    np.save(tmp_path / "frames.npy", np.zeros((2, 31, 32), np.uint8))
    out = tmp_path / "out.npz"
    err = refuse(capsys, "run", "--config", path, "--frames", tmp_path / "frames.npy",
                 "--backend", "rtl", "--out", out)
    assert "height must be even for the gateware in this version, not 31" in err
    assert not out.exists()
    assert main(["run", "--config", str(path), "--frames", str(tmp_path / "frames.npy"),
                 "--backend", "model", "--out", str(out), "--quiet"]) == 0
