"""Event-camera recordings: files in, count frames out (SPEC "Event-camera input").

:func:`read_recording` reads iniVation AEDAT4, Prophesee EVT3 ``.raw`` and ``.npy`` structured
arrays (:mod:`.read`); :func:`count_frames` turns a recording and the config's ``events`` object
into the frames a network runs on (:mod:`.frames`). :mod:`.excerpts` holds the real recordings
bundled for the tests and the script that cuts them from their sources.
"""

from .frames import MAX_FRAME_SAMPLES, Binned, bin_events, count_frames
from .read import FORMATS, Recording, RecordingError, read_recording

__all__ = ["read_recording", "Recording", "RecordingError", "FORMATS", "count_frames",
           "bin_events", "Binned", "MAX_FRAME_SAMPLES"]
