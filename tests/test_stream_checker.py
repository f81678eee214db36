"""The cocotb stream checker that every testbench's monitor runs (eventconv.sim.streams): it
passes a source that holds its beat and fails one that breaks the rule."""

import pytest

from eventconv.sim.runner import SimulationFailed, run_cocotb

# A source whose beat is offered from reset on; `fault` picks how it breaks the rule.
SOURCE = """
module source(input clk, input rst, output o__valid, input o__ready, output [7:0] o__payload);
  reg [7:0] count;
  always @(posedge clk) count <= rst ? 8'd0 : count + 8'd1;
  assign o__valid = {valid};
  assign o__payload = {payload};
endmodule
"""
CASES = {"holds": ("1'b1", "8'd5", None),
         "valid_blinks": ("count[0]", "8'd5", "valid dropped"),
         "payload_moves": ("1'b1", "count", "payload changed")}


@pytest.mark.parametrize("case", CASES)
def test_stream_checker(case, tmp_path):
    valid, payload, message = CASES[case]
    run = dict(verilog_text=SOURCE.format(valid=valid, payload=payload), toplevel="source",
               test_module="eventconv.sim.protocol_check_tb", case={},
               build_root=tmp_path)
    if message is None:
        assert run_cocotb(**run) == {"cycles": 8}
    else:
        # The failed cocotb test ends the run: one error, whose log tail names the fault.
        with pytest.raises(SimulationFailed) as error:
            run_cocotb(**run)
        assert "simulation of source" in error.value.summary
        assert message in str(error.value)
