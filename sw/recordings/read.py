"""Event-camera recordings read through the camera makers' formats' maintained libraries.

:func:`read_recording` tells the format from the file's first bytes (not its name):

- iniVation AEDAT4 (``#!AER-DAT4.0``), decoded by ``aedat`` (MIT, International Centre for
  Neuromorphic Systems); the events of the file's first event stream (lowest stream id) are
  read, other streams (frames, IMU, triggers) are skipped;
- Prophesee RAW in EVT 3.0 (a ``%`` header naming ``evt 3.0`` or ``format EVT3``), decoded by
  ``evt3`` (MIT); the header is checked here, since the decoder takes any bytes for EVT3;
- a ``.npy`` structured array with integer fields ``t``, ``x``, ``y``, ``p`` (numpy, no
  pickles); other fields are ignored.

Every recording is then checked the same way: at least one event, ``p`` 0 (OFF) or 1 (ON),
times (microseconds) never going backwards. A file that fails is refused with a
:class:`RecordingError`: one line naming the file and the fault.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eventconv.core.ranges import ConfigError

__all__ = ["Recording", "RecordingError", "read_recording", "FORMATS"]

#: The formats read, by the name a :class:`Recording` carries.
FORMATS = ("aedat4", "evt3", "npy")
NPY_FIELDS = ("t", "x", "y", "p")
_AEDAT4_MAGIC = b"#!AER-DAT4.0"
_NPY_MAGIC = b"\x93NUMPY"
# Times within +-2^62 us, so that any two differ by less than int64's range.
_T_LIMIT = 1 << 62


class RecordingError(ConfigError):
    """A recording that cannot be read: missing, of an unknown format, corrupt or truncated,
    empty, with times going backwards or a polarity other than 0/1."""


@dataclass(frozen=True, eq=False)
class Recording:
    """The events of a recording, in time order.

    Attributes
    ----------
    t : int64 array, microseconds, never decreasing
    x, y : int64 arrays, the sensor pixel (column, row)
    p : uint8 array, 1 for ON and 0 for OFF
    format : one of :data:`FORMATS`
    sensor : (width, height) the file declares, or None (``.npy``)
    """

    t: np.ndarray
    x: np.ndarray
    y: np.ndarray
    p: np.ndarray
    format: str
    sensor: tuple | None = None

    def __len__(self):
        return len(self.t)

    @property
    def duration_us(self):
        """Time from the first event to the last."""
        return int(self.t[-1] - self.t[0])


def read_recording(path):
    """The :class:`Recording` in the file ``path`` (AEDAT4, EVT3 ``.raw`` or ``.npy``)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(len(_AEDAT4_MAGIC))
    except FileNotFoundError:
        raise RecordingError(f"no such file: {path}") from None
    except OSError as e:
        raise RecordingError(f"cannot read {path}: {e.strerror}") from None
    if not head:
        raise RecordingError(f"{path} is empty (0 bytes): a recording holds at least one event")
    if head.startswith(_AEDAT4_MAGIC):
        return _read_aedat4(path)
    if head.startswith(b"#!AER-DAT"):
        version = head[len("#!AER-DAT"):].decode("ascii", "replace")
        raise RecordingError(f"{path} is AEDAT {version}; only AEDAT 4.0 is read (DV converts "
                             f"older AEDAT files to AEDAT4)")
    if head.startswith(_NPY_MAGIC):
        return _read_npy(path)
    if head.startswith(b"%"):
        return _read_evt3(path)
    raise RecordingError(f"{path} is not a recording this version reads: not AEDAT4 "
                         f"(#!AER-DAT4.0), not a Prophesee EVT3 .raw (% header) and not a .npy "
                         f"structured array with fields t, x, y, p")


def _one_line(error):
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _read_aedat4(path):
    import aedat

    try:
        decoder = aedat.Decoder(str(path))
        streams = decoder.id_to_stream()
        ids = sorted(i for i, stream in streams.items() if stream.get("type") == "events")
        packets = ([packet["events"] for packet in decoder
                    if packet["stream_id"] == ids[0] and "events" in packet] if ids else [])
    except (OSError, RuntimeError, ValueError) as e:
        raise RecordingError(f"{path}: corrupt or truncated AEDAT4 file ({_one_line(e)})") \
            from None
    if not ids:
        kinds = ", ".join(sorted({s.get("type", "?") for s in streams.values()})) or "none"
        raise RecordingError(f"{path}: this AEDAT4 file has no event stream (streams: {kinds})")
    sensor = (streams[ids[0]].get("width"), streams[ids[0]].get("height"))
    if not packets:
        return _checked(path, "aedat4", sensor, *(np.zeros(0, np.int64) for _ in range(4)))
    events = np.concatenate(packets)
    return _checked(path, "aedat4", sensor, events["t"], events["x"], events["y"],
                    events["on"])


def _raw_header(path):
    """The ``%`` header lines of a Prophesee RAW file, and the number of bytes after them."""
    lines, size = [], path.stat().st_size
    with open(path, "rb") as f:
        while f.peek(1)[:1] == b"%":
            line = f.readline()
            lines.append(line.decode("ascii", "replace").strip())
            if line.startswith(b"% end"):
                break
        return lines, size - f.tell()


def _raw_format(path, lines):
    """The event format the header names, upper case (``EVT3``, ``EVT2``, ...), or None."""
    for line in lines:
        words = line[1:].split(None, 1)
        if len(words) == 2 and words[0] == "format":
            return words[1].split(";")[0].strip().upper()
    for line in lines:
        words = line[1:].split(None, 1)
        if len(words) == 2 and words[0] == "evt":
            return "EVT" + words[1].strip().replace(".0", "").replace(".", "")
    return None


def _read_evt3(path):
    import evt3

    lines, data_bytes = _raw_header(path)
    name = _raw_format(path, lines)
    if name is None:
        raise RecordingError(f"{path}: its % header names no event format (a Prophesee EVT3 "
                             f"file says '% evt 3.0' or '% format EVT3'); not read")
    if name != "EVT3":
        raise RecordingError(f"{path} is a Prophesee RAW file in {name}; only EVT3 (EVT 3.0) "
                             f"is read")
    if data_bytes == 0:
        raise RecordingError(f"{path}: EVT3 header without data: the recording holds no events")
    try:
        events = evt3.decode_file(str(path))
    except (OSError, RuntimeError, ValueError) as e:
        raise RecordingError(f"{path}: corrupt or truncated EVT3 file ({_one_line(e)})") \
            from None
    return _checked(path, "evt3", (int(events.sensor_width), int(events.sensor_height)),
                    events.t, events.x, events.y, events.p)


def _read_npy(path):
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as e:
        if "allow_pickle" not in str(e):
            raise RecordingError(f"{path}: corrupt or truncated .npy file ({_one_line(e)})") \
                from None
        raise RecordingError(f"{path} holds Python objects (pickles), which are not read; give "
                             f"a structured array with integer fields t, x, y, p") from None
    except (OSError, EOFError) as e:
        raise RecordingError(f"{path}: corrupt or truncated .npy file ({_one_line(e)})") \
            from None
    names = array.dtype.names or ()
    if any(name not in names for name in NPY_FIELDS):
        raise RecordingError(f"{path} must hold a structured array with integer fields t, x, "
                             f"y, p (one record per event), not dtype {array.dtype}")
    if array.ndim != 1:
        raise RecordingError(f"{path} must hold a one-dimensional array (one record per event), "
                             f"not shape {array.shape}")
    for name in NPY_FIELDS:
        kinds = "iub" if name == "p" else "iu"
        field = array.dtype.fields[name][0]
        if field.kind not in kinds or field.shape:
            raise RecordingError(f"{path}: field {name} must hold one integer per event, not "
                                 f"{field}")
    return _checked(path, "npy", None, array["t"], array["x"], array["y"], array["p"])


def _checked(path, fmt, sensor, t, x, y, p):
    """A :class:`Recording` of these columns, or the RecordingError of the first fault."""
    t, x, y, p = (np.asarray(a) for a in (t, x, y, p))
    if len(t) == 0:
        raise RecordingError(f"{path} holds no events (an empty recording)")
    p_bad = np.flatnonzero((p != 0) & (p != 1))
    if len(p_bad):
        i = int(p_bad[0])
        raise RecordingError(f"{path}: polarity p must be 0 (OFF) or 1 (ON); event {i} has "
                             f"p = {p[i]}")
    if t.max() > _T_LIMIT or (t.dtype.kind == "i" and t.min() < -_T_LIMIT):
        raise RecordingError(f"{path}: timestamps out of range ({t.min()}..{t.max()} us)")
    t = t.astype(np.int64)
    back = np.flatnonzero(t[1:] < t[:-1])
    if len(back):
        i = int(back[0]) + 1
        raise RecordingError(f"{path}: timestamps go backwards: event {i} at t = {t[i]} us "
                             f"comes after t = {t[i - 1]} us")
    return Recording(t=t, x=x.astype(np.int64), y=y.astype(np.int64), p=p.astype(np.uint8),
                     format=fmt, sensor=sensor)
