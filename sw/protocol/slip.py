"""SLIP framing (RFC 1055): escaping bodies, splitting received bytes into bodies."""

from eventconv.protocol.constants import END, ESC, ESC_END, ESC_ESC, MAX_BODY_BYTES

__all__ = ["slip_escape", "SlipDecoder"]


def slip_escape(body):
    out = bytearray()
    for byte in body:
        if byte == END:
            out += bytes((ESC, ESC_END))
        elif byte == ESC:
            out += bytes((ESC, ESC_ESC))
        else:
            out.append(byte)
    return bytes(out)


class SlipDecoder:
    """Splits received bytes into packet bodies (escapes removed, CRC still attached).

    Parameters
    ----------
    limit : int
        Longest body kept (bytes after unescaping, CRC included). A longer one is damaged: its
        bytes past ``limit`` are dropped as they come, so the decoder holds at most ``limit``
        bytes whatever the line sends (text, noise, a stream without END).

    Attributes
    ----------
    dropped : int
        Bytes dropped past ``limit`` so far.
    """

    def __init__(self, limit=MAX_BODY_BYTES):
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        self.limit = limit
        self.body = bytearray()
        self.escape = False
        self.damaged = False
        self.dropped = 0

    def feed(self, data):
        """Bytes in, list of (body, damaged) out; empty packets are skipped. ``damaged``: an
        invalid escape, or a body longer than ``limit`` (then cut to ``limit`` bytes)."""
        out = []
        for byte in data:
            if byte == END:
                if self.body or self.damaged:
                    out.append((bytes(self.body), self.damaged))
                self.body, self.damaged, self.escape = bytearray(), False, False
                continue
            if self.escape:
                self.escape = False
                if byte == ESC_END:
                    byte = END
                elif byte == ESC_ESC:
                    byte = ESC
                else:
                    self.damaged = True
                    continue
            elif byte == ESC:
                self.escape = True
                continue
            if len(self.body) < self.limit:
                self.body.append(byte)
            else:
                self.damaged = True
                self.dropped += 1
        return out
