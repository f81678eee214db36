"""The case and result files between a pytest process and its cocotb test, and a cycle
counter: what every testbench here shares (:func:`eventconv.sim.runner.run_cocotb` names the
files in the environment)."""

import json
import os

import cocotb
from cocotb.triggers import RisingEdge

__all__ = ["read_case", "write_result", "CycleCounter"]



def read_case():
    with open(os.environ["EVENTCONV_CASE"]) as f:
        return json.load(f)


def write_result(result):
    with open(os.environ["EVENTCONV_RESULT"], "w") as f:
        json.dump(result, f)


class CycleCounter:
    def __init__(self, clk):
        self.clk, self.count = clk, 0
        cocotb.start_soon(self._run())

    async def _run(self):
        while True:
            await RisingEdge(self.clk)
            self.count += 1
