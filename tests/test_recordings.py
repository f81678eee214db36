"""Event-camera recordings (SPEC "Event-camera input"): the readers on the bundled real
recordings, the frames against an independent reference of the rules, the same events read
back from every format, the config's ``events`` object, and every bad recording refused."""

import hashlib
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventconv.core.config import EventsConfig
from eventconv.core.network import Network
from eventconv.core.ranges import ConfigError
from eventconv.recordings import (
    FORMATS,
    MAX_FRAME_SAMPLES,
    Recording,
    RecordingError,
    bin_events,
    count_frames,
    read_recording,
)
from eventconv.recordings.excerpts import DATA, EXCERPTS, SOURCES, bundled

DAVIS, EVK4 = "davis346.aedat4", "evk4.raw"

# What the bundled files hold, counted once when they were cut (see excerpts.py).
EXPECTED = {
    DAVIS: dict(format="aedat4", events=7864, on=4197, sensor=(346, 260),
                first=1589163147368868, last=1589163147568861),
    EVK4: dict(format="evt3", events=26256, on=13004, sensor=(1280, 720),
               first=11200224, last=11237903),
}


def columns(recording):
    return recording.t, recording.x, recording.y, recording.p


def reference_frames(t, x, y, p, *, window_us, step=1, downsample=1, height, width,
                     channels_in):
    """The SPEC's rules, event by event in plain Python: (frames, dropped)."""
    t, x, y, p = (np.asarray(a).tolist() for a in (t, x, y, p))
    windows = (t[-1] - t[0]) // window_us + 1
    counts = np.zeros((windows, channels_in, height, width), dtype=np.int64)
    dropped = 0
    for ti, xi, yi, pi in zip(t, x, y, p, strict=True):
        row, col = yi // downsample, xi // downsample
        if not (0 <= row < height and 0 <= col < width):
            dropped += 1
            continue
        counts[(ti - t[0]) // window_us, pi if channels_in == 2 else 0, row, col] += 1
    return np.minimum(255, step * counts).astype(np.uint8), dropped


# EVT 3.0 words, written here only to make test files (the reader is the evt3 library).
EVT3_HEADER = "% evt 3.0\n% format EVT3;height=720;width=1280\n% geometry 1280x720\n% end\n"


def evt3_bytes(t, x, y, p, header=EVT3_HEADER):
    """A Prophesee EVT 3.0 file of these events (times below 2^24 us: no time wrap)."""
    words, high, low, row = [], None, None, None
    for ti, xi, yi, pi in zip(*(np.asarray(a).tolist() for a in (t, x, y, p)), strict=True):
        if ti >> 12 != high:
            high, low = ti >> 12, None
            words.append(0x8000 | high)          # TIME_HIGH
        if ti & 0xFFF != low:
            low = ti & 0xFFF
            words.append(0x6000 | low)           # TIME_LOW
        if yi != row:
            row = yi
            words.append(yi)                     # EVT_ADDR_Y
        words.append(0x2000 | pi << 11 | xi)     # EVT_ADDR_X: one event
    return header.encode() + np.array(words, "<u2").tobytes()


def aedat4_writer(path, config):
    """Write an AEDAT4 file at ``path`` through ``write(writer)`` with iniVation's writer
    (dv-processing), which takes only names ending in .aedat4."""
    import dv_processing as dv

    def write(*steps):
        named = path.with_name(path.name + ".aedat4")
        writer = dv.io.MonoCameraWriter(str(named), config)
        for step in steps:
            step(writer)
        del writer  # closes the file
        named.replace(path)
    return write


def write_aedat4(path, t, x, y, p, size=(1280, 720)):
    """An AEDAT4 file of these events (events only)."""
    import dv_processing as dv

    store = dv.EventStore()
    for ti, xi, yi, pi in zip(*(np.asarray(a).tolist() for a in (t, x, y, p)), strict=True):
        store.push_back(ti, xi, yi, bool(pi))
    write = aedat4_writer(path, dv.io.MonoCameraWriter.EventOnlyConfig("test", size))
    write(lambda writer: writer.writeEvents(store)) if len(store) else write()


def write_npy(path, t, x, y, p, dtypes=("<i8", "<u2", "<u2", "u1")):
    array = np.zeros(len(t), dtype=list(zip("txyp", dtypes, strict=True)))
    for name, column in zip("txyp", (t, x, y, p), strict=True):
        array[name] = column
    with open(path, "wb") as f:  # np.save would add .npy to another name
        np.save(f, array)
    return path


# ---------------------------------------------------------------- the bundled recordings


def test_bundled_files_are_the_committed_excerpts_with_licences():
    total = 0
    for name, digest in EXCERPTS.items():
        data = bundled(name).read_bytes()
        total += len(data)
        assert hashlib.sha256(data).hexdigest() == digest, name
        licence = (DATA / f"LICENSE.{name.split('.')[0]}").read_text()
        assert SOURCES[name] in licence and "excerpts.py" in licence
    assert total < 300_000
    assert "MIT License" in (DATA / "LICENSE.davis346").read_text()
    assert "GNU LESSER GENERAL PUBLIC LICENSE" in (DATA / "LICENSE.evk4").read_text()
    with pytest.raises(ValueError, match="no bundled recording"):
        bundled("nope.raw")


@pytest.mark.parametrize("name", [DAVIS, EVK4])
def test_bundled_recordings_read_as_real_camera_data(name):
    recording = read_recording(bundled(name))
    want = EXPECTED[name]
    assert recording.format == want["format"] and recording.sensor == want["sensor"]
    assert len(recording) == want["events"] and int(recording.p.sum()) == want["on"]
    assert (int(recording.t[0]), int(recording.t[-1])) == (want["first"], want["last"])
    assert recording.duration_us == want["last"] - want["first"]
    for column in columns(recording):
        assert column.shape == (want["events"],)
    assert recording.t.dtype == np.int64 and recording.p.dtype == np.uint8
    assert np.all(np.diff(recording.t) >= 0)
    width, height = want["sensor"]
    assert recording.x.min() >= 0 and recording.x.max() < width
    assert recording.y.min() >= 0 and recording.y.max() < height
    # A real scene: many pixels, both polarities, events at many distinct times.
    assert len(set(zip(recording.x.tolist(), recording.y.tolist(), strict=True))) > 1000
    assert len(np.unique(recording.t)) > 1000


def test_evk4_excerpt_is_the_camera_s_own_evt3_file():
    head = bundled(EVK4).read_bytes()[:300].decode("ascii", "replace")
    for line in ("% evt 3.0", "% geometry 1280x720", "% plugin_name hal_plugin_imx636_evk4",
                 "% serial_number 00050567"):
        assert line in head


def test_davis346_excerpt_reads_the_same_through_inivation_s_decoder():
    import dv_processing as dv

    reader = dv.io.MonoCameraRecording(str(bundled(DAVIS)))
    assert reader.getCameraName() == "DAVIS346_00000002"
    assert tuple(reader.getEventResolution()) == (346, 260)
    packets = []
    while (batch := reader.getNextEventBatch()) is not None:
        packets.append(batch.numpy())
    theirs = np.concatenate(packets)
    ours = read_recording(bundled(DAVIS))
    np.testing.assert_array_equal(theirs["timestamp"], ours.t)
    np.testing.assert_array_equal(theirs["x"], ours.x)
    np.testing.assert_array_equal(theirs["y"], ours.y)
    np.testing.assert_array_equal(theirs["polarity"], ours.p)


# Window, step and downsample; frame size; channels: chosen so that some cases drop events
# (the frame covers part of the sensor) and some saturate at 255.
FRAME_CASES = [
    (dict(window_us=5000), 48, 64, 2, 8),
    (dict(window_us=2500, step=16, downsample=4), 48, 64, 1, 4),
    (dict(window_us=20_000, step=255, downsample=16), 32, 32, 2, 16),
    (dict(window_us=1000, step=3), 16, 16, 2, 1),
    (dict(window_us=10**9, step=1, downsample=64), 8, 8, 1, 64),
]


@pytest.mark.parametrize("name", [DAVIS, EVK4])
@pytest.mark.parametrize("case", FRAME_CASES)
def test_frames_of_real_recordings_follow_the_rules(name, case):
    fields, height, width, channels, downsample = case
    fields = {**fields, "downsample": downsample}
    recording = read_recording(bundled(name))
    events = EventsConfig.from_dict(fields)
    frames, dropped = count_frames(recording, events, height=height, width=width,
                                   channels_in=channels)
    want, want_dropped = reference_frames(*columns(recording), height=height, width=width,
                                          channels_in=channels, **fields)
    assert frames.dtype == np.uint8 and frames.shape == want.shape
    np.testing.assert_array_equal(frames, want)
    assert dropped == want_dropped
    assert frames.shape[0] == recording.duration_us // fields["window_us"] + 1


def test_real_recordings_exercise_dropping_saturation_and_empty_windows():
    evk4 = read_recording(bundled(EVK4))
    frames, dropped = count_frames(evk4, EventsConfig(window_us=2000, step=255, downsample=8),
                                   height=48, width=64, channels_in=2)
    assert 0 < dropped < len(evk4)
    assert (frames == 255).any()
    davis = read_recording(bundled(DAVIS))
    frames, dropped = count_frames(davis, EventsConfig(window_us=1, downsample=64), height=8,
                                   width=8, channels_in=1)
    assert frames.shape[0] == davis.duration_us + 1 and dropped == 0
    assert not frames.reshape(len(frames), -1).any(axis=1).all()  # empty windows kept
    assert int(frames.sum(dtype=np.int64)) == len(davis)  # step 1, no count near 255 in 1 us


def test_bin_events_gives_the_kept_events_in_recording_order():
    recording = read_recording(bundled(EVK4))
    events = EventsConfig(window_us=4000, downsample=10)
    binned = bin_events(recording, events, height=40, width=60, channels_in=2)
    keep = (recording.y // 10 < 40) & (recording.x // 10 < 60)
    assert binned.dropped == int((~keep).sum()) > 0
    np.testing.assert_array_equal(binned.window, ((recording.t - recording.t[0]) // 4000)[keep])
    np.testing.assert_array_equal(binned.channel, recording.p[keep])
    np.testing.assert_array_equal(binned.y, recording.y[keep] // 10)
    np.testing.assert_array_equal(binned.x, recording.x[keep] // 10)
    assert binned.windows == recording.duration_us // 4000 + 1


def test_frames_refuse_what_is_not_event_input():
    recording = read_recording(bundled(DAVIS))
    with pytest.raises(ConfigError, match="channels_in must be 1 .* or 2 .*not 3"):
        count_frames(recording, EventsConfig(window_us=10), height=8, width=8, channels_in=3)
    with pytest.raises(ConfigError, match="events must be an eventconv.core.config.EventsConfig"):
        count_frames(recording, {"window_us": 10}, height=8, width=8, channels_in=1)
    # window_us = 1 over 200 ms of a 260 x 346 frame is 18e9 samples: refused, not allocated.
    with pytest.raises(RecordingError, match=r"events.window_us = 1 cuts .* more than 2\^31"):
        count_frames(recording, EventsConfig(window_us=1), height=260, width=346, channels_in=2)


# ------------------------------------------------ the same events in every format read the same


def assert_same(a, b):
    for ca, cb in zip(columns(a), columns(b), strict=True):
        np.testing.assert_array_equal(ca, cb)


@pytest.mark.parametrize("name", [DAVIS, EVK4])
def test_real_events_written_as_npy_read_back_the_same(name, tmp_path):
    recording = read_recording(bundled(name))
    back = read_recording(write_npy(tmp_path / "events.npy", *columns(recording)))
    assert back.format == "npy" and back.sensor is None
    assert_same(back, recording)


def test_evk4_events_written_as_aedat4_read_back_the_same(tmp_path):
    recording = read_recording(bundled(EVK4))
    write_aedat4(tmp_path / "evk4.aedat4", *columns(recording), size=(1280, 720))
    back = read_recording(tmp_path / "evk4.aedat4")
    assert back.format == "aedat4" and back.sensor == (1280, 720)
    assert_same(back, recording)


def test_davis346_events_written_as_evt3_give_the_same_frames(tmp_path):
    davis = read_recording(bundled(DAVIS))
    t = davis.t - davis.t[0] + 5000  # EVT3 counts time from the camera's start
    path = tmp_path / "davis.raw"  # any name: the format comes from the content
    path.write_bytes(evt3_bytes(t, davis.x, davis.y, davis.p))
    back = read_recording(path)
    assert back.format == "evt3" and back.sensor == (1280, 720)
    np.testing.assert_array_equal(back.t, t)
    for ours, theirs in zip(columns(back)[1:], columns(davis)[1:], strict=True):
        np.testing.assert_array_equal(ours, theirs)
    events = EventsConfig(window_us=3000, step=40, downsample=4)
    size = dict(height=64, width=80, channels_in=2)
    np.testing.assert_array_equal(count_frames(back, events, **size)[0],
                                  count_frames(davis, events, **size)[0])


def test_aedat4_with_frames_imu_and_triggers_reads_its_event_stream(tmp_path):
    import aedat
    import dv_processing as dv

    recording = read_recording(bundled(DAVIS))
    path = tmp_path / "davis"
    store = dv.EventStore()
    for t, x, y, p in zip(*(c.tolist() for c in columns(recording)), strict=True):
        store.push_back(t, x, y, bool(p))
    last = int(recording.t[-1])
    write = aedat4_writer(path, dv.io.MonoCameraWriter.DAVISConfig("DAVIS346_test", (346, 260)))
    write(lambda writer: writer.writeFrame(dv.Frame(int(recording.t[0]),
                                                    np.zeros((260, 346), np.uint8))),
          lambda writer: writer.writeEvents(store),
          lambda writer: writer.writeImu(dv.IMU(last, 25.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0,
                                                0.0, 0.0)),
          lambda writer: writer.writeTrigger(
              dv.Trigger(last, dv.TriggerType.EXTERNAL_SIGNAL_RISING_EDGE)))
    assert {"events", "frame", "imus", "triggers"} <= {
        s["type"] for s in aedat.Decoder(str(path)).id_to_stream().values()}
    back = read_recording(path)
    assert back.sensor == (346, 260)
    assert_same(back, recording)


# ---------------------------------------------------------------------- Hypothesis: the rules


@st.composite
def event_lists(draw, max_coordinate=40, max_t=None):
    n = draw(st.integers(1, 60))
    start = draw(st.integers(-10**6, 10**6)) if max_t is None else draw(st.integers(0, 100))
    gaps = draw(st.lists(st.integers(0, 3000 if max_t is None else 2**16), min_size=n - 1,
                         max_size=n - 1))
    t = np.cumsum([start, *gaps]).astype(np.int64)
    if max_t is not None:
        t = np.minimum(t, max_t)
    coords = st.integers(-3 if max_t is None else 0, max_coordinate)
    x = np.array(draw(st.lists(coords, min_size=n, max_size=n)), np.int64)
    y = np.array(draw(st.lists(coords, min_size=n, max_size=n)), np.int64)
    p = np.array(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)), np.uint8)
    return t, x, y, p


@settings(max_examples=150, deadline=None)
@given(events=event_lists(), window=st.integers(1, 5000), step=st.integers(1, 255),
       downsample=st.integers(1, 8), height=st.integers(1, 7), width=st.integers(1, 7),
       channels=st.sampled_from([1, 2]))
def test_frames_equal_the_reference_on_any_events(events, window, step, downsample, height,
                                                  width, channels):
    t, x, y, p = events
    recording = Recording(t=t, x=x, y=y, p=p, format="npy")
    fields = dict(window_us=window, step=step, downsample=downsample)
    frames, dropped = count_frames(recording, EventsConfig(**fields), height=height,
                                   width=width, channels_in=channels)
    want, want_dropped = reference_frames(t, x, y, p, height=height, width=width,
                                          channels_in=channels, **fields)
    np.testing.assert_array_equal(frames, want)
    assert dropped == want_dropped


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=event_lists(max_coordinate=1279, max_t=(1 << 24) - 1))
def test_any_events_read_the_same_from_evt3_and_npy(events, tmp_path):
    t, x, y, p = events
    y = np.minimum(y, 719)
    raw, npy = tmp_path / "e.raw", tmp_path / "e.npy"
    raw.write_bytes(evt3_bytes(t, x, y, p))
    write_npy(npy, t, x, y, p, dtypes=("<u8", "<i4", "<i4", "<i1"))
    for path in (raw, npy):
        recording = read_recording(path)
        for ours, given_ in zip(columns(recording), (t, x, y, p), strict=True):
            np.testing.assert_array_equal(ours, given_)


# ------------------------------------------------------------------ the config's events object


def layer(channels_in=2, **extra):
    return {"height": 8, "width": 8, "channels_in": channels_in, "channels_out": 1,
            "kernel_size": 1, "weights": [[[[1]] for _ in range(channels_in)]], **extra}


def network(channels_in=2, **extra):
    return {"height": 8, "width": 8, "channels_in": channels_in, **extra,
            "layers": [{"channels_out": 1, "kernel_size": 1,
                        "weights": [[[[1]] for _ in range(channels_in)]]}]}


@pytest.mark.parametrize("form", [layer, network])
def test_events_object_is_read_in_both_forms_and_round_trips(form):
    net = Network.from_dict(form(events={"window_us": 1000, "step": 4, "downsample": 2}))
    assert net.events == EventsConfig(window_us=1000, step=4, downsample=2)
    again = Network.from_dict(json.loads(json.dumps(net.to_dict())))
    assert again.events == net.events
    assert Network.from_dict(form(events={"window_us": 7})).events == EventsConfig(7, 1, 1)
    assert Network.from_dict(form()).events is None
    assert "events" not in Network.from_dict(form()).to_dict()


@pytest.mark.parametrize("form", [layer, network])
@pytest.mark.parametrize("events, message", [
    ({"window_us": 0}, "events.window_us must be an integer >= 1, not 0"),
    ({"window_us": -5}, "events.window_us must be an integer >= 1, not -5"),
    ({"window_us": 1.5}, "events.window_us must be an integer >= 1, not 1.5"),
    ({"window_us": True}, "events.window_us must be an integer >= 1, not True"),
    ({"window_us": "100"}, "events.window_us must be an integer >= 1, not '100'"),
    ({"window_us": 10, "step": 0}, "events.step must be an integer in 1..255, not 0"),
    ({"window_us": 10, "step": 256}, "events.step must be an integer in 1..255, not 256"),
    ({"window_us": 10, "downsample": 0}, "events.downsample must be an integer in 1..64, not 0"),
    ({"window_us": 10, "downsample": 65},
     "events.downsample must be an integer in 1..64, not 65"),
    ({"window_us": 10, "polarity": 1},
     "unknown field 'events.polarity'; allowed fields: window_us, step, downsample"),
    ({"step": 2}, "missing field 'events.window_us'"),
    ([1000], "events must be a JSON object with window_us, step, downsample, not list"),
])
def test_bad_events_object_is_refused_naming_the_field(form, events, message):
    with pytest.raises(ConfigError) as info:
        Network.from_dict(form(events=events))
    assert str(info.value) == message


@pytest.mark.parametrize("form", [layer, network])
def test_events_need_one_or_two_input_channels(form):
    with pytest.raises(ConfigError, match="channels_in must be 1 .* or 2 .* 'events' object, "
                                          "not 3"):
        Network.from_dict(form(channels_in=3, events={"window_us": 10}))
    assert Network.from_dict(form(channels_in=1, events={"window_us": 10})).events


json_values = st.one_of(st.none(), st.booleans(), st.integers(-300, 300),
                        st.integers(-2**70, 2**70), st.floats(allow_nan=False),
                        st.text(max_size=3), st.lists(st.integers(), max_size=2))


@settings(max_examples=300, deadline=None)
@given(fields=st.dictionaries(st.sampled_from(["window_us", "step", "downsample", "extra"]),
                              json_values, max_size=4))
def test_events_object_accepted_exactly_when_every_field_is_in_range(fields):
    def ok(name, value, lo, hi=None):
        return (isinstance(value, int) and not isinstance(value, bool) and lo <= value
                and (hi is None or value <= hi))

    valid = ("extra" not in fields and "window_us" in fields
             and ok("window_us", fields["window_us"], 1)
             and ok("step", fields.get("step", 1), 1, 255)
             and ok("downsample", fields.get("downsample", 1), 1, 64))
    try:
        events = Network.from_dict(layer(events=fields)).events
    except ConfigError as e:
        assert not valid
        message = str(e)
        assert "\n" not in message
        assert any(f"events.{name}" in message for name in ("window_us", "step", "downsample",
                                                             "extra"))
    else:
        assert valid
        assert events.to_dict() == {"window_us": fields["window_us"],
                                    "step": fields.get("step", 1),
                                    "downsample": fields.get("downsample", 1)}


# ---------------------------------------------------------------------- bad recordings


def _evt3_backwards(path):
    path.write_bytes(evt3_bytes([5000, 6000, 4000], [1, 2, 3], [1, 1, 1], [1, 0, 1]))


def _evt3_backwards_within_time_high(path):
    path.write_bytes(evt3_bytes([300, 310, 200], [1, 2, 3], [1, 1, 1], [1, 0, 1]))


def _cut(name, size):
    def build(path):
        data = bundled(name).read_bytes()
        path.write_bytes(data[:size(len(data))])
    return build


def _garbled_aedat4(path):
    data = bytearray(bundled(DAVIS).read_bytes())
    data[1000:1100] = np.random.default_rng(0).integers(0, 256, 100, np.uint8).tobytes()
    path.write_bytes(bytes(data))


def _npy(dtypes=("<i8", "<u2", "<u2", "u1"), **columns_):
    def build(path):
        cols = {"t": [0, 10, 20], "x": [1, 2, 3], "y": [1, 2, 3], "p": [0, 1, 1], **columns_}
        write_npy(path, *(cols[c] for c in "txyp"), dtypes=dtypes)
    return build


def _npy_array(array):
    def build(path):
        with open(path, "wb") as f:
            np.save(f, array)
    return build


def _write(data):
    def build(path):
        path.write_bytes(data)
    return build


def _aedat4_without_events(path):
    write_aedat4(path, [], [], [], [], size=(32, 32))


def _aedat4_frames_only(path):
    import dv_processing as dv

    write = aedat4_writer(path, dv.io.MonoCameraWriter.FrameOnlyConfig("cam", (32, 32)))
    write(lambda writer: writer.writeFrame(dv.Frame(1000, np.zeros((32, 32), np.uint8))))


def _npz(path):
    with open(path, "wb") as f:
        np.savez(f, t=np.arange(3))


#: name -> (builder writing the file at a path, words the one-line message must hold).
BAD_RECORDINGS = {
    "missing file": (None, "no such file"),
    "directory": ("dir", "cannot read"),
    "empty file": (_write(b""), "is empty (0 bytes)"),
    "unknown format (png)": (_write(b"\x89PNG\r\n\x1a\n" + bytes(64)), "not a recording"),
    "unknown format (text)": (_write(b"t,x,y,p\n0,1,2,1\n"), "not a recording"),
    "npz archive": (_npz, "not a recording"),
    "old AEDAT 3.1": (_write(b"#!AER-DAT3.1\r\n#End Of ASCII Header\r\n" + bytes(28)),
                      "AEDAT 3.1; only AEDAT 4.0"),
    "truncated AEDAT4": (_cut(DAVIS, lambda n: n // 2), "corrupt or truncated AEDAT4"),
    "AEDAT4 header only": (_cut(DAVIS, lambda n: 200), "corrupt or truncated AEDAT4"),
    "garbled AEDAT4": (_garbled_aedat4, "corrupt or truncated AEDAT4"),
    "AEDAT4 without events": (_aedat4_without_events, "holds no events"),
    "AEDAT4 without event stream": (_aedat4_frames_only, "no event stream (streams: frame)"),
    "truncated EVT3 (half a word)": (_cut(EVK4, lambda n: n - 1), "corrupt or truncated EVT3"),
    "EVT3 header only": (_cut(EVK4, lambda n: 225), "EVT3 header without data"),
    "EVT3 words without events": (_write(EVT3_HEADER.encode() + bytes.fromhex("0180")),
                                  "holds no events"),
    "EVT3 time going backwards": (_evt3_backwards, "timestamps go backwards: event 2"),
    "EVT3 time going backwards (TIME_LOW)": (_evt3_backwards_within_time_high,
                                             "timestamps go backwards: event 2 at t = 200 us"),
    "EVT 2.0 raw": (_write(b"% evt 2.0\n% geometry 640x480\n" + bytes(64)),
                    "Prophesee RAW file in EVT2; only EVT3"),
    "EVT 2.1 raw": (_write(b"% format EVT21;height=720;width=1280\n% end\n" + bytes(64)),
                    "in EVT21; only EVT3"),
    "raw without format": (_write(b"% date 2024-01-01\n" + bytes(64)), "names no event format"),
    "npy without events": (_npy(t=[], x=[], y=[], p=[]), "holds no events"),
    "npy time going backwards": (_npy(t=[0, 10, 9]), "event 2 at t = 9 us comes after t = 10"),
    "npy polarity 2": (_npy(p=[0, 2, 1]), "polarity p must be 0 (OFF) or 1 (ON); event 1 has "
                                          "p = 2"),
    "npy polarity -1": (_npy(dtypes=("<i8", "<u2", "<u2", "i1"), p=[0, 1, -1]), "p = -1"),
    "npy float times": (_npy(dtypes=("<f8", "<u2", "<u2", "u1")), "field t must hold one "
                                                                  "integer"),
    "npy without p": (_npy_array(np.zeros(3, [("t", "<i8"), ("x", "<u2"), ("y", "<u2")])),
                      "structured array with integer fields t, x, y, p"),
    "npy plain array": (_npy_array(np.zeros((3, 4), np.int64)), "structured array"),
    "npy two-dimensional": (_npy_array(np.zeros((2, 2), [(c, "<i8") for c in "txyp"])),
                            "one-dimensional"),
    "npy truncated": (lambda path: (_npy()(path), path.write_bytes(path.read_bytes()[:-5])),
                      "corrupt or truncated .npy"),
    "npy of objects": (_npy_array(np.array([{"t": 1}], dtype=object)),
                       "holds Python objects"),
}


def bad_recording(name, folder):
    """The path of bad recording ``name``, made in ``folder``."""
    build, _ = BAD_RECORDINGS[name]
    path = folder / "recording.bin"
    if build == "dir":
        path.mkdir()
    elif build is not None:
        build(path)
    return path


@pytest.mark.parametrize("name", BAD_RECORDINGS)
def test_bad_recording_is_refused_with_one_line(name, tmp_path):
    path = bad_recording(name, tmp_path)
    with pytest.raises(RecordingError) as info:
        read_recording(path)
    message = str(info.value)
    assert "\n" not in message and len(message) < 300
    assert str(path) in message
    assert BAD_RECORDINGS[name][1] in message


def test_formats_named():
    assert FORMATS == ("aedat4", "evt3", "npy")


def test_frame_sample_limit_is_two_to_the_31():
    assert MAX_FRAME_SAMPLES == 2**31
