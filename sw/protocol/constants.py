"""The protocol's numbers: packet types, error codes, field sizes (both sides use these)."""

from enum import IntEnum

__all__ = ["PROTOCOL_VERSION", "END", "ESC", "ESC_END", "ESC_ESC", "CRC_INIT", "CRC_POLY",
           "DEFAULT_BAUD_RATE", "Command", "Reply", "ErrorCode", "ERROR_MEANINGS",
           "PIXELS_HEADER_BYTES", "STATUS_BYTES", "INFO_BYTES", "END_OF_FRAME_BYTES",
           "FIGURE_WIDTH", "FRAME_WIDTH", "OFFSET_WIDTH", "COUNT_WIDTH", "MAX_CHUNK",
           "MAX_BODY_BYTES", "MAX_REPLY_BYTES"]

PROTOCOL_VERSION = 1
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
    ErrorCode.LENGTH: "packet length wrong for its type, or PIXELS count out of range",
    ErrorCode.POSITION: "PIXELS frame/offset is not the next expected position",
    ErrorCode.TIMEOUT: "packet not finished in time (truncated)",
    ErrorCode.FRAMING: "UART stop bit low or invalid SLIP escape",
    ErrorCode.OVERRUN: "bytes lost: the receive buffer overflowed",
    ErrorCode.BUSY: "PIXELS beyond the window: no free buffer slot",
    ErrorCode.VALUE: "CONFIG value out of range (shift 0..31, dense 0..1)",
}

# type u8, frame u16, offset u24, count u16.
PIXELS_HEADER_BYTES = 8
STATUS_BYTES = 7          # type, byte, frame u16, offset u24
INFO_BYTES = 23
END_OF_FRAME_BYTES = 19   # type, frame u16, events_in, macs, events_out, cycles (u32 each)
# Bit widths of the fields: engine figures, frame number, sample offset, sample count.
FIGURE_WIDTH = 32
FRAME_WIDTH, OFFSET_WIDTH, COUNT_WIDTH = 16, 24, 16
MAX_CHUNK = 4096
# Longest packet bodies (unescaped, CRC included): any packet (a PIXELS packet of MAX_CHUNK
# samples), and any the board sends (INFO; an EVENT is at most 1 + 6 + 2 bytes).
MAX_BODY_BYTES = PIXELS_HEADER_BYTES + MAX_CHUNK + 2
MAX_REPLY_BYTES = INFO_BYTES + 2
