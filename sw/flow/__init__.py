"""The build flow: Verilog export (:mod:`.verilog`, :mod:`.export`), bitstreams and their
reports (:mod:`.synth`), per-block timing (:mod:`.timing`), the ECP5 netlist pass
(:mod:`.ecp5_outreg`), the YoWASP tools (:mod:`.tools`) and what each family asks of them
(:mod:`.families`)."""
