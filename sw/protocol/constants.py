"""The protocol's numbers: packet types, error codes, field sizes (both sides use these)."""

from enum import IntEnum

from eventconv.core.network import MAX_LAYERS

__all__ = ["PROTOCOL_VERSION", "END", "ESC", "ESC_END", "ESC_ESC", "CRC_INIT", "CRC_POLY",
           "DEFAULT_BAUD_RATE", "Command", "Reply", "ErrorCode", "ERROR_MEANINGS",
           "PIXELS_HEADER_BYTES", "STATUS_BYTES", "INFO_BYTES", "config_bytes",
           "end_of_frame_bytes", "FIGURE_WIDTH", "FRAME_WIDTH", "OFFSET_WIDTH", "COUNT_WIDTH",
           "MAX_CHUNK", "MAX_BODY_BYTES", "MAX_REPLY_BYTES"]

# 2: networks (CONFIG and END_OF_FRAME per layer, INFO's layer count). 3: WEIGHTS, and INFO's
# shape digest.
PROTOCOL_VERSION = 3
# SLIP (RFC 1055) framing bytes.
END, ESC, ESC_END, ESC_ESC = 0xC0, 0xDB, 0xDC, 0xDD
CRC_INIT, CRC_POLY = 0xFFFF, 0x1021
DEFAULT_BAUD_RATE = 1_000_000


class Command(IntEnum):
    """Host to board packet types."""
    INFO = 0x01
    CONFIG = 0x02
    PIXELS = 0x03
    SYNC = 0x04
    WEIGHTS = 0x05


class Reply(IntEnum):
    """Board to host packet types."""
    ACK = 0x80
    EVENT = 0x81
    END_OF_FRAME = 0x82
    ERROR = 0x83
    SYNC = 0x84
    INFO = 0x85


class ErrorCode(IntEnum):
    CRC = 1
    COMMAND = 2
    LENGTH = 3
    POSITION = 4
    TIMEOUT = 5
    FRAMING = 6
    OVERRUN = 7
    BUSY = 8
    VALUE = 9


ERROR_MEANINGS = {
    ErrorCode.CRC: "checksum mismatch (bytes damaged, or a truncated packet ran into the next)",
    ErrorCode.COMMAND: "unknown packet type",
    ErrorCode.LENGTH: ("packet length wrong for its type, PIXELS count out of range, or WEIGHTS "
                       "past its memory's end"),
    ErrorCode.POSITION: "PIXELS frame/offset is not the next expected position",
    ErrorCode.TIMEOUT: "packet not finished in time (truncated)",
    ErrorCode.FRAMING: "UART stop bit low or invalid SLIP escape",
    ErrorCode.OVERRUN: "bytes lost: the receive buffer overflowed",
    ErrorCode.BUSY: "PIXELS or WEIGHTS beyond the window: no free buffer slot",
    ErrorCode.VALUE: "CONFIG value out of range (dense 0..1, a layer's shift 0..31)",
}

# type u8, frame u16, offset u24, count u16 (WEIGHTS: type, memory u16, offset u24, count u16).
PIXELS_HEADER_BYTES = 8
STATUS_BYTES = 7          # type, byte, frame u16, offset u24
INFO_BYTES = 28


def config_bytes(layers):
    """CONFIG's length (type included): threshold, dense, each layer's shift and
    output_threshold (u8 each)."""
    return 1 + 2 + 2 * layers


def end_of_frame_bytes(layers):
    """END_OF_FRAME's length: type, frame u16, each layer's events_in, macs and events_out,
    then cycles (u32 each)."""
    return 1 + 2 + 4 * (3 * layers + 1)


# Bit widths of the fields: engine figures, frame number, sample offset, sample count.
FIGURE_WIDTH = 32
FRAME_WIDTH, OFFSET_WIDTH, COUNT_WIDTH = 16, 24, 16
MAX_CHUNK = 4096
# Longest packet bodies (unescaped, CRC included): any packet (a PIXELS packet of MAX_CHUNK
# samples), and any the board sends (INFO, or END_OF_FRAME of the longest network; an EVENT is
# at most 1 + 6 + 2 bytes).
MAX_BODY_BYTES = PIXELS_HEADER_BYTES + MAX_CHUNK + 2
MAX_REPLY_BYTES = max(INFO_BYTES, end_of_frame_bytes(MAX_LAYERS)) + 2
