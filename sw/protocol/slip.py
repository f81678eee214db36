"""SLIP framing (RFC 1055): escaping bodies, splitting received bytes into bodies."""

from eventconv.protocol.constants import END, ESC, ESC_END, ESC_ESC

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
    """Splits received bytes into packet bodies (escapes removed, CRC still attached)."""

    def __init__(self):
        self.body = bytearray()
        self.escape = False
        self.damaged = False

    def feed(self, data):
        """Bytes in, list of (body, damaged) out; empty packets are skipped."""
        out = []
        for byte in data:
            if byte == END:
                if self.body or self.damaged:
                    out.append((bytes(self.body), self.damaged))
                self.body, self.damaged, self.escape = bytearray(), False, False
            elif self.escape:
                self.escape = False
                if byte == ESC_END:
                    self.body.append(END)
                elif byte == ESC_ESC:
                    self.body.append(ESC)
                else:
                    self.damaged = True
            elif byte == ESC:
                self.escape = True
            else:
                self.body.append(byte)
        return out
