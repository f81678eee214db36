"""Stream payloads and port signatures shared by every block of the engine.

Every link is an :class:`amaranth.lib.stream.Signature` over one of these layouts. A frame is
closed by one beat with ``end_of_frame = 1`` whose other fields are zero; it is a beat of its
own so that a frame without events still ends.

Pipeline::

    pixels --DeltaDetector--> events --FanoutAddressGenerator--> updates
           --AccumulatorUnit--> touched --SparseMaxPool--> events (output, same form as input)
                    ^                          |
                    +---- accumulator read ----+   (pool reads while the accumulator holds,
                                                    then pulses ``done``; on the generic
                                                    target also final windows during the
                                                    frame, through a port of its own)
"""

from amaranth.hdl import Const, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from eventconv.core.event_format import DELTA_WIDTH, bits_for_count, event_fields

__all__ = ["bits_for_count", "times", "pixel_layout", "event_layout", "update_layout",
           "window_layout",
           "DELTA_SHAPE", "PixelStream", "EventStream", "UpdateStream", "WindowStream",
           "AccumulatorReadSignature", "UploadSignature", "UPLOAD_MEMORY_WIDTH",
           "UPLOAD_ADDRESS_WIDTH"]

# A delta of two uint8 values, and of two pooled uint8 values: -255..255.
DELTA_SHAPE = signed(DELTA_WIDTH)


def pixel_layout(pixels_per_cycle):
    """Input pixels: ``pixels_per_cycle`` consecutive uint8 samples in raster order.

    Raster order is row by row, pixel by pixel, the channels of a pixel adjacent, so sample n
    of a frame is ``frame[c, y, x]`` with ``n = (y * W + x) * Cin + c``. ``first`` marks the
    first beat of a frame, ``last`` its last beat.
    """
    return data.StructLayout({
        "data":  data.ArrayLayout(unsigned(8), pixels_per_cycle),
        "first": unsigned(1),
        "last":  unsigned(1),
    })


def event_layout(channels, height, width):
    """An event ``(channel, y, x, delta)`` or, with ``end_of_frame``, the frame's end marker.

    Input events (from the delta detector) and output events (from the pool, with ``channels``
    = Cout and the pooled height and width) have this same form: the fields of
    :func:`eventconv.core.event_format.event_fields`.
    """
    return data.StructLayout({name: signed(width) if is_signed else unsigned(width)
                              for name, width, is_signed in event_fields(channels, height,
                                                                          width)})


def update_layout(channels_in, channels_out, height, width, kernel_size, lanes):
    """One fan-out beat: ``lanes`` accumulate ops at one output position.

    Adds ``delta * w[group * lanes + j][channel][tap // K][tap % K]`` to accumulator
    ``[group * lanes + j][y][x]`` for each lane j. ``end_of_frame`` beats carry no update.
    """
    return data.StructLayout({
        "y":            unsigned(bits_for_count(height)),
        "x":            unsigned(bits_for_count(width)),
        "group":        unsigned(bits_for_count(channels_out // lanes)),
        "channel":      unsigned(bits_for_count(channels_in)),
        "tap":          unsigned(bits_for_count(kernel_size * kernel_size)),
        "delta":        DELTA_SHAPE,
        "end_of_frame": unsigned(1),
    })


def window_layout(height, width):
    """A touched 2 x 2 pool window ``(y, x)`` in pooled coordinates, or the frame's end."""
    return data.StructLayout({
        "y":            unsigned(bits_for_count(height // 2)),
        "x":            unsigned(bits_for_count(width // 2)),
        "end_of_frame": unsigned(1),
    })


def PixelStream(pixels_per_cycle):
    return stream.Signature(pixel_layout(pixels_per_cycle))


def EventStream(channels, height, width):
    return stream.Signature(event_layout(channels, height, width))


def UpdateStream(channels_in, channels_out, height, width, kernel_size, lanes):
    return stream.Signature(update_layout(channels_in, channels_out, height, width,
                                          kernel_size, lanes))


def WindowStream(height, width):
    return stream.Signature(window_layout(height, width))


class AccumulatorReadSignature(wiring.Signature):
    """Read port into the accumulator memories, seen from the reader (the pool).

    The accumulators of output channel ``o = group * lanes + j`` at ``(y, x)`` live in bank
    ``(y % 2) * 2 + x % 2`` of lane j, at bank address ``(group * H/2 + y // 2) * W/2 + x // 2``:
    the four pixels of a 2 x 2 pool window share one address, one per bank.

    ``addr`` is a window address ``(group * H/2 + py) * W/2 + px``; with ``en`` high, ``data``
    holds on the next cycle (latency 1) all ``4 x lanes`` accumulators of that window and group:
    ``data[q][j]`` is ``acc[group * lanes + j][2 py + q // 2][2 px + q % 2]``. ``data`` keeps
    its value while ``en`` is low. ``done`` is a one-cycle pulse from the reader, once per frame:
    it has taken the data of its last read (it may be that read's data cycle), and the
    accumulators may change again. The accumulator unit honours reads between a frame's end
    and ``done``, and with ``target.pool_read_port`` (a port of the reader's own) at any time.

    With ``registered``, ``data`` is a register behind the RAMs' output: it loads the word read
    at the end of each cycle in which the reader holds ``take`` high (the reader's stage
    enable), so a read with ``en`` in cycle t is in ``data`` from t + 2 if ``take`` is high in
    t + 1. Every RAM output then feeds one register (on the ECP5, the RAM's own output
    register). ``done`` then means the reader is past the register too: after ``done`` the
    register follows the unit's own pipeline again.

    With ``paced`` (accumulators in single-port RAM,
    :class:`~eventconv.hw.layer.accumulator_spram.SpramAccumulatorUnit`) a read takes several
    cycles: ``wait`` (from the unit, a register) is high from the cycle after ``en`` until the
    cycle in which ``data`` holds the read's words, and the reader issues nothing and takes
    nothing while it is high. ``data`` then keeps its value until the next ``en``.
    """

    def __init__(self, *, address_width, accumulator_width, lanes, registered=False,
                 paced=False):
        members = {
            "addr": Out(unsigned(address_width)),
            "en":   Out(1),
            "data": In(data.ArrayLayout(data.ArrayLayout(signed(accumulator_width), lanes), 4)),
            "done": Out(1),
        }
        if registered:
            members["take"] = Out(1)
        if paced:
            members["wait"] = In(1)
        super().__init__(members)


#: Widths of an upload write's memory number and byte address (the WEIGHTS packet's fields).
UPLOAD_MEMORY_WIDTH, UPLOAD_ADDRESS_WIDTH = 16, 24


def UploadSignature():
    """Byte writes of uploaded weights and bias (``eventconv.protocol.upload``), seen from the
    writer: ``data`` into byte ``address`` of memory ``memory`` while ``en``; no handshake,
    every write is taken."""
    return wiring.Signature({"memory": Out(UPLOAD_MEMORY_WIDTH),
                             "address": Out(UPLOAD_ADDRESS_WIDTH),
                             "data": Out(8), "en": Out(1)})


def times(value, constant):
    """``value * constant`` as shifts and adds: Yosys would put a constant multiply into a DSP
    block (ECP5 MULT18X18D: ~4 ns), which address arithmetic cannot afford."""
    terms = [value << bit for bit in range(constant.bit_length()) if constant >> bit & 1]
    if not terms:
        return Const(0)
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total
