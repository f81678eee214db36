"""`eventconv run --events REC`: a recording becomes frames that run exactly as `--frames`
would run them; the dropped count goes to stderr; every bad recording or `events` object exits 2
with one line and leaves no output file."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_recordings import BAD_RECORDINGS, DAVIS, EVK4, bad_recording, write_npy

from eventconv.cli import main
from eventconv.core.model import run_model
from eventconv.core.network import Network
from eventconv.recordings import count_frames, read_recording
from eventconv.recordings.excerpts import bundled

EVENTCONV = str(Path(sys.executable).parent / "eventconv")
RNG = np.random.default_rng(20)


def kernel(cout, cin, k):
    return RNG.integers(-3, 4, (cout, cin, k, k)).tolist()


def network_config(channels_in=2, **events):
    """Two layers on a 48 x 64 input; ``events`` as given (none: no events object)."""
    obj = {"height": 48, "width": 64, "channels_in": channels_in, "threshold": 1,
           "layers": [{"channels_out": 4, "kernel_size": 3, "weights": kernel(4, channels_in, 3),
                       "bias": [0, 5, -5, 10], "shift": 1},
                      {"channels_out": 2, "kernel_size": 3, "weights": kernel(2, 4, 3),
                       "shift": 2, "pool": 1}]}
    return {**obj, "events": events} if events else obj


def layer_config(channels_in=1, **events):
    """One layer on a 32 x 32 input (the one-layer form)."""
    obj = {"height": 32, "width": 32, "channels_in": channels_in, "channels_out": 3,
           "kernel_size": 3, "weights": kernel(3, channels_in, 3), "shift": 2, "threshold": 2}
    return {**obj, "events": events} if events else obj


def write(tmp_path, obj, name="cfg.json"):
    path = tmp_path / name
    path.write_text(json.dumps(obj))
    return path


def run(*args):
    return main([str(a) for a in args])


def refuse(capsys, *args):
    assert run(*args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("eventconv: error: "), err
    return err


CASES = [
    (EVK4, network_config(2, window_us=5000, step=8, downsample=8)),
    (EVK4, layer_config(1, window_us=10_000, downsample=20)),
    (DAVIS, network_config(1, window_us=20_000, step=4, downsample=4)),
    (DAVIS, layer_config(2, window_us=40_000, step=255, downsample=8)),
]


@pytest.mark.parametrize("name, config", CASES)
def test_events_run_exactly_as_their_frames(name, config, tmp_path, capsys):
    cfg = write(tmp_path, config)
    network = Network.from_dict(config)
    frames, dropped = count_frames(read_recording(bundled(name)), network.events,
                                   height=config["height"], width=config["width"],
                                   channels_in=config["channels_in"])
    assert run("run", "--config", cfg, "--events", bundled(name), "--backend", "model",
               "--out", tmp_path / "events.npz") == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0] == (f"--events: {len(read_recording(bundled(name)))} "
                      f"{'evt3' if name == EVK4 else 'aedat4'} events in {len(frames)} windows "
                      f"of {config['events']['window_us']} us; {dropped} outside the "
                      f"{config['height']} x {config['width']} frame dropped")
    # The same frames, given as FRAMES.npy (T, H, W for one channel).
    frames_npy = tmp_path / "frames.npy"
    np.save(frames_npy, frames[:, 0] if config["channels_in"] == 1 else frames)
    assert run("run", "--config", cfg, "--frames", frames_npy, "--backend", "model",
               "--out", tmp_path / "frames.npz", "--quiet") == 0
    by_events, by_frames = np.load(tmp_path / "events.npz"), np.load(tmp_path / "frames.npz")
    expected = run_model(network, np.load(frames_npy))
    assert sorted(by_events.files) == sorted(by_frames.files) == sorted(expected)
    for key in expected:
        assert by_events[key].dtype == expected[key].dtype
        np.testing.assert_array_equal(by_events[key], by_frames[key])
        np.testing.assert_array_equal(by_events[key], expected[key])
    assert len(by_events["events_in"]) == len(frames) > 1
    assert by_events["events_in"].sum() > 0


def test_dropped_count_is_reported_and_quiet_silences_it(tmp_path, capsys):
    cfg = write(tmp_path, network_config(2, window_us=5000, downsample=8))
    assert run("run", "--config", cfg, "--events", bundled(EVK4), "--backend", "model",
               "--out", tmp_path / "out.npz") == 0
    line = capsys.readouterr().err.splitlines()[0]
    dropped = int(line.split("; ")[1].split()[0])
    assert dropped == 2418 and line.endswith("outside the 48 x 64 frame dropped")
    assert run("run", "--config", cfg, "--events", bundled(EVK4), "--backend", "model",
               "--out", tmp_path / "quiet.npz", "--quiet") == 0
    assert capsys.readouterr().err == ""


def test_npy_recording_runs_like_the_recording_it_came_from(tmp_path):
    recording = read_recording(bundled(DAVIS))
    npy = write_npy(tmp_path / "davis.npy", recording.t, recording.x, recording.y, recording.p)
    cfg = write(tmp_path, layer_config(2, window_us=25_000, downsample=8))
    for source, out in ((bundled(DAVIS), "a.npz"), (npy, "b.npz")):
        assert run("run", "--config", cfg, "--events", source, "--backend", "model",
                   "--out", tmp_path / out, "--quiet") == 0
    a, b = np.load(tmp_path / "a.npz"), np.load(tmp_path / "b.npz")
    for key in a.files:
        np.testing.assert_array_equal(a[key], b[key])


def test_frames_ignore_the_events_object(tmp_path):
    plain = layer_config(1)
    frames = tmp_path / "frames.npy"
    np.save(frames, RNG.integers(0, 256, (3, 32, 32), dtype=np.uint8))
    for name, obj in (("plain", plain), ("events", {**plain, "events": {"window_us": 1}})):
        assert run("run", "--config", write(tmp_path, obj, f"{name}.json"), "--frames", frames,
                   "--backend", "model", "--out", tmp_path / f"{name}.npz", "--quiet") == 0
    a, b = np.load(tmp_path / "plain.npz"), np.load(tmp_path / "events.npz")
    for key in a.files:
        np.testing.assert_array_equal(a[key], b[key])


def test_subprocess_runs_a_recording(tmp_path):
    cfg = write(tmp_path, network_config(2, window_us=10_000, downsample=10))
    out = tmp_path / "out.npz"
    proc = subprocess.run([EVENTCONV, "run", "--config", str(cfg), "--events",
                           str(bundled(EVK4)), "--backend", "model", "--out", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.startswith("--events: 26256 evt3 events in 4 windows of 10000 us; ")
    assert np.load(out)["output"].shape == (4, 2, 24, 32)


def test_rtl_backend_runs_a_recording_as_the_model(tmp_path):
    config = {"height": 16, "width": 16, "channels_in": 2, "channels_out": 2, "kernel_size": 3,
              "weights": kernel(2, 2, 3), "bias": [3, -3],
              "events": {"window_us": 8000, "step": 32, "downsample": 32}}
    cfg = write(tmp_path, config)
    out = tmp_path / "rtl.npz"
    assert run("run", "--config", cfg, "--events", bundled(EVK4), "--backend", "rtl",
               "--out", out, "--quiet") == 0
    network = Network.from_dict(config)
    frames, dropped = count_frames(read_recording(bundled(EVK4)), network.events, height=16,
                                   width=16, channels_in=2)
    assert dropped > 0
    expected = run_model(network, frames)
    result = np.load(out)
    assert result["cycles"].shape == (len(frames),)
    for key in expected:
        np.testing.assert_array_equal(result[key], expected[key])


# ------------------------------------------------------------------------------ refusals


@pytest.mark.parametrize("name", BAD_RECORDINGS)
def test_bad_recording_exits_2_with_one_line_and_no_output(name, tmp_path, capsys):
    cfg = write(tmp_path, layer_config(2, window_us=1000))
    path = bad_recording(name, tmp_path)
    out = tmp_path / "out.npz"
    err = refuse(capsys, "run", "--config", cfg, "--events", path, "--backend", "model",
                 "--out", out)
    assert err.startswith("eventconv: error: --events: ")
    assert BAD_RECORDINGS[name][1] in err
    assert not out.exists()


def test_events_without_an_events_object_exit_2(tmp_path, capsys):
    out = tmp_path / "out.npz"
    for obj in (layer_config(1), network_config(2)):
        err = refuse(capsys, "run", "--config", write(tmp_path, obj), "--events",
                     bundled(DAVIS), "--backend", "model", "--out", out)
        assert "--events needs an 'events' object in the config" in err
        assert '"window_us": W (>= 1)' in err
        assert not out.exists()


@pytest.mark.parametrize("events, message", [
    ({"window_us": 0}, "events.window_us must be an integer >= 1, not 0"),
    ({"window_us": 100, "step": 300}, "events.step must be an integer in 1..255, not 300"),
    ({"window_us": 100, "downsample": 128},
     "events.downsample must be an integer in 1..64, not 128"),
    ({"window_us": 100, "bins": 3}, "unknown field 'events.bins'"),
    ({"downsample": 2}, "missing field 'events.window_us'"),
])
@pytest.mark.parametrize("form", [layer_config, network_config])
def test_bad_events_object_exits_2_naming_the_field(form, events, message, tmp_path, capsys):
    obj = {**form(2), "events": events}
    out = tmp_path / "out.npz"
    err = refuse(capsys, "run", "--config", write(tmp_path, obj), "--events", bundled(EVK4),
                 "--backend", "model", "--out", out)
    assert message in err
    assert not out.exists()


def test_events_with_three_channels_exit_2(tmp_path, capsys):
    err = refuse(capsys, "run", "--config", write(tmp_path, layer_config(3, window_us=10)),
                 "--events", bundled(EVK4), "--backend", "model", "--out", tmp_path / "o.npz")
    assert "channels_in must be 1 (both polarities together) or 2 (OFF, ON)" in err


def test_too_many_windows_exit_2(tmp_path, capsys):
    out = tmp_path / "out.npz"
    cfg = write(tmp_path, {**layer_config(2), "height": 2048, "width": 2048,
                           "weights": kernel(3, 2, 3), "events": {"window_us": 1}})
    err = refuse(capsys, "run", "--config", cfg, "--events", bundled(EVK4), "--backend",
                 "model", "--out", out)
    assert "events.window_us = 1 cuts this recording (37679 us) into 37680 windows" in err
    assert not out.exists()


def test_frames_and_events_are_exclusive(tmp_path, capsys):
    cfg = write(tmp_path, layer_config(1, window_us=100))
    frames = tmp_path / "frames.npy"
    np.save(frames, np.zeros((2, 32, 32), np.uint8))
    out = tmp_path / "out.npz"
    err = refuse(capsys, "run", "--config", cfg, "--frames", frames, "--events", bundled(DAVIS),
                 "--backend", "model", "--out", out)
    assert "not allowed with argument" in err
    err = refuse(capsys, "run", "--config", cfg, "--backend", "model", "--out", out)
    assert "one of the arguments --frames --events is required" in err
    assert not out.exists()


def test_subprocess_bad_recording_single_line(tmp_path):
    cfg = write(tmp_path, layer_config(1, window_us=100))
    rec = tmp_path / "rec.raw"
    rec.write_bytes(b"% evt 2.0\n" + bytes(32))
    out = tmp_path / "out.npz"
    proc = subprocess.run([EVENTCONV, "run", "--config", str(cfg), "--events", str(rec),
                           "--backend", "model", "--out", str(out)], capture_output=True,
                          text=True)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == (f"eventconv: error: --events: {rec} is a Prophesee RAW file in EVT2; "
                           f"only EVT3 (EVT 3.0) is read\n")
    assert not out.exists()
