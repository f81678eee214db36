"""The protocol client of one board (protocol: :mod:`eventconv.protocol`): INFO, CONFIG, SYNC,
frames streamed with a window, output collected.

Every packet from the board is checked (CRC, type, length) and a damaged one is refused and
counted, never fatal; every wait ends after ``timeout`` on the transport's clock; every
resend is counted against ``retries``. A frame whose output arrived damaged is run again from
the engine state before it, which the driver restores with priming frames (see
:func:`priming_frames` and the protocol's "Recovery"), and the output of its runs is merged
until it is whole.
"""

import time
from collections import Counter, deque

import numpy as np

from eventconv.core.model import detect_events, taps_in_frame
from eventconv.protocol.codec import (
    LinkError,
    as_network,
    config_digest,
    config_fields,
    encode_packet,
    event_fields,
    parse_reply,
    pixels_packet,
    weights_fields,
)
from eventconv.protocol.constants import (
    END,
    MAX_REPLY_BYTES,
    PROTOCOL_VERSION,
    Command,
    ErrorCode,
    Reply,
)
from eventconv.protocol.slip import SlipDecoder
from eventconv.protocol.upload import shape_digest, upload_images

__all__ = ["BoardLink", "priming_frames", "RUNS_PER_RETRY", "STALLS_PER_RETRY"]

#: Runs of one frame allowed per retry: each run adds the events that arrived whole.
RUNS_PER_RETRY = 3
#: Resynchronisations in a row without progress, and tries of one SYNC, allowed per retry. A
#: long run resynchronises thousands of times, and at the rates the link is meant to survive
#: many of them fail by chance (the first packet after SYNC, or an answer, damaged), so a
#: limit of ``retries + 1`` in a row is reached by chance (README: reliability).
STALLS_PER_RETRY = 3
#: Error codes of a packet damaged on its way to the board.
DAMAGE_CODES = (ErrorCode.CRC, ErrorCode.FRAMING, ErrorCode.TIMEOUT, ErrorCode.OVERRUN)


def _clock_of(transport):
    """The transport's clock (``now()``), or that of the transport it wraps (its attribute
    ``transport``), else wall time."""
    seen = transport
    for _ in range(8):
        now = getattr(seen, "now", None)
        if callable(now):
            return now
        seen = getattr(seen, "transport", None)
        if seen is None:
            break
    return time.monotonic


def _hops(a, b, threshold):
    """Shortest list of reference values from ``a`` to ``b``, each more than ``threshold``
    from the one before (the detector takes a sample only then); [] if a == b, None if ``b``
    cannot be reached."""
    if a == b:
        return []
    layers, seen = [[a]], {a}
    while b not in seen:
        lo, hi = min(layers[-1]), max(layers[-1])
        layer = [v for v in range(256)
                 if v not in seen and (v < hi - threshold or v > lo + threshold)]
        if not layer:
            return None
        seen.update(layer)
        layers.append(layer)
    path = [b]
    for layer in reversed(layers[1:-1]):
        path.insert(0, next(u for u in layer if abs(u - path[0]) > threshold))
    return path


def priming_frames(current, target, threshold, dense=False):
    """Frames (uint8 arrays shaped like ``current``) that take the delta detector's reference
    from ``current`` to ``target``.

    In event mode a sample moves the reference only by more than ``threshold``, so a sample
    within ``threshold`` of its target goes there through values far enough from the one
    before (two frames at most for a threshold below 85; the shortest path, by a search over
    0..255); a sample at its target repeats its value (no event). In dense mode the reference
    is the frame: one frame, ``target``.
    Raises ValueError if a target cannot be reached (it then was not a reference the frames
    could give).
    """
    current, target = np.asarray(current), np.asarray(target)
    if np.array_equal(current, target):
        return []
    if dense:
        return [target.astype(np.uint8).copy()]
    pairs = {}
    flat_current, flat_target = current.ravel().tolist(), target.ravel().tolist()
    for a, b in zip(flat_current, flat_target, strict=True):
        if (a, b) not in pairs:
            pairs[(a, b)] = _hops(a, b, threshold)
            if pairs[(a, b)] is None:
                raise ValueError(f"reference {b} cannot be reached from {a} with threshold "
                                 f"{threshold}")
    count = max(len(p) for p in pairs.values())
    frames = np.empty((count, current.size), np.uint8)
    for i, (a, b) in enumerate(zip(flat_current, flat_target, strict=True)):
        path = pairs[(a, b)]
        # Each hop as early as possible, then the target held.
        frames[:, i] = path + [b] * (count - len(path)) if path else a
    return [f.reshape(current.shape) for f in frames]


class BoardLink:
    """The protocol client: one board, one configuration.

    Parameters
    ----------
    transport : ByteTransport
    config : :class:`eventconv.core.config.Config` or :class:`eventconv.core.network.Network`
        Of the shape the board was built for (checked against INFO's shape digest); its
        weights and bias are uploaded (WEIGHTS) before the first CONFIG when they are not the
        ones built in (INFO's digest), and again after a board reset.
    timeout : float
        Seconds (transport clock, ``transport.now()``) to wait for an answer, or during a run
        for the board's next good packet, before a command is sent again or the link
        resynchronised. Good packets meanwhile (the board's output) extend the wait, up to a
        bound of a few frames' output.
    retries : int
        Resends of a command; board resets recovered from. One more gives up with a one-line
        :class:`LinkError`, as do ``STALLS_PER_RETRY * (retries + 1)`` resynchronisations in a
        row without progress or tries of one SYNC (so a board silent mid-run ends it after
        that many ``timeout``), and a frame run more than ``RUNS_PER_RETRY * (retries + 1)``
        times (its output damaged each time).
    report : callable, optional
        Called with a one-line note when the run recovers from something the user should know
        of (a board reset).

    Attributes
    ----------
    errors : list of (ErrorCode, frame, offset)
        Every ERROR the board answered.
    damaged : int
        Packets from the board refused (CRC, type, length, SLIP escape, too long).
    resets : int
        Board resets (or lost board state) recovered from.
    reruns, priming : int
        Frames run again (their output damaged), and priming and quiet frames sent for them.
    notes : list of str
        What was reported.
    """

    def __init__(self, transport, config, *, timeout=1.0, retries=10, report=None):
        self.network = network = as_network(config)
        self.transport, self.config = transport, network.first
        self.layers = len(network.layers)
        self.timeout, self.retries, self.report = timeout, retries, report
        self.decoder = SlipDecoder(limit=MAX_REPLY_BYTES)
        self.event_fields = event_fields(network)
        self.errors = []
        self.damaged = 0
        self.resets = 0
        self.reruns = self.priming = 0
        self.notes = []
        self.info = None
        self.uploads = 0          # weight uploads done (each: every memory of the network)
        self._uploaded = False    # the board holds this configuration's weights and bias
        self._token = 0
        self._pending = deque()   # packets read but not yet consumed
        self._clock = _clock_of(transport)
        self._bytes_in = 0
        self._good = 0
        self._tail = bytearray()  # the last bytes received, for messages
        self._run = None          # the run collecting output (None: output is dropped)
        channels, height, width = network.output_shape
        self._max_events = channels * height * width
        self._patience = 4 * (self._max_events + 2)

    # -- packets ---------------------------------------------------------------------------
    def send(self, kind, fields=b""):
        self.transport.write(encode_packet(kind, fields))

    def receive(self, timeout=None):
        """The next good board packet ``(Reply, value)``, or None when none came within
        ``timeout`` seconds (default :attr:`timeout`). Damaged packets are refused and
        counted (:attr:`damaged`)."""
        if self._pending:
            return self._pending.popleft()
        deadline = self._clock() + (self.timeout if timeout is None else timeout)
        while not self._pending:
            left = deadline - self._clock()
            if left <= 0:
                return None
            data = self.transport.read(left)
            if not data:
                return None
            self._decode(data)
        return self._pending.popleft()

    def _decode(self, data):
        self._bytes_in += len(data)
        self._tail = (self._tail + data)[-40:]
        for body, damaged in self.decoder.feed(data):
            try:
                if damaged:
                    raise LinkError("bad SLIP escape or too long")
                packet = parse_reply(body, self.event_fields, self.layers)
            except LinkError:
                self.damaged += 1
                continue
            self._good += 1
            self._pending.append(packet)

    def _note_error(self, value):
        code = value["byte"]
        if code in ErrorCode._value2member_map_:
            code = ErrorCode(code)
        self.errors.append((code, value["frame"], value["offset"]))

    def _diagnosis(self):
        """What the port did, in a few words, for the one line of a LinkError."""
        if self._bytes_in == 0:
            return ("the board sent nothing: is it connected, programmed, and is the baud rate "
                    "the one it was built with?")
        if self._good == 0:
            return (f"the port sent {self._bytes_in} bytes that are not protocol packets (the "
                    f"last: {bytes(self._tail)!r}): is it the board's port, at the baud rate "
                    f"the board was built with?")
        parts = []
        if self.damaged:
            parts.append(f"{self.damaged} damaged packets from the board refused")
        if self.errors:
            codes = Counter(getattr(code, "name", str(code)) for code, _, _ in self.errors)
            parts.append("errors answered: " + ", ".join(f"{name} x{n}"
                                                         for name, n in codes.items()))
        return "; ".join(parts) or "no damaged packets, no errors answered"

    def request(self, kind, fields, want, *, accept=None, tries=None):
        """Send a command and return the value of its answer (the first packet of type
        ``want`` that ``accept(value)`` approves). Output packets meanwhile go to the run.

        The command is sent again after ``timeout`` without its answer (good packets extend
        the wait, up to a bound), and at once after an ERROR for INFO, CONFIG and WEIGHTS
        (nothing else is in flight then); after ``tries`` sends (default ``retries + 1``),
        :class:`LinkError`."""
        started = self._clock()
        tries = self.retries + 1 if tries is None else tries
        for _ in range(tries):
            self.send(kind, fields)
            deadline = self._clock() + self.timeout
            patience = self._patience
            while True:
                packet = self.receive(deadline - self._clock())
                if packet is None:
                    break
                reply, value = packet
                if reply == want and (accept is None or accept(value)):
                    return value
                if reply == Reply.ERROR:
                    self._note_error(value)
                    if kind in (Command.INFO, Command.CONFIG, Command.WEIGHTS):
                        break
                elif self._run is not None:
                    self._run.take(reply, value)
                patience -= 1
                if patience > 0:
                    deadline = max(deadline, self._clock() + self.timeout)
        raise LinkError(f"no {want.name} answer to {Command(kind).name} after {tries} tries in "
                        f"{self._clock() - started:.3g} s; {self._diagnosis()}")

    # -- commands ---------------------------------------------------------------------------
    def query_info(self):
        """INFO: what the board was built for; refuses a board built for another network."""
        self.transport.write(bytes((END,)))   # ends whatever noise came before
        info = self.request(Command.INFO, b"", Reply.INFO)
        if info.version != PROTOCOL_VERSION:
            raise LinkError(f"board speaks protocol version {info.version}, this driver "
                            f"{PROTOCOL_VERSION}")
        built_in = info.digest == config_digest(self.network)
        if info.shape == 0 and not built_in:
            raise LinkError(f"the board was built for another network ({self._shape_text(info)}, "
                            f"digest {info.digest:08x}) and takes no uploads; this "
                            f"configuration ({self._shape_text(None)}) has digest "
                            f"{config_digest(self.network):08x}: build it with eventconv "
                            f"synth --config")
        shape = shape_digest(self.network)
        if info.shape not in (0, shape):
            raise LinkError(f"the board was built for another shape ({self._shape_text(info)}, "
                            f"shape digest {info.shape:08x}) than this configuration "
                            f"({self._shape_text(None)}, shape digest {shape:08x}); "
                            f"{self._what_differs(info)}: build it with eventconv synth "
                            f"--config")
        self._uploaded = built_in
        self.info = info
        return info

    def _shape_text(self, info):
        if info is None:
            c, layers, cout = self.config, self.layers, self.network.output_shape[0]
            return (f"{layers} layer(s), {c.height}x{c.width}, Cin {c.channels_in}, Cout "
                    f"{cout} out, K {c.kernel_size}")
        return (f"{info.layers} layer(s), {info.height}x{info.width}, Cin {info.channels_in}, "
                f"Cout {info.channels_out} out, K {info.kernel_size}")

    def _what_differs(self, info):
        """The fields INFO shows that differ, else what it does not show."""
        c = self.config
        mine = {"layers": self.layers, "height": c.height, "width": c.width,
                "channels_in": c.channels_in, "channels_out": self.network.output_shape[0],
                "kernel_size": c.kernel_size, "pixels_per_cycle": c.pixels_per_cycle}
        differ = [f"{key} {value} (board {getattr(info, key)})"
                  for key, value in mine.items() if getattr(info, key) != value]
        return ("differs: " + ", ".join(differ) if differ else
                "a layer's channels, kernel, pool, lanes or accumulator width differs")

    def upload(self):
        """WEIGHTS: this configuration's weights and bias into the board's memories
        (:mod:`eventconv.protocol.upload`), a packet at a time, each acknowledged; they take
        effect at the next CONFIG."""
        run, self._run = self._run, None
        chunk = self.info.chunk
        try:
            for number, image in enumerate(upload_images(self.network)):
                for start in range(0, len(image), chunk):
                    part = image[start:start + chunk]
                    end = start + len(part)
                    self.request(Command.WEIGHTS, weights_fields(number, start, part),
                                 Reply.ACK, accept=lambda v, n=number, e=end: (
                                     v["byte"] == Command.WEIGHTS and v["frame"] == n
                                     and v["offset"] == e))
        finally:
            self._run = run
        self._uploaded = True
        self.uploads += 1

    def configure(self, **knobs):
        """CONFIG: set the runtime knobs (``threshold``, ``dense``, ``shifts``,
        ``output_thresholds``: the configuration's where not given, see
        :func:`~eventconv.protocol.codec.config_fields`) and reset the engine to its reset
        state; output of earlier frames still arriving is dropped. The weights and bias are
        uploaded first if INFO said the board does not hold them."""
        if self.info is not None and not self._uploaded:
            self.upload()
        run, self._run = self._run, None
        try:
            self.request(Command.CONFIG, config_fields(self.network, **knobs), Reply.ACK,
                         accept=lambda v: v["byte"] == Command.CONFIG)
        finally:
            self._run = run

    def sync(self):
        """SYNC: the board's expected (frame mod 2**16, offset); every earlier packet has
        been answered when it returns."""
        self._token = (self._token + 1) & 0xFF
        token = self._token
        value = self.request(Command.SYNC, bytes((token,)), Reply.SYNC,
                             accept=lambda v: v["byte"] == token,
                             tries=STALLS_PER_RETRY * (self.retries + 1))
        return value["frame"], value["offset"]

    # -- frames -----------------------------------------------------------------------------
    def run(self, frames, progress=None):
        """Stream frames (SPEC FRAMES.npy layout) through the engine from its reset state.

        Returns per frame ``{"events": [(o, py, px, delta), ...], "events_in", "macs",
        "events_out", "cycles", "frame"}`` as the board gave them: the last layer's events,
        the counts as tuples of one per layer, ``cycles`` of the run of the frame that
        completed its output.
        """
        frames = self.config.check_frames(frames)
        if self.info is None:
            self.query_info()
        run = _Run(self, frames, progress)
        try:
            run.configure()
            run.stream()
        finally:
            self._run = None
        return run.results

    def _reset_seen(self, reason):
        """The board lost its state (``reason``): count it, report it, or give up. A reset
        board holds its built-in weights again."""
        self.resets += 1
        self._uploaded = self.info.digest == config_digest(self.network)
        if self.resets > self.retries:
            raise LinkError(f"the board was reset {self.resets} times during the run (last: "
                            f"{reason}); giving up after {self.retries} recoveries")
        note = f"the board was reset mid-run ({reason}): configured again, the run resumes"
        self.notes.append(note)
        if self.report is not None:
            self.report(note)


class _Run:
    """One run's state: the frames, the wire frames sent since CONFIG (the run's own, and
    priming frames), the window, and the output collected.

    Positions are linear: wire frame ``i`` at offset ``o`` is ``i * size + o``; the wire
    carries ``i mod 2**16``.
    """

    def __init__(self, link, frames, progress):
        c, info = link.config, link.info
        self.link, self.config, self.progress = link, c, progress
        self.total = len(frames)
        self.samples = np.ascontiguousarray(frames.transpose(0, 2, 3, 1)).reshape(self.total, -1)
        self.size = self.samples.shape[1]
        ppc = info.pixels_per_cycle
        # PIXELS packets shrink to a quarter after each damaged one (the board answers CRC,
        # FRAMING, TIMEOUT or OVERRUN), down to 8 samples, and grow back by doubling after
        # 8 acknowledged in a row: on a noisy line short packets get through more often.
        self.max_chunk = info.chunk - info.chunk % ppc
        self.min_chunk = min(self.max_chunk, ppc * max(1, 8 // ppc))
        self.chunk, self.acked_in_row = self.max_chunk, 0
        self.window = info.window
        self.dense = c.mode == "dense"
        # With an output threshold the emitted map R keeps history that priming frames do
        # not restore: a lost frame is then reached by CONFIG and the frames before it again.
        # With none, every layer's state follows from the reference (SPEC steps 2-5).
        self.restorable = self.dense or all(layer.output_threshold == 0
                                            for layer in link.network.layers)
        self.taps = taps_in_frame(c)
        self.reset_ref = np.zeros(self.size, np.uint8)
        self.refs = {-1: self.reset_ref}   # reference after run frame k (some of them)
        self.results = [None] * self.total
        self.partial = {}
        self.attempts = [0] * self.total
        self.done, self.lowest, self.moves = 0, 0, 0
        self.clear_wire()

    # -- the wire plan ---------------------------------------------------------------------
    def clear_wire(self):
        """After CONFIG: nothing sent, the engine at reset."""
        self.wire = []                # (role: run frame or None, samples, events_in, macs)
        self.wire_ref = self.reset_ref
        self.wire_state = -1          # run frame whose state the engine has after the wire
        self.send_at = self.acked = 0
        self.in_flight = deque()      # linear end positions of PIXELS not yet acknowledged
        self.eof_next = 0             # next wire frame whose END_OF_FRAME is awaited
        self.events = []              # output events since END_OF_FRAME of wire frame after - 1
        self.after = 0                # None: unknown (output was given up on)
        self.pending = Counter()      # run frames in wire frames from eof_next on
        self.lost_track = None        # why the engine state is no longer known

    def configure(self):
        c = self.config
        link = self.link
        link.configure(threshold=c.threshold, dense=self.dense)
        link._run = self
        self.clear_wire()

    def _detect(self, reference, samples):
        c = self.config
        shape = (c.height, c.width, c.channels_in)
        events, new = detect_events(samples.reshape(shape).transpose(2, 0, 1),
                                    reference.reshape(shape).transpose(2, 0, 1),
                                    c.threshold, c.mode)
        macs = int(self.taps[events.y, events.x].sum()) * c.channels_out
        return new.transpose(1, 2, 0).reshape(-1), len(events), macs

    def ref(self, k):
        """The reference after run frame k."""
        last = max(self.refs)
        while last < k:
            self.refs[last + 1] = self._detect(self.refs[last], self.samples[last + 1])[0]
            last += 1
        return self.refs[k]

    def _append(self, role, samples, state):
        reference, events_in, macs = self._detect(self.wire_ref, samples)
        self.wire.append((role, samples, events_in, macs))
        self.wire_ref, self.wire_state = reference, state
        if role is not None:
            self.pending[role] += 1
            self.link.reruns += self.attempts[role] > 1
        else:
            self.link.priming += 1

    def next_missing(self):
        k = self.lowest
        while k < self.total and (self.results[k] is not None or self.pending[k]):
            k += 1
        return k if k < self.total else None

    def silent(self, index):
        """Wire frame ``index`` gives no output events: in event mode, a frame without input
        events changes no accumulator, so no pooled value (SPEC steps 1-5)."""
        return not self.dense and self.wire[index][2] == 0

    def plan(self):
        """Append the wire frames of the next frame without output: True; False if there is
        none; "restart" if only CONFIG reaches its state.

        In order, a frame follows the one before. Out of order (a run again, or after a
        frame run again), priming frames first take the engine to the state before it and,
        in event mode, quiet frames (the reference itself: no events in, none out) go before
        and after it, so that its output is told apart from the others' even when an
        END_OF_FRAME next to it is lost."""
        m = self.next_missing()
        if m is None:
            return False
        again = self.wire_state != m - 1
        if again:
            if self.restorable:
                target = self.ref(m - 1)
                for frame in priming_frames(self.wire_ref, target, self.config.threshold,
                                            self.dense):
                    self._append(None, frame, None)
                assert np.array_equal(self.wire_ref, target)
            elif not self.wire:
                for k in range(m):
                    self._append(None, self.samples[k], k)
            elif self.eof_next < len(self.wire):
                return False          # first the output of the frames in flight
            else:
                return "restart"
            if not self.dense:
                self._append(None, self.ref(m - 1), m - 1)
        self.attempts[m] += 1
        if self.attempts[m] > RUNS_PER_RETRY * (self.link.retries + 1):
            raise LinkError(f"frame {m} of {self.total}: its output did not arrive whole in "
                            f"{self.attempts[m] - 1} runs; {self.link._diagnosis()}")
        self._append(m, self.samples[m], m)
        if again and not self.dense:
            self._append(None, self.ref(m), m)
        return True

    def fill(self):
        """Send PIXELS while the window has room; "restart" if CONFIG must come first."""
        while len(self.in_flight) < self.window:
            i, o = divmod(self.send_at, self.size)
            if i == len(self.wire):
                planned = self.plan()
                if planned is not True:
                    return planned
            count = min(self.chunk, self.size - o)
            data = self.wire[i][1][o:o + count].tobytes()
            self.link.transport.write(pixels_packet(i & 0xFFFF, o, data))
            self.send_at += count
            self.in_flight.append(self.send_at)
        return True

    # -- what the board sends ----------------------------------------------------------------
    @staticmethod
    def _near(number, index):
        """The wire index nearest ``index`` whose number mod 2**16 is ``number``."""
        return index + ((number - index + 0x8000) & 0xFFFF) - 0x8000

    def take(self, reply, value):
        if self.lost_track is not None:
            return                              # CONFIG comes next
        if reply == Reply.EVENT:
            channels, height, width = self.link.network.output_shape
            if not (value["channel"] < channels and value["y"] < height
                    and value["x"] < width):
                self.link.damaged += 1       # not an event the last layer can give
                return
            self.events.append((value["channel"], value["y"], value["x"], value["delta"]))
        elif reply == Reply.END_OF_FRAME:
            self.end_of_frame(value)
        elif reply == Reply.ACK and value["byte"] == Command.PIXELS:
            i = self._near(value["frame"], self.acked // self.size)
            position = i * self.size + value["offset"]
            if value["offset"] < self.size and self.acked < position <= self.send_at:
                self.acked = position
                self.moves += 1
                self.acked_in_row += 1
                if self.acked_in_row >= 8 and self.chunk < self.max_chunk:
                    self.chunk, self.acked_in_row = min(self.max_chunk, 2 * self.chunk), 0
                while self.in_flight and self.in_flight[0] <= position:
                    self.in_flight.popleft()

    def advance(self, index):
        """The END_OF_FRAME awaited next is wire frame ``index``'s: the frames before it are
        settled (their runs leave the pending ones)."""
        for role, *_ in self.wire[self.eof_next:index]:
            if role is not None:
                self.pending[role] -= 1
        self.eof_next = max(self.eof_next, index)

    def end_of_frame(self, value):
        """END_OF_FRAME of wire frame i: its figures, checked against the frame sent, and
        the events since the END_OF_FRAME before that arrived, if they can belong to one wire
        frame only (the others in between silent)."""
        i = self._near(value["frame"], self.eof_next)
        if not 0 <= i < self.send_at // self.size:   # a frame not sent whole: not this run's
            self.events, self.after = [], None
            return
        role, _, events_in, macs = self.wire[i]
        # The first layer's figures follow from the frame sent (the later layers' do not).
        if (value["events_in"][0], value["macs"][0]) != (events_in, macs):
            self.lost_track = (f"its end of frame {i} counts events_in "
                               f"{value['events_in'][0]}, macs {value['macs'][0]}, the frame "
                               f"sent gives {events_in}, {macs}")
            return
        owner = None
        if self.after is not None and self.after <= i:
            loud = [j for j in range(self.after, i + 1) if not self.silent(j)]
            owner = loud[0] if len(loud) == 1 else None
        span, self.events, self.after = self.events, [], i + 1
        self.advance(i + 1)
        self.moves += 1
        if role is not None:
            self.merge(role, figures=value)
        if owner is not None and self.wire[owner][0] is not None:
            self.merge(self.wire[owner][0], span=span)

    def merge(self, k, *, figures=None, span=None):
        """Output of a run of frame k: an END_OF_FRAME's figures, or the events of one run
        (``span``). Runs of one frame from one state give the same output, so the events of
        several runs add up (each position at most once) until there are ``events_out``."""
        if self.results[k] is not None:
            return                            # a late run of a frame already done
        part = self.partial.setdefault(k, {"figures": None, "events": {}})
        if figures is not None:
            numbers = tuple(figures[n] for n in ("events_in", "macs", "events_out"))
            if part["figures"] is not None and part["figures"][:3] != numbers:
                part["events"] = {}           # not the same run: start again
            part["figures"] = (*numbers, figures["cycles"])
        if span:
            events = part["events"]
            keys = [(o, y, x) for o, y, x, _ in span]
            if len(set(keys)) != len(keys) or any(
                    events.get(key, e[3]) != e[3] for key, e in zip(keys, span, strict=True)):
                part["events"] = events = {}  # not one run's: start again
            else:
                for key, e in zip(keys, span, strict=True):
                    events[key] = e[3]
        if part["figures"] is None:
            return
        events_in, macs, events_out, cycles = part["figures"]
        if len(part["events"]) > events_out[-1]:
            part["events"] = {}
        if len(part["events"]) != events_out[-1]:
            return
        del self.partial[k]
        self.results[k] = {"frame": k, "events_in": events_in, "macs": macs,
                           "events_out": events_out, "cycles": cycles,
                           "events": [(*key, d) for key, d in part["events"].items()]}
        self.done += 1
        while self.lowest < self.total and self.results[self.lowest] is not None:
            if self.lowest >= 2:
                self.refs.pop(self.lowest - 2, None)
            self.lowest += 1
        if self.progress:
            self.progress(self.done, self.total)

    # -- the loop ---------------------------------------------------------------------------
    def shrink(self):
        ppc = self.config.pixels_per_cycle
        self.chunk = max(self.min_chunk, self.chunk // 4 // ppc * ppc)
        self.acked_in_row = 0

    def resume(self, frame, offset):
        """The SYNC answer: PIXELS go on from the board's position, if it is one the packets
        sent can have left it at; else the board lost its state."""
        i = self._near(frame, self.acked // self.size)
        position = i * self.size + offset
        if offset >= self.size or not self.acked <= position <= self.send_at:
            done_frame, done_offset = divmod(self.acked, self.size)
            self.lost_track = (f"it expects frame {frame}, offset {offset}, after it had taken "
                               f"frame {done_frame}, offset {done_offset}")
            return
        if position > self.acked:
            self.moves += 1                      # taken, its ACK lost
        self.acked = self.send_at = position
        self.in_flight.clear()

    def stream(self):
        link = self.link
        stalls, moves_at_sync, quiet_since_sync = 0, -1, False
        while self.done < self.total:
            if self.lost_track is not None:
                link._reset_seen(self.lost_track)
                self.configure()
                quiet_since_sync = False
                continue
            if self.fill() == "restart":
                self.configure()
                continue
            packet = link.receive()
            if packet is not None and packet[0] != Reply.ERROR:
                self.take(*packet)
                quiet_since_sync = False
                continue
            if packet is not None:
                link._note_error(packet[1])
                if packet[1]["byte"] in DAMAGE_CODES:
                    self.shrink()
            elif ((quiet_since_sync or self.acked == self.send_at) and not self.in_flight
                  and self.eof_next < self.send_at // self.size):
                # Every packet taken (acknowledged, or a SYNC answered), then silence: the
                # rest of the output of the frames sent is lost; they are run again.
                self.advance(self.send_at // self.size)
                self.events, self.after = [], None
                quiet_since_sync = False
                continue
            stalls = stalls + 1 if self.moves == moves_at_sync else 0
            if stalls >= STALLS_PER_RETRY * (link.retries + 1):
                raise LinkError(f"the board makes no progress (frame {self.done} of "
                                f"{self.total} done, {stalls} resynchronisations without "
                                f"progress); {link._diagnosis()}")
            moves_at_sync = self.moves
            self.resume(*link.sync())
            quiet_since_sync = True
