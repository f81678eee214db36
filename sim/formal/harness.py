"""Building blocks of the proofs: a block elaborated with its internal registers in reach,
stream protocol properties, free inputs, and "the value last cycle".

A proof is an :class:`~amaranth.hdl.Elaboratable` wrapper around the block. It drives the
block's inputs from free values (``AnySeq``), states what the inputs obey as ``Assume``, and
what the block must do as ``Assert``. Its ``sync`` domain is reset-less: the registers start
from their ``init`` values, the only start the solver may pick besides the arbitrary states of
the induction step.

Induction needs invariants over the block's internal registers (for a register slice: its skid
register holds the right beat), so :class:`Opened` elaborates the block once and finds its
signals by name. A renamed register makes the proof fail to build (``KeyError``), not pass.
"""

from amaranth.hdl import Assert, Assume, ClockDomain, Elaboratable, Fragment, Module, Signal, Value
from amaranth.hdl._ast import SignalSet

__all__ = ["Opened", "free", "past", "proof_module", "assume_stream", "assert_stream",
           "transfer", "Counter", "assert_once_a_frame"]


class Opened(Elaboratable):
    """A block elaborated once, so a proof can read its internal signals.

    ``opened["name"]`` is the one signal of that name driven anywhere in the block's hierarchy;
    ``opened["sub/name"]`` restricts the search to the submodule path ``sub`` (names as given
    to ``m.submodules``). Add the :class:`Opened` itself as the submodule, not the block.
    ``patch(opened)`` may return ``{domain: [statements]}`` to add to the block's top module:
    a planted bug in a block whose ``elaborate`` is one piece; a key ``"sub/domain"`` adds them
    to the submodule ``sub`` instead (paths as for signals).
    """

    def __init__(self, block, platform=None, *, patch=None):
        self.block = block
        self.fragment = Fragment.get(block, platform)
        self._signals = {}
        self._fragments = {}
        self._collect(self.fragment, ())
        if patch is not None:
            # A planted bug: statements added after the block's own, in its top module (or the
            # named submodule), so they take precedence (the last assignment to a signal wins).
            for key, statements in patch(self).items():
                *where, domain = key.split("/")
                self._fragments[tuple(where)].add_statements(domain, statements)

    def _collect(self, fragment, path):
        self._fragments[path] = fragment
        found = SignalSet()
        for statements in fragment.statements.values():
            for statement in statements:
                found |= statement._lhs_signals()
        for signal in found:
            self._signals.setdefault(signal.name, []).append((path, signal))
        for index, (subfragment, name, _) in enumerate(fragment.subfragments):
            self._collect(subfragment, path + (name if name is not None else f"#{index}",))

    def __getitem__(self, key):
        *where, name = key.split("/")
        where = tuple(where)
        matches = [signal for path, signal in self._signals.get(name, [])
                   if path[:len(where)] == where]
        if len(matches) != 1:
            raise KeyError(f"{key!r}: {len(matches)} signals of that name driven in "
                           f"{type(self.block).__name__}")
        return matches[0]

    def block_at(self, path):
        """The block (elaboratable) whose fragment sits at the submodule path ``path`` (names as
        given to ``m.submodules``, joined by "/"): one a block makes in its ``elaborate``."""
        return self._fragments[tuple(path.split("/"))].origins[0]

    def elaborate(self, platform):
        return self.fragment


def proof_module():
    """A Module with a reset-less ``sync`` domain; returns ``(m, clk)`` (``clk`` is the port)."""
    m = Module()
    m.domains.sync = domain = ClockDomain("sync", reset_less=True)
    return m, domain.clk


def free(m, target):
    """Drive ``target`` (a signal, a view or a list of them) from a fresh value every cycle."""
    from amaranth.asserts import AnySeq
    targets = target if isinstance(target, (list, tuple)) else [target]
    for item in targets:
        value = Value.cast(item)
        m.d.comb += value.eq(AnySeq(value.shape()))


def past(m, value, *, name=None, init=0):
    """A register holding ``value`` of the cycle before (``init`` in the first cycle)."""
    value = Value.cast(value)
    register = Signal(value.shape(), init=init, name=name)
    m.d.sync += register.eq(value)
    return register


def transfer(stream):
    return stream.valid & stream.ready


def _stream_rules(m, stream, name):
    """(held, stable): the conditions of the stream protocol for this cycle, from registers."""
    payload = Value.cast(stream.payload)
    waiting = past(m, stream.valid & ~stream.ready, name=f"{name}_waited")
    last_payload = past(m, payload, name=f"{name}_last_payload")
    return waiting, stream.valid, payload == last_payload


def assume_stream(m, stream, name):
    """The producer of ``stream`` (the solver) keeps ``valid`` and the payload until taken."""
    waiting, valid, stable = _stream_rules(m, stream, name)
    with m.If(waiting):
        m.d.comb += [Assume(valid, f"{name}: valid held until ready"),
                     Assume(stable, f"{name}: payload held until ready")]


def assert_stream(m, stream, name):
    """The block, as the producer of ``stream``, keeps ``valid`` and the payload until taken."""
    waiting, valid, stable = _stream_rules(m, stream, name)
    with m.If(waiting):
        m.d.comb += [Assert(valid, f"{name}: valid dropped before ready"),
                     Assert(stable, f"{name}: payload changed before ready")]


def assert_once_a_frame(m, events, frame_end, shape):
    """Each (channel, y, x) of an event stream (``shape``: channels, rows, columns) is given at
    most once between ends of frame (``frame_end``: an end of frame given). Returns the
    bitmap of those given this frame."""
    out = events.payload
    channels, rows, columns = shape
    emitted = Signal(channels * rows * columns, name="emitted")
    bit = (out.channel * rows + out.y) * columns + out.x
    data_out = transfer(events) & ~out.end_of_frame
    with m.If(frame_end):
        m.d.sync += emitted.eq(0)
    with m.Elif(data_out):
        m.d.sync += emitted.eq(emitted | (1 << bit))
    with m.If(data_out):
        m.d.comb += Assert(~emitted.bit_select(bit, 1),
                           "each (channel, y, x) at most once a frame")
    return emitted


def quiet_cycles(m, when, limit):
    """Cycles in a row in which ``when`` held (the drain conditions: output ready, no input),
    counting up to ``limit`` and staying there; a signal named ``quiet``."""
    quiet = Signal(range(limit + 1), name="quiet")
    with m.If(when):
        with m.If(quiet != limit):
            m.d.sync += quiet.eq(quiet + 1)
    with m.Else():
        m.d.sync += quiet.eq(0)
    return quiet


class Counter:
    """A wrapping counter of the cycles in which ``when`` holds (``width`` bits)."""

    def __init__(self, m, when, width, *, name, step=1):
        self.value = Signal(width, name=name)
        with m.If(when):
            m.d.sync += self.value.eq(self.value + step)
