"""The soak (``make soak``): its chunks run as tasks on a real Dask LocalCluster of 2 worker
processes, and a frame counts as mismatched when any of its arrays differs from the model's."""

import numpy as np

from eventconv.bench.soak import mismatched_frames, soak, soak_frames
from eventconv.core.clip import load_clip, played_back_and_forth
from eventconv.core.kernels import filter_bank_config
from eventconv.core.model import run_model


def test_a_frame_mismatches_when_any_of_its_arrays_differs():
    config = filter_bank_config(8, 8, channels_out=2, threshold=8)
    frames = load_clip("vtest_32x32")[:4, :8, :8].copy()
    model = run_model(config, frames)
    assert not mismatched_frames(model, model, 4).any()
    for key in model:
        changed = {k: v.copy() for k, v in model.items()}
        changed[key].reshape(4, -1)[2, -1] += 1
        assert mismatched_frames(changed, model, 4).tolist() == [False, False, True, False]
    dropped = next(iter(model))
    missing = {k: v for k, v in model.items() if k != dropped}
    assert mismatched_frames(missing, model, 4).all()


def test_soak_frames_play_the_clip_back_and_forth():
    clip = np.arange(3)[:, None, None] * np.ones((3, 2, 2), np.uint8)
    frames = soak_frames(clip, 9, np.random.default_rng(1))
    played = frames[:, 0, 0].tolist()
    loop = [0, 1, 2, 2, 1, 0]
    start = loop.index(played[0])
    assert played == [loop[(start + i) % 6] for i in range(9)]
    # From the first frame (the speed bench's longer-than-the-clip runs).
    assert played_back_and_forth(clip, 7)[:, 0, 0].tolist() == [0, 1, 2, 2, 1, 0, 0]


def test_soak_chunks_run_on_a_local_cluster_equal_to_the_model():
    config = filter_bank_config(12, 12, channels_out=2, threshold=8)
    clip = load_clip("vtest_32x32")[:, 4:16, 8:20].copy()
    lines = []
    assert soak(config, 5, chunk=2, workers=2, simulator="icarus", clip=clip,
                log=lines.append) == 0
    ranges = sorted(line.split()[2] for line in lines)
    assert ranges == ["0..1:", "2..3:", "4..4:"]
    assert all(" 0 mismatched " in line for line in lines)
