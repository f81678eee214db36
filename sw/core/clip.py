"""The real test clip: an excerpt of OpenCV's ``vtest.avi``, grayscale and downscaled.

``vtest.avi`` (768x576, 795 frames, a fixed camera watching people walk) ships in Debian's
``opencv-doc`` package under Apache-2.0 / BSD-3-Clause with OpenCV; the excerpts committed in
``sw/data/`` keep that licence (see ``sw/data/LICENSE.vtest``).

Regenerate them (needs the Debian package and PyAV, ``pip install av``)::

    apt-get download opencv-doc
    dpkg-deb --fsys-tarfile opencv-doc_*.deb \
        | tar -x ./usr/share/doc/opencv-doc/examples/data/vtest.avi
    python -m eventconv.core.clip ./usr/share/doc/opencv-doc/examples/data/vtest.avi
"""

import sys
from pathlib import Path

import numpy as np

DATA = Path(__file__).parent / "data"
FIRST_FRAME = 100
FRAME_COUNT = 60
# name -> (height, width, crop): crop to the aspect ratio, then average whole pixel blocks.
CLIPS = {"vtest_64x48": (48, 64), "vtest_32x32": (32, 32)}


def load_clip(name="vtest_64x48"):
    """A committed clip as uint8 (T, H, W)."""
    return np.load(DATA / f"{name}.npy")


def played_back_and_forth(clip, count, start=0):
    """``count`` frames of ``clip`` played forwards then backwards in turn, from frame
    ``start`` of that loop: any number of frames of real motion, a jump at each turn."""
    loop = np.concatenate([clip, clip[::-1]])
    return np.resize(np.roll(loop, -start, axis=0), (count, *clip.shape[1:]))


def _downscale(gray, height, width):
    h, w = gray.shape
    block = min(h // height, w // width)
    top, left = (h - block * height) // 2, (w - block * width) // 2
    crop = gray[top:top + block * height, left:left + block * width].astype(np.float64)
    small = crop.reshape(height, block, width, block).mean(axis=(1, 3))
    return np.clip(np.rint(small), 0, 255).astype(np.uint8)


def make_clips(avi_path):
    import av

    frames = []
    with av.open(str(avi_path)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index >= FIRST_FRAME + FRAME_COUNT:
                break
            if index >= FIRST_FRAME:
                frames.append(frame.to_ndarray(format="gray"))
    DATA.mkdir(exist_ok=True)
    for name, (height, width) in CLIPS.items():
        clip = np.stack([_downscale(f, height, width) for f in frames])
        np.save(DATA / f"{name}.npy", clip)
        print(f"{name}.npy: {clip.shape} {clip.dtype}")


if __name__ == "__main__":
    make_clips(sys.argv[1])
