"""The host link protocol: packets between the host and the board, over a serial byte stream.

This package is the protocol's single source, for both sides and without Amaranth: the
numbers (:mod:`.constants`), the checksum (:mod:`.crc`), SLIP framing (:mod:`.slip`), the
host's packet codec (:mod:`.codec`) and the memories weights are uploaded into
(:mod:`.upload`). The board's side is :mod:`eventconv.hw.link`; the host
driver is :mod:`eventconv.host`.

Protocol, version 3
===================

Version 3 uploads weights and bias (WEIGHTS; INFO gives the shape digest). Version 2 carried
networks: CONFIG sets each layer's knobs, END_OF_FRAME gives each layer's figures, INFO says
how many layers the board has. (Version 1 had one layer's.)

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
0x02    CONFIG   threshold u8, dense u8 (0/1), then per layer    ACK(0x02), position (0, 0)
                 shift u8 (0..31), output_threshold u8
0x03    PIXELS   frame u16, offset u24, count u16, count samples ACK(0x03) once in the engine
0x04    SYNC     token u8                                        SYNC(token), position
0x05    WEIGHTS  memory u16, offset u24, count u16, count bytes  ACK(0x05), memory in the
                                                                 frame field, offset + count
======  =======  ==============================================  ===========================

Board to host
-------------
======  ============  ===============================================================
type    name          fields
======  ============  ===============================================================
0x80    ACK           command u8, frame u16, offset u24
0x81    EVENT         one output event of the last layer: the engine's event payload
                      (channel, y, x, delta, packed from bit 0 in that order, widths of
                      :func:`~eventconv.core.event_format.event_fields`) without end_of_frame,
                      in ceil(bits / 8) bytes
0x82    END_OF_FRAME  frame u16, per layer events_in u32, macs u32, events_out u32, then
                      cycles u32
0x83    ERROR         code u8, frame u16, offset u24 (the expected position)
0x84    SYNC          token u8, frame u16, offset u24 (the expected position)
0x85    INFO          version u8 (3), digest u32, height u16, width u16, channels_in u16
                      (the input's), channels_out u16 (the last layer's), kernel_size u8
                      (the first layer's), pixels_per_cycle u8, chunk u16, window u8,
                      clock_frequency u32 (Hz), layers u8, shape u32
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
engine and been acknowledged. CONFIG applies the knobs, resets the engine
(reference, accumulators and pooled map back to the reset state; frames inside it are dropped
without output) and the expected position; its ACK comes after any output of the dropped frames.

Weights and bias
----------------
A board built for uploads (:mod:`.upload`; a board's ``uploads``, the ULX3S's default) keeps
each layer's weights in RAM and its bias
in registers, numbered as *memories* (layer by layer: a weight memory per lane, then the
bias as 4 bytes per output channel), and its accumulators are at least 18 bits wide
(:func:`.upload.upload_width`). WEIGHTS writes ``count``
bytes (1..``chunk``, any count) into memory ``memory`` from byte ``offset``; it is checked
whole as PIXELS is (CRC, length, ``offset + count`` within the memory, else LENGTH; BUSY when
no slot is free), but it has no position: it waits in a slot like PIXELS, in order with them,
and its ACK comes once its bytes are written. Written weights and bias take effect at the
next CONFIG (its engine reset writes the bias into the accumulators and primes the layers
with the new weights): upload only between runs, then CONFIG. A power cycle brings back the
weights built in. A board built without uploads answers WEIGHTS as an unknown type
(COMMAND) and gives ``shape`` 0.

INFO's ``digest`` is :func:`~eventconv.protocol.codec.config_digest` of the network built in
(weights and bias included); ``shape`` is :func:`.upload.shape_digest` (every layer's
geometry, pool, lanes and accumulator width). The driver refuses a configuration of another
shape in one line (the fields INFO shows that differ, or that a layer's channels, kernel,
pool, lanes or accumulator width does), uploads the weights and bias of one whose digest
differs before its first CONFIG, and again after a board reset. A board without uploads
(``shape`` 0) takes only the network built in, as in version 2.

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
                above ``chunk``, not a multiple of ``pixels_per_cycle``, or past the frame;
                WEIGHTS: count as PIXELS but any multiple, no such memory, or past its end)
4     POSITION  PIXELS (frame, offset) is not the expected position
5     TIMEOUT   a packet started but no END came within ``timeout_cycles`` of its last byte
6     FRAMING   a UART stop bit was low, or an invalid SLIP escape
7     OVERRUN   received bytes were lost (the receive buffer was full)
8     BUSY      PIXELS or WEIGHTS while all ``window`` slots are in use
9     VALUE     CONFIG dense above 1, or a layer's shift above 31
====  ========  ===============================================================

Checks run in this order; the first failing one is reported. After an error the board is at
once ready for the next packet (the next END delimits it); no reset is needed. The host's
recovery from an ERROR or from silence is SYNC with a fresh token: the SYNC answer follows
every answer to earlier packets and gives the position to resume at.

The host's checks (board to host)
---------------------------------
The host refuses, and counts, any board packet with a bad SLIP escape, a body longer than
``MAX_REPLY_BYTES`` (201: END_OF_FRAME of a 16-layer network with its CRC; the decoder keeps
at most that many bytes
whatever the line sends, text or noise), a CRC that does not check, an unknown type, or a
length other than its type's (every type has one length; EVENT's is ``1 + ceil(bits / 8)``).
So a flipped bit is caught by the CRC, and a lost, added or duplicated byte by the length or
the CRC; a lost END merges two packets, refused by their length; a flipped bit that forms an
END splits a packet: the first part is refused by its length, the second by its CRC, which it
passes by chance only (about 2**-16, and only where a type and its length happen to fit).
A refused packet is never fatal: what it carried is recovered as below.

Recovery (the host driver, :class:`eventconv.host.link.BoardLink`)
------------------------------------------------------------------
Every wait ends: an answer not back within ``timeout`` of the transport's clock (good
packets meanwhile extend the wait, at most four frames' output) sends the command again;
after ``retries`` resends the driver stops with one line naming what the port did (nothing,
bytes that are not packets, damaged packets, the errors answered). INFO, CONFIG and WEIGHTS are
sent again at once after an ERROR (WEIGHTS writes the same bytes again: harmless).

During a run, PIXELS go on from the position of each SYNC answer (after an ERROR, or
``timeout`` without a good packet); a position the packets sent cannot have left the board at
(before one it acknowledged) means the board was reset: the driver reports it, sends CONFIG
again and resumes (at most ``retries`` times). The END_OF_FRAME's ``events_in`` and ``macs``
are checked against the frame sent (the driver runs the delta detector, SPEC step 1, on the
frames it sends): a mismatch is a board that lost its state (e.g. reset at position (0, 0)
with its built-in knobs), handled the same way. After a damaged PIXELS packet the driver
sends shorter ones (a quarter, down to 8 samples) and lengthens them again after 8
acknowledged in a row.

Output lost on the way (a refused EVENT or END_OF_FRAME) is sent only once by the board, so
the frame is run again. The engine state before frame k is the reference ``r`` after frame
k - 1, the accumulators (exactly ``correlate(r) + bias``) and, with ``output_threshold`` 0 or
in dense mode, the emitted map ``R`` = the pooled map of those accumulators (SPEC steps 2-5).
So the driver takes the engine there from wherever it is without CONFIG: it sends priming
frames that move ``r`` to the reference after frame k - 1 (each sample by steps of more than
``threshold``, at most two for thresholds below 85, found by a search over 0..255 for any
threshold; one frame in dense mode), then, in event mode, a quiet frame (the reference
itself: no input events, hence no output), frame k, and a quiet frame again. Wire frame
numbers count every frame sent since CONFIG; the output of priming frames is ignored. The
events between two END_OF_FRAMEs received belong to the one frame between them that is not
known silent (a frame without input events gives none); when that is unclear they are
dropped. Runs of one frame from one state give the same output, so the whole events of its
runs add up (each position at most once) until there are ``events_out`` of them: then the
frame is done. A frame is run at most ``3 * (retries + 1)`` times. With ``output_threshold``
above 0 in event mode, ``R`` keeps history that priming cannot restore: the driver then sends
CONFIG and the frames before k again instead.

Not covered by the protocol (gateware): the board sends no notice of its own reset and
INFO/SYNC give no boot count nor the knobs, so a reset right after CONFIG (at position (0, 0))
is seen only through the figures above (a differing ``threshold`` or mode changes
``events_in``; a differing ``shift`` is not seen).
"""
