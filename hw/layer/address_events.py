"""Address-event detector: camera events in, change events out, with work that grows with the
events and the pixels they touch, not with the frame size.

SPEC step 1 on event-camera input ("Event-camera input"): the frame of a window is
``x[c, y, x] = min(255, S * n)``, n the window's events at that sample; this block takes the
events themselves and gives, per window, exactly the events
:func:`eventconv.core.model.detect_events` gives on that frame (as a set; the order is this
block's own, deterministic). Its model stage is
:func:`eventconv.core.address_events.address_event_windows`.
"""

from amaranth.hdl import Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from eventconv.core import ranges
from eventconv.core.config import EVENT_CHANNELS
from eventconv.core.event_format import bits_for_count
from eventconv.hw.layouts import DELTA_SHAPE, EventStream, times
from eventconv.hw.primitives.block_ram import NO_RW_CHECK, UncheckedReadPort
from eventconv.hw.primitives.stream_register import StreamRegister
from eventconv.hw.target import GENERIC, checked_target

__all__ = ["AddressEventDetector", "camera_event_layout", "CameraEventStream"]


def camera_event_layout(channels, height, width):
    """A binned camera event ``(channel, y, x)`` (the pixel after downsampling, inside the
    frame), or with ``end_of_window`` the beat that closes a window (its other fields are
    ignored)."""
    return data.StructLayout({
        "channel":       unsigned(bits_for_count(channels)),
        "y":             unsigned(bits_for_count(height)),
        "x":             unsigned(bits_for_count(width)),
        "end_of_window": unsigned(1),
    })


def CameraEventStream(channels, height, width):
    return stream.Signature(camera_event_layout(channels, height, width))


def _stage(m, fields, prefix, enable, *, reset_less=()):
    """Each value of ``fields`` registered into ``{prefix}_{key}`` when ``enable`` is high."""
    registered = {key: Signal(value.shape(), name=f"{prefix}_{key}",
                              reset_less=key in reset_less)
                  for key, value in fields.items()}
    with m.If(enable):
        m.d.sync += [registered[key].eq(value) for key, value in fields.items()]
    return registered


class AddressEventDetector(wiring.Component):
    """The delta detector for address-event input: per-pixel counts of the window, the reference
    frame, and the list of pixels to look at when the window ends.

    **What it does.** Camera events ``(c, y, x)`` of a window come in on ``camera``, then one
    ``end_of_window`` beat. Each event adds S (``step``) to its sample's value, saturating at
    255, so the value is ``min(255, S * n)`` exactly, n the window's events there (``min(255,
    min(255, S n) + S) = min(255, S (n + 1))``): the frame sample the host's ``count_frames``
    makes, stored instead of n. A pixel's first event of the window puts it on the *list*,
    unless it is on it already. At the ``end_of_window`` beat the block looks at each listed
    pixel once, every channel of it: ``d = x - r``; where ``|d| > T`` (``threshold``) it emits
    ``(c, y, x, d)`` on ``events`` and sets ``r = x`` (the reference, uint8, as
    :class:`~eventconv.hw.layer.delta_detector.DeltaDetector`'s), and it sets the pixel's values
    back to 0. A pixel stays listed for the next window if it had an event in this one (a value
    not 0), else it leaves the list. Then comes one ``end_of_frame`` beat (other fields 0),
    also for a window without events. So the list at a window's end holds the pixels touched
    in this window or the last, each once.

    **Why that equals the frame detector on the count frames.** Let B be a bound the block
    keeps (0 after reset). Claim, before each window's end: every sample of a pixel not listed
    has ``x = 0`` (untouched in the window) and ``|r| <= B``. After reset ``r = 0`` everywhere
    and B = 0. At a window's end with ``T >= B`` the frame detector on an unlisted sample
    compares ``x = 0`` with ``r``, ``|0 - r| <= B <= T``: no event, ``r`` stays, which is what
    skipping it does. Listed pixels are evaluated as the frame detector does it. After the
    window B becomes T: a pixel that leaves the list was evaluated with ``x = 0`` on every
    channel, so it fired (``r = 0``) or ``|r| = |0 - r| <= T``; a pixel that was not listed had
    ``|r| <= B <= T``. In particular a pixel untouched in two windows running has ``x = 0`` in
    both and was compared against 0 at the first of them; a count that drops to 0 is a change
    the block sees, because the pixel is still listed from the window before. The first window
    after reset: nothing listed but what it touches, ``r = 0 = x`` elsewhere, no event there,
    as the frame detector. A threshold raised between windows keeps ``T >= B``. A threshold
    lowered below B (an unlisted sample may then have ``T < |r| <= B``) and dense mode (every
    sample must emit) make the window a **scan**: every pixel looked at, in raster order (y,
    then x, then channel), so nothing is skipped; the list is rebuilt from the pixels touched
    in the window, in raster order, and B becomes T (dense: 0, since ``r = x = 0`` on every
    unlisted sample then). Dense mode's events are the frame detector's, in its order.

    **Order.** Events come pixel by pixel in list order (the pixels kept from the last window
    in their order, then the window's newly listed pixels in the order of their first events),
    channel 0 first; in a scan, in raster order. Deterministic for a given input, as the
    contract asks. The blocks after it do not depend on the order: the fan-out turns each event
    into its taps, the accumulator unit forwards sums for any sequence of addresses, and the
    pool lists the windows it is given in any order and emits by that list.

    **Memories** (``H * W`` words each, addressed by pixel ``y * W + x``): the values, with the
    pixel's "listed" bit beside them (``8 * channels + 1`` bits); the reference
    (``8 * channels``, a write enable per channel: only channels that fire write); the list of
    listed pixels (``(y, x)``). The list is walked and compacted in place at a window's end
    (the kept pixels written back from index 0 behind the walk).

    **Collection pipeline** (one camera beat per clock, never stalled): input register (a
    :class:`~eventconv.hw.primitives.stream_register.StreamRegister`, so ``camera.ready`` comes
    from flip-flops); take, the pixel's address ``y * W + x`` registered; read the pixel's
    word; add S to the event's channel, write the word back, list the pixel if it was not
    listed. Events on one pixel in consecutive cycles (a camera's bursts) are handled at full
    rate: a read that misses the write of an event ahead of it takes that event's word instead
    (forwarding, the address compares made a stage early). ``step`` travels with each event
    beat, ``threshold`` and ``dense`` with the ``end_of_window`` beat: they are sampled when
    the beat is taken on ``camera`` (change ``step`` only between windows).

    **Evaluation pipeline** (one listed pixel per clock): read the list entry (a scan counts
    pixels instead); the address registered; read the pixel's values and reference; ``x - r``
    and ``|x - r|`` registered; the channels that fire registered; then the values go back to 0
    with the listed bit, the reference is written where a channel fires, a kept pixel is
    written back to the list, and a pixel with channels that fire goes to one of two result
    slots, whose events go out one per clock, channel 0 first. The pipeline stops while both
    slots are full, so ``events.ready`` reaches only register enables.

    **Cycles** (``camera`` always valid, ``events`` always ready; the tests check them). A window
    of N camera events whose end looks at G pixels (the pixels touched in it or in the last
    window, each once; ``H * W`` in a scan), the last of them firing n_last channels (0 to
    ``channels``):

    - back to back (the window's beats wait at ``camera``), from the window before's
      ``end_of_frame`` beat taken on ``events`` to its own: ``N + G + LATENCY - 2 + n_last``
      cycles, ``LATENCY`` = 11; at most one more for each other pixel that fires two channels
      (the result slots then hold the pipeline a cycle). A window with no pixel to look at
      takes ``N + 4``;
    - a window that starts on an idle block, from its first beat taken on ``camera`` to its
      ``end_of_frame`` beat taken on ``events`` (both cycles included): 2 more, ``N + G +
      LATENCY + n_last``.

    So the cost follows the events and the pixels they touch, not the frame size, except in a
    scan (dense mode, or a lowered threshold), which costs ``N + H * W`` and, in dense mode,
    one more cycle per event beyond one per pixel: about what a frame scan of one sample per
    clock costs. A frame scan (:class:`~eventconv.hw.layer.delta_detector.DeltaDetector`)
    takes ``channels * H * W / pixels_per_cycle`` cycles per frame back to back. Measured on
    the bundled DAVIS346 recording (64 x 86 pixels after downsampling by 4, 2 channels, 5 ms
    windows, threshold 20, step 16: 197 events, 60 active pixels (1.1 %), 74 pixels looked
    at per window on average): 281 cycles per window on average, 335 at most, against a
    frame scan's 11008 at one sample per clock (2.6 %) and 1376 at 8 (20 %). A camera's
    bursts cost a cycle per event: on the EVK4 excerpt downsampled by 16 each active pixel
    gets about 13 events per 2 ms window, and the events, not the pixels, set the cycles.

    With ``target.ram_read_register`` every block RAM read port feeds exactly one register
    without reset, and nothing else (the ECP5's RAM output register): the word read during
    collection and the list entry, values and reference read during evaluation each go into
    flip-flops before any logic. That is a stage more on each of the three reads (the
    forwarding then covers the two writes ahead of a read): ``LATENCY`` is 14, 3 cycles more
    per window (1 more for a window with no pixel to look at, ``N + 5``).

    **Reset**: the values (with their listed bits) and the reference are cleared to 0, one
    pixel per cycle, ``H * W`` cycles (:attr:`clear_cycles`), ``camera`` not ready meanwhile;
    the list is empty and B is 0.

    Parameters
    ----------
    height, width : int
        Frame size H x W (after downsampling), even, 2..4096.
    channels : int
        Cin: 1 (both polarities count together; the event's ``channel`` is ignored) or 2
        (channel = polarity).
    target : :class:`~eventconv.hw.target.Target`
        ``ram_read_register``: register every block RAM read as it leaves the RAM (see above).

    Attributes
    ----------
    pixels : int
        H * W, the depth of each memory.
    clear_cycles : int
        Cycles of the clear after reset (``pixels``).
    LATENCY : int
        See "Cycles": 11, or 14 with ``target.ram_read_register``.

    Members
    -------
    camera : ``In(CameraEventStream(channels, height, width))``
        Binned camera events of a window (recording order), then one ``end_of_window`` beat;
        every window in turn, empty ones too. ``ready`` comes from the input register's
        flip-flops: low during the clear; while a window is evaluated the register takes up
        to two beats of the next window, then ``ready`` stays low until the window's
        ``end_of_frame`` beat is loaded on ``events``.
    events : ``Out(EventStream(channels, height, width))``
        Events ``(channel, y, x, delta)`` of each window, then one ``end_of_frame`` beat: the
        same stream as :class:`~eventconv.hw.layer.delta_detector.DeltaDetector`'s.
    threshold : ``In(8)``
        T, taken with the ``end_of_window`` beat.
    step : ``In(8)``
        S, taken with each event beat; 1..255 (0 would make every value 0, and the output
        that of all-zero frames).
    dense : ``In(1)``
        Dense mode (every sample of the frame emits, ``d`` possibly 0), taken with the
        ``end_of_window`` beat.

    Raises
    ------
    TypeError
        A parameter is not an integer (``target``: not a Target).
    ValueError
        A parameter is out of range, or a frame side is odd.
    """

    LATENCY = 11

    def __init__(self, *, height, width, channels, target=GENERIC):
        height = ranges.frame_side("height", height)
        width = ranges.frame_side("width", width)
        channels = ranges.one_of("channels", channels, EVENT_CHANNELS)
        self.target = checked_target(target)
        self.height, self.width, self.channels = height, width, channels
        self.pixels = height * width
        self.clear_cycles = self.pixels
        self.LATENCY = type(self).LATENCY + 3 * target.ram_read_register
        super().__init__({
            "camera": In(CameraEventStream(channels, height, width)),
            "events": Out(EventStream(channels, height, width)),
            "threshold": In(8),
            "step": In(8, init=1),
            "dense": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        h, w, lanes, pixels = self.height, self.width, self.channels, self.pixels
        registered = self.target.ram_read_register
        sample = data.ArrayLayout(unsigned(8), lanes)
        word = data.StructLayout({"values": sample, "listed": 1})
        entry = data.StructLayout({"y": unsigned(bits_for_count(h)),
                                   "x": unsigned(bits_for_count(w))})

        m.submodules.values = values = Memory(shape=word, depth=pixels, init=[],
                                              attrs=NO_RW_CHECK)
        m.submodules.reference = reference = Memory(shape=sample, depth=pixels, init=[],
                                                     attrs=NO_RW_CHECK)
        m.submodules.pixel_list = pixel_list = Memory(shape=entry, depth=pixels, init=[],
                                                      attrs=NO_RW_CHECK)
        # Reads whose word is used never meet a write of that word on the same edge (the
        # collection forwards those writes itself; the evaluation reads each pixel once, and
        # writes list entries behind the walk): no read-during-write logic after the RAMs.
        ports = {
            "values_read": UncheckedReadPort(m, values, name="values_read"),
            "values_write": values.write_port(),
            "reference_read": UncheckedReadPort(m, reference, name="reference_read"),
            "reference_write": reference.write_port(granularity=1),
            "list_read": UncheckedReadPort(m, pixel_list, name="list_read"),
            "list_write": pixel_list.write_port(),
        }

        s = self._state(m)
        # ``advance``: the evaluation pipeline moves (both result slots are never full outside
        # an evaluation, so it is high while collecting too).
        advance = ~s["waiting_full"]
        # With ``target.ram_read_register`` the values read goes into this register (its only
        # load), used by the collection and the evaluation alike.
        values_data = ports["values_read"].data
        if registered:
            values_data = _stage(m, {"data": values_data}, "values_r", advance,
                                 reset_less=("data",))["data"]
        m.d.comb += ports["values_read"].en.eq(advance)
        collect = self._collect(m, s, ports, values_data, word)
        decided = self._evaluate(m, s, ports, values_data, advance, entry)
        # The values are read by the collection's first stage, or by the evaluation's
        # address stage.
        m.d.comb += ports["values_read"].addr.eq(Mux(s["evaluating"], s["e2_address"],
                                                     s["c1_address"]))
        self._write_back(m, s, ports, collect, decided, advance, word)
        self._results(m, s, decided, advance)
        return m

    def _state(self, m):
        """The control registers, one hot where they are phases."""
        pixels = self.pixels
        s = {
            "clearing": Signal(init=1),         # writing 0 into values and reference
            "clear_address": Signal(range(pixels)),
            "accepting": Signal(),              # camera beats are taken (collecting)
            "evaluating": Signal(),             # from a window's end to its end_of_frame
            "issuing": Signal(),                # listed pixels (or a scan) still to issue
            "end_pending": Signal(),            # every pixel has left the pipeline
            "scan": Signal(),                   # this window looks at every pixel
            "window_threshold": Signal(8),
            "window_dense": Signal(),
            "bound": Signal(8),                 # B: |r| <= B on every unlisted sample
            "count": Signal(range(pixels + 1)),  # listed pixels
            "kept": Signal(range(pixels + 1)),   # pixels kept on the list so far
            "index": Signal(range(pixels)),     # the list entry to issue
            "remaining": Signal(range(pixels + 1)),
            "issue_last": Signal(),             # the next issue is the window's last
            "scan_y": Signal(range(self.height)),
            "scan_x": Signal(range(self.width)),
            "waiting_full": Signal(),
        }
        with m.If(s["clearing"]):
            m.d.sync += s["clear_address"].eq(s["clear_address"] + 1)
            with m.If(s["clear_address"] == pixels - 1):
                m.d.sync += [s["clearing"].eq(0), s["accepting"].eq(1)]
        return s

    def _collect(self, m, s, ports, values_data, word):
        """Camera beats into the values: take, address, read, add and write back (the write
        itself in :meth:`_write_back`). Returns the write stage's fields."""
        h, w, lanes = self.height, self.width, self.channels
        registered = self.target.ram_read_register
        carried = data.StructLayout({"beat": self.camera.payload.shape(), "step": 8,
                                     "threshold": 8, "dense": 1})
        m.submodules.input_register = input_register = StreamRegister(carried)
        m.d.comb += [
            input_register.i.payload.beat.eq(self.camera.payload),
            input_register.i.payload.step.eq(self.step),
            input_register.i.payload.threshold.eq(self.threshold),
            input_register.i.payload.dense.eq(self.dense),
            input_register.i.valid.eq(self.camera.valid & ~s["clearing"]),
            self.camera.ready.eq(input_register.i.ready & ~s["clearing"]),
        ]
        offered = input_register.o.payload
        take = input_register.o.valid & s["accepting"]
        m.d.comb += input_register.o.ready.eq(s["accepting"])
        with m.If(take & offered.beat.end_of_window):
            m.d.sync += s["accepting"].eq(0)

        beat = offered.beat
        first = _stage(m, {
            "valid": take, "end": beat.end_of_window,
            "channel": beat.channel if lanes > 1 else Const(0, 1),
            "y": beat.y, "x": beat.x,
            "address": (times(beat.y, w) + beat.x)[:bits_for_count(h * w)],
            "step": offered.step, "threshold": offered.threshold, "dense": offered.dense,
        }, "c1", Const(1))
        s["c1_address"] = first["address"]
        # The stage in front of the write stage compares its address with the writes its
        # read misses: the write stage's (and with a registered read the one before it).
        ahead = first
        if registered:
            ahead = _stage(m, first, "cr", Const(1))
        written = [{"valid": Signal(name=f"written{i}_valid"),
                    "address": Signal.like(first["address"], name=f"written{i}_address"),
                    "word": Signal(word, name=f"written{i}_word")} for i in (1, 2)]
        hits = [Signal(name="hit1"), Signal(name="hit2")]
        second = _stage(m, ahead, "c2", Const(1))
        second_event = second["valid"] & ~second["end"]
        m.d.sync += hits[0].eq(second_event & (ahead["address"] == second["address"]))
        if registered:
            m.d.sync += hits[1].eq(written[0]["valid"] &
                                   (ahead["address"] == written[0]["address"]))
        old = Signal(word)
        m.d.comb += old.eq(Mux(hits[0], written[0]["word"],
                               Mux(hits[1], written[1]["word"], values_data)))
        new = Signal(word)
        m.d.comb += new.listed.eq(1)
        for j in range(lanes):
            total = old.values[j] + second["step"]
            hit = second["channel"] == j
            m.d.comb += new.values[j].eq(Mux(hit, Mux(total[8], 255, total[:8]),
                                              old.values[j]))
        m.d.sync += [
            written[0]["valid"].eq(second_event), written[0]["address"].eq(second["address"]),
            written[0]["word"].eq(new),
            written[1]["valid"].eq(written[0]["valid"]),
            written[1]["address"].eq(written[0]["address"]),
            written[1]["word"].eq(written[0]["word"]),
        ]
        self._start(m, s, second)
        return {"event": second_event, "address": second["address"], "word": new,
                "append": second_event & ~old.listed, "y": second["y"], "x": second["x"]}

    def _start(self, m, s, second):
        """The end_of_window beat in the write stage: the window's evaluation starts."""
        pixels = self.pixels
        with m.If(second["valid"] & second["end"]):
            scan = second["dense"] | (second["threshold"] < s["bound"])
            nothing = ~scan & (s["count"] == 0)
            m.d.sync += [
                s["evaluating"].eq(1), s["scan"].eq(scan),
                s["window_threshold"].eq(second["threshold"]),
                s["window_dense"].eq(second["dense"]),
                s["issuing"].eq(~nothing), s["end_pending"].eq(nothing),
                s["index"].eq(0), s["kept"].eq(0), s["scan_y"].eq(0), s["scan_x"].eq(0),
                s["remaining"].eq(Mux(scan, pixels, s["count"])),
                s["issue_last"].eq(~scan & (s["count"] == 1)),     # H * W >= 4
            ]

    def _evaluate(self, m, s, ports, values_data, advance, entry):
        """Issue, list entry, address, values and reference, difference, decision. Returns
        the decided stage's fields."""
        h, w, lanes = self.height, self.width, self.channels
        registered = self.target.ram_read_register
        issue = s["issuing"] & advance
        with m.If(issue):
            last_x = s["scan_x"] == w - 1
            m.d.sync += [
                s["index"].eq(Mux(s["scan"], 0, s["index"] + 1)),    # stays in the list
                s["remaining"].eq(s["remaining"] - 1),
                s["issue_last"].eq(s["remaining"] == 2),
                s["scan_x"].eq(Mux(last_x, 0, s["scan_x"] + 1)),
                s["scan_y"].eq(Mux(last_x, s["scan_y"] + 1, s["scan_y"])),
            ]
            with m.If(s["issue_last"]):
                m.d.sync += s["issuing"].eq(0)
        m.d.comb += [ports["list_read"].addr.eq(s["index"]), ports["list_read"].en.eq(advance)]
        scan_entry = Signal(entry)
        m.d.comb += [scan_entry.y.eq(s["scan_y"]), scan_entry.x.eq(s["scan_x"])]
        fetched = _stage(m, {"valid": issue, "last": s["issue_last"], "scan": scan_entry},
                         "e1", advance)
        fetched["entry"] = ports["list_read"].data
        if registered:
            fetched = _stage(m, fetched, "er", advance, reset_less=("entry",))
        pick = data.View(entry, Mux(s["scan"], fetched["scan"].as_value(),
                                    fetched["entry"].as_value()))
        address = _stage(m, {
            "valid": fetched["valid"], "last": fetched["last"], "y": pick.y, "x": pick.x,
            "address": (times(pick.y, w) + pick.x)[:bits_for_count(h * w)],
        }, "e2", advance)
        s["e2_address"] = address["address"]
        m.d.comb += [ports["reference_read"].addr.eq(address["address"]),
                     ports["reference_read"].en.eq(advance)]
        read = _stage(m, {key: address[key] for key in ("valid", "last", "y", "x", "address")},
                      "e3", advance)
        read["values"] = values_data.values
        read["reference"] = ports["reference_read"].data
        if registered:
            reference_data = _stage(m, {"data": read["reference"]}, "reference_r", advance,
                                    reset_less=("data",))["data"]
            read = _stage(m, {key: read[key] for key in ("valid", "last", "y", "x",
                                                         "address")}, "e3r", advance)
            read["values"], read["reference"] = values_data.values, reference_data

        delta_shape = data.ArrayLayout(DELTA_SHAPE, lanes)
        magnitude_shape = data.ArrayLayout(unsigned(8), lanes)
        up, magnitude = Signal(delta_shape), Signal(magnitude_shape)
        for j in range(lanes):
            difference = read["values"][j] - read["reference"][j]
            m.d.comb += [up[j].eq(difference),
                         magnitude[j].eq(Mux(difference[-1],
                                             read["reference"][j] - read["values"][j],
                                             difference))]
        differed = _stage(m, {
            **{key: read[key] for key in ("valid", "last", "y", "x", "address")},
            "delta": up, "magnitude": magnitude, "values": read["values"],
            "keep": read["values"].as_value().any(),
        }, "e4", advance)
        fire = Signal(lanes)
        for j in range(lanes):
            m.d.comb += fire[j].eq(s["window_dense"] |
                                   (differed["magnitude"][j] > s["window_threshold"]))
        return _stage(m, {
            **{key: differed[key] for key in ("valid", "last", "y", "x", "address", "delta",
                                              "values", "keep")},
            "mask": fire,
        }, "e5", advance)

    def _write_back(self, m, s, ports, collect, decided, advance, word):
        """The three memories' write ports: the clear, the collection, the evaluation."""
        lanes = self.channels
        leave = advance & decided["valid"]
        cleared = Signal(word)
        m.d.comb += cleared.listed.eq(decided["keep"])
        values_write, reference_write = ports["values_write"], ports["reference_write"]
        list_write = ports["list_write"]
        m.d.comb += [
            values_write.addr.eq(Mux(s["clearing"], s["clear_address"],
                                     Mux(s["evaluating"], decided["address"],
                                         collect["address"]))),
            values_write.data.eq(Mux(s["clearing"], 0,
                                     Mux(s["evaluating"], cleared, collect["word"]))),
            values_write.en.eq(s["clearing"] | collect["event"] | leave),
            reference_write.addr.eq(Mux(s["clearing"], s["clear_address"],
                                        decided["address"])),
            reference_write.data.eq(Mux(s["clearing"], 0, decided["values"])),
            reference_write.en.eq(Mux(s["clearing"], (1 << lanes) - 1,
                                      Mux(leave, decided["mask"], 0))),
            list_write.addr.eq(Mux(s["evaluating"], s["kept"], s["count"])),
            list_write.data.y.eq(Mux(s["evaluating"], decided["y"], collect["y"])),
            list_write.data.x.eq(Mux(s["evaluating"], decided["x"], collect["x"])),
            list_write.en.eq(collect["append"] | (leave & decided["keep"])),
        ]
        with m.If(collect["append"]):
            m.d.sync += s["count"].eq(s["count"] + 1)
        with m.If(leave & decided["keep"]):
            m.d.sync += s["kept"].eq(s["kept"] + 1)
        with m.If(leave & decided["last"]):
            m.d.sync += s["end_pending"].eq(1)

    def _results(self, m, s, decided, advance):
        """Two result slots, their events one per clock, then the end_of_frame beat."""
        lanes = self.channels
        slot = data.StructLayout({"mask": lanes, "delta": data.ArrayLayout(DELTA_SHAPE, lanes),
                                  "y": decided["y"].shape(), "x": decided["x"].shape()})
        result, waiting = Signal(slot), Signal(slot)
        arriving = Signal(slot)
        m.d.comb += [arriving.mask.eq(decided["mask"]), arriving.delta.eq(decided["delta"]),
                     arriving.y.eq(decided["y"]), arriving.x.eq(decided["x"])]
        gives = advance & decided["valid"] & (decided["mask"] != 0)
        out_free = ~self.events.valid | self.events.ready
        lane = Signal(range(lanes))
        for j in reversed(range(lanes)):
            with m.If(result.mask[j]):
                m.d.comb += lane.eq(j)
        single = Const(1) if lanes == 1 else ~(result.mask[0] & result.mask[1])
        result_free_after = (result.mask == 0) | (single & out_free)
        with m.If(result_free_after):
            with m.If(s["waiting_full"]):
                m.d.sync += [result.eq(waiting), s["waiting_full"].eq(0)]
            with m.Elif(gives):
                m.d.sync += result.eq(arriving)
            with m.Else():
                m.d.sync += result.mask.eq(0)
        with m.Else():
            with m.If(out_free):
                m.d.sync += result.mask.eq(result.mask & ~(1 << lane))
            with m.If(gives):
                m.d.sync += [waiting.eq(arriving), s["waiting_full"].eq(1)]

        end_load = s["end_pending"] & (result.mask == 0) & out_free
        payload = self.events.payload
        with m.If((result.mask != 0) & out_free):
            m.d.sync += [self.events.valid.eq(1), payload.channel.eq(lane),
                         payload.y.eq(result.y), payload.x.eq(result.x),
                         payload.delta.eq(result.delta[lane]), payload.end_of_frame.eq(0)]
        with m.Elif(end_load):
            m.d.sync += [self.events.valid.eq(1), payload.eq(0), payload.end_of_frame.eq(1)]
        with m.Elif(self.events.ready):
            m.d.sync += self.events.valid.eq(0)
        with m.If(end_load):
            m.d.sync += [
                s["evaluating"].eq(0), s["end_pending"].eq(0), s["accepting"].eq(1),
                s["count"].eq(s["kept"]),
                s["bound"].eq(Mux(s["window_dense"], 0, s["window_threshold"])),
            ]
