"""The per-block timing harness keeps the block whole: its inputs are driven, its outputs used."""

import re

from eventconv.flow.timing import block_timing
from eventconv.hw.primitives.stream_register import StreamRegister


def test_harness_keeps_the_block(tmp_path):
    # A 16-bit register slice holds 2 x 16 payload flip-flops plus its valid bits; with its
    # inputs undriven or outputs unused Yosys would remove most of them.
    fmax, path, log = block_timing(StreamRegister(16), "ice40", 48, tmp_path)
    report = (tmp_path / "yosys.log").read_text()
    flip_flops = sum(int(n) for n in re.findall(r"^\s+(\d+)\s+SB_DFF\w*$", report, re.M))
    assert flip_flops >= 2 * 16 + 2 + 16, report[-3000:]
    assert fmax > 48 and path, log[-2000:]
