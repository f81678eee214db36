"""Output files and the defects a new user hit (issue 19): a wrong output name is refused before
any work, nothing half-written is left, the user's own files are never overwritten, and a
fault (full disk, Ctrl-C, a failed build) ends with one line."""

import json
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from eventconv.cli import main
from eventconv.core.kernels import filter_bank_config

EVENTCONV = str(Path(sys.executable).parent / "eventconv")


@pytest.fixture
def job(tmp_path):
    config = filter_bank_config(8, 8, channels_out=2, threshold=4)
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(config.to_dict()))
    frames = tmp_path / "frames.npy"
    np.save(frames, np.random.default_rng(0).integers(0, 256, (3, 8, 8), dtype=np.uint8))
    return cfg, frames


def refused(capsys, *args):
    assert main([str(a) for a in args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("eventconv: error: "), err
    return err


def files(folder):
    return sorted(p.name for p in Path(folder).iterdir())


def run_model(cfg, frames, out):
    return ["run", "--config", cfg, "--frames", frames, "--backend", "model", "--out", out]


@pytest.mark.parametrize("name, message", [
    ("out", "must end with .npz"), ("out.npy", "must end with .npz"),
    ("folder.npz", "is a folder"), ("cfg.json", "must end with .npz")])
def test_run_refuses_an_out_that_is_not_a_new_npz(job, capsys, tmp_path, name, message):
    cfg, frames = job
    (tmp_path / "folder.npz").mkdir()
    before = files(tmp_path)
    assert message in refused(capsys, *run_model(cfg, frames, tmp_path / name))
    assert files(tmp_path) == before


def test_run_refuses_to_overwrite_its_frames(job, capsys):
    cfg, frames = job
    frames_npz = frames.with_suffix(".npz")
    np.savez(frames_npz, frames=np.load(frames))
    refused(capsys, "run", "--config", cfg, "--frames", frames_npz, "--backend", "model",
            "--out", frames_npz)


@pytest.mark.parametrize("output, message", [
    ("engine.json", "must end with .v"), ("engine.md", "must end with .v"),
    ("folder.v", "is a folder")])
def test_export_never_overwrites_the_config_or_writes_elsewhere(job, capsys, tmp_path,
                                                                 output, message):
    cfg, _ = job
    (tmp_path / "folder.v").mkdir()
    config_text = cfg.read_text()
    before = files(tmp_path)
    assert message in refused(capsys, "export", "--config", cfg, "-o", tmp_path / output)
    assert cfg.read_text() == config_text and files(tmp_path) == before


def test_export_beside_its_own_config_keeps_the_config(job, capsys, tmp_path):
    # --config cfg.json -o cfg.v: the configuration written beside the Verilog would be the
    # input itself, which already is it; it is left as the user wrote it.
    cfg, _ = job
    config_bytes = cfg.read_bytes()
    assert main(["export", "--config", str(cfg), "-o", str(tmp_path / "cfg.v")]) == 0
    assert capsys.readouterr().out.split() == [str(tmp_path / "cfg.v"), str(tmp_path / "cfg.md")]
    assert cfg.read_bytes() == config_bytes
    assert "module eventconv_engine" in (tmp_path / "cfg.v").read_text()
    assert "cfg.json" in (tmp_path / "cfg.md").read_text()


@pytest.mark.parametrize("name", ["1bad", "a-b", "module", "", "x" * 200])
def test_export_refuses_a_name_that_is_not_a_verilog_identifier(job, capsys, tmp_path, name):
    cfg, _ = job
    assert "--name must be a Verilog identifier" in refused(
        capsys, "export", "--config", cfg, "-o", tmp_path / "e.v", "--name", name)
    assert not (tmp_path / "e.v").exists()


def test_duplicate_config_fields_are_refused(job, capsys, tmp_path):
    cfg, frames = job
    text = cfg.read_text().replace('"height": 8', '"height": 8, "height": 9', 1)
    assert text != cfg.read_text()
    cfg.write_text(text)
    assert "'height' is given twice" in refused(capsys, *run_model(cfg, frames,
                                                                   tmp_path / "o.npz"))


def test_npy_header_promising_terabytes_is_refused_without_allocating(job, capsys, tmp_path):
    cfg, _ = job
    big = tmp_path / "big.npy"
    with open(big, "wb") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": "|u1", "fortran_order": False, "shape": (1000, 1000, 1000, 1600)})
        f.write(b"\0" * 64)
    assert "is truncated" in refused(capsys, *run_model(cfg, big, tmp_path / "o.npz"))


def test_synth_build_dir_that_is_a_file_is_refused(job, capsys, tmp_path):
    cfg, _ = job
    (tmp_path / "afile").write_text("")
    assert "is a file" in refused(capsys, "synth", "--board", "icebreaker", "--config", cfg,
                                  "--build-dir", tmp_path / "afile")


def _small_files():
    # Any write past 200 bytes fails with EFBIG, as a full disk would fail it (no mock: the
    # kernel refuses the write).
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (200, 200))


def test_a_write_that_fails_leaves_nothing_and_says_one_line(job, tmp_path):
    # export and import stage their files the same way (eventconv.core.outputs); export's
    # Yosys (WebAssembly) cannot start under this limit, so run stands for all three.
    cfg, frames = job
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.run([EVENTCONV, *map(str, run_model(cfg, frames, out / "o.npz"))],
                          preexec_fn=_small_files, capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "cannot write" in proc.stderr, proc.stderr
    assert files(out) == []


def test_ctrl_c_is_one_line_and_leaves_no_output(job, tmp_path):
    cfg, frames = job
    np.save(frames, np.zeros((400, 8, 8), np.uint8))
    out = tmp_path / "o.npz"
    proc = subprocess.Popen([EVENTCONV, *map(str, ["run", "--config", cfg, "--frames", frames,
                                                  "--backend", "rtl", "--out", out])],
                            stderr=subprocess.PIPE, text=True)
    time.sleep(4)   # inside the simulation by now (imports take about 2 s)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "eventconv: interrupted", err
    assert "Traceback" not in err and not out.exists()
