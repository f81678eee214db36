"""The host link protocol: packets between the host and the board, over a serial byte stream.

This package is the protocol's single source, for both sides and without Amaranth: the
numbers (:mod:`.constants`), the checksum (:mod:`.crc`), SLIP framing (:mod:`.slip`) and the
host's packet codec (:mod:`.codec`). The board's side is :mod:`eventconv.hw.link`; the host
driver is :mod:`eventconv.host`.

Protocol, version 1
===================

Framing (both directions)
-------------------------
SLIP (RFC 1055). A packet is its body followed by ``END`` = 0xC0; inside a body 0xC0 is sent
as 0xDB 0xDC and 0xDB as 0xDB 0xDD. Empty packets are ignored, so the host also sends END
before each packet: noise before it then forms a packet of its own (answered with an error)
instead of spoiling the packet. A body is a type byte, the fields (multi-byte fields
little-endian), and the CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, MSB first, no final
xor) of type and fields, sent high byte first, so that the CRC of a whole good body is 0.

Host to board
-------------
======  =======  ==============================================  ===========================
type    name     fields                                          answer
======  =======  ==============================================  ===========================
0x01    INFO     none                                            INFO
0x02    CONFIG   threshold u8, shift u8 (0..31), dense u8 (0/1)  ACK(0x02), position (0, 0)
0x03    PIXELS   frame u16, offset u24, count u16, count samples ACK(0x03) once in the engine
0x04    SYNC     token u8                                        SYNC(token), position
======  =======  ==============================================  ===========================

Board to host
-------------
======  ============  ===============================================================
type    name          fields
======  ============  ===============================================================
0x80    ACK           command u8, frame u16, offset u24
0x81    EVENT         one output event: the engine's event payload (channel, y, x,
                      delta, packed from bit 0 in that order, widths of
                      :func:`~eventconv.core.event_format.event_fields`) without end_of_frame,
                      in ceil(bits / 8) bytes
0x82    END_OF_FRAME  frame u16, events_in u32, macs u32, events_out u32, cycles u32
0x83    ERROR         code u8, frame u16, offset u24 (the expected position)
0x84    SYNC          token u8, frame u16, offset u24 (the expected position)
0x85    INFO          version u8 (1), digest u32, height u16, width u16, channels_in u16,
                      channels_out u16, kernel_size u8, pixels_per_cycle u8, chunk u16,
                      window u8, clock_frequency u32 (Hz)
======  ============  ===============================================================

Frames
------
A frame is ``H * W * Cin`` samples in the engine's raster order (row by row, the channels of
a pixel adjacent). It is sent as PIXELS packets of 1..``chunk`` samples, a multiple of
``pixels_per_cycle``, in order: a packet is taken only at the *expected position* (frame,
offset), which starts at (0, 0) after CONFIG, moves on by each packet taken and goes to
(frame + 1, 0) at the end of a frame; frame numbers count modulo 2**16. A packet is checked
whole (CRC, length, position) before any of its samples reach the engine, so a bad packet
changes nothing. Its samples wait in one of ``window`` buffer slots; its ACK (command 0x03,
the position after it) is sent once they have all gone into the engine. The host may have at
most ``window`` PIXELS packets unacknowledged; one more is refused (BUSY).

Each frame's output is its EVENT packets, then END_OF_FRAME with the frame's number (counted from 0
after CONFIG) and the engine's figures of that frame (the engine contract,
``eventconv/core/SPEC.md``; ``cycles`` counts engine cycles, including those spent waiting for the
link). Frames pipeline: the host may send the next frame while the outputs of earlier ones arrive.

CONFIG and SYNC are answered only after every PIXELS packet taken before them has gone into the
engine and been acknowledged. CONFIG applies threshold, shift and dense, resets the engine
(reference, accumulators and pooled map back to the reset state; frames inside it are dropped
without output) and the expected position; its ACK comes after any output of the dropped frames.
INFO's digest is :func:`~eventconv.protocol.codec.config_digest` of the layer built in.

Weights and bias
----------------
They are not uploaded: the engine builds them in (the accumulator unit's weight memories are
initialised at elaboration, the bias is written by its reset clear sequence and sets the
pool's reset pooled map). Uploading would need write ports on those memories and bias
registers in the engine. Instead INFO gives the digest of the layer built in and the driver
refuses a configuration that differs; ``eventconv synth --config`` builds a board for another.

Errors
------
A bad packet is dropped, nothing else changes, and the board answers ERROR with a code and
the expected position:

====  ========  ===============================================================
code  name      cause
====  ========  ===============================================================
1     CRC       checksum mismatch (damaged bytes, or a truncated packet ran into the next)
2     COMMAND   unknown packet type
3     LENGTH    length wrong for the type (PIXELS: count not equal to the samples sent, 0,
                above ``chunk``, not a multiple of ``pixels_per_cycle``, or past the frame)
4     POSITION  PIXELS (frame, offset) is not the expected position
5     TIMEOUT   a packet started but no END came within ``timeout_cycles`` of its last byte
6     FRAMING   a UART stop bit was low, or an invalid SLIP escape
7     OVERRUN   received bytes were lost (the receive buffer was full)
8     BUSY      PIXELS while all ``window`` slots are in use
9     VALUE     CONFIG shift above 31 or dense above 1
====  ========  ===============================================================

Checks run in this order; the first failing one is reported. After an error the board is at
once ready for the next packet (the next END delimits it); no reset is needed. The host's
recovery from an ERROR or from silence is SYNC with a fresh token: the SYNC answer follows
every answer to earlier packets and gives the position to resume at.
"""
