"""Move the flip-flops behind each ECP5 block RAM read port into the RAM (``REGMODE OUTREG``).

A DP16KD read port without its output register takes 5.83 ns from clock to data in nextpnr's
model (2.17 of the 8 ns of a 125 MHz cycle are then left for routing and logic); with the output
register on (``REGMODE_A/B = "OUTREG"``) it takes 0.96 ns. Yosys never turns it on: it maps a
synchronous read port to the RAM's read latch and leaves any register after it in the fabric.
:func:`absorb_output_registers` edits Yosys's JSON netlist between synthesis and place and
route: where every used data output of a RAM port feeds exactly one flip-flop, and those
flip-flops share the RAM port's clock and one clock enable, have no set or reset and start at
0, the flip-flops are removed and the port's output register takes their place (clock enable
on ``OCEA/B``). The design's cycle behaviour is unchanged: the output register loads the read
latch's word on the same edges the flip-flops did.

The design must give each RAM read port that single register stage (see
``registered_ram_outputs`` in :class:`eventconv.hw.layer.engine.EventConvEngine`); ports that do not
qualify are left as they are and reported.
"""

import json

__all__ = ["absorb_output_registers", "absorb_file"]

DATA_BITS = 18


def _text(value):
    """A parameter as text: Yosys's JSON ends a string made of 0s and 1s with a space."""
    return value.strip() if isinstance(value, str) else value


def _loads(module):
    loads = {}
    for name, cell in module["cells"].items():
        for port, bits in cell["connections"].items():
            if cell["port_directions"].get(port) == "output":
                continue
            for bit in bits:
                loads.setdefault(bit, []).append((name, port))
    for name, port in module["ports"].items():
        if port["direction"] != "input":
            for bit in port["bits"]:
                loads.setdefault(bit, []).append((None, name))
    return loads


def _port_registers(module, loads, ram, side):
    """The flip-flops behind port ``side`` of ``ram``: ``(registers, clock_enable)`` with
    ``registers[i]`` the flip-flop on data bit i (None: bit unused), or a reason string."""
    cells = module["cells"]
    cell = cells[ram]
    params = {key: _text(value) for key, value in cell["parameters"].items()}
    conn = cell["connections"]
    if params.get(f"REGMODE_{side}", "NOREG") != "NOREG":
        return "output register already on"
    if params.get(f"CLK{side}MUX", f"CLK{side}") != f"CLK{side}":
        return "inverted clock"
    clock = conn.get(f"CLK{side}")
    registers, enables = [], set()
    for i in range(DATA_BITS):
        bits = conn.get(f"DO{side}{i}")
        users = loads.get(bits[0], []) if bits else []
        if not users:
            registers.append(None)
            continue
        if len(users) != 1:
            return f"DO{side}{i} has {len(users)} loads"
        name, port = users[0]
        ff = cells.get(name) if name is not None else None
        if ff is None or ff["type"] != "TRELLIS_FF" or port != "DI":
            return f"DO{side}{i} feeds {'a port' if ff is None else ff['type'] + '.' + port}"
        p = {key: _text(value) for key, value in ff["parameters"].items()}
        c = ff["connections"]
        if p.get("CLKMUX", "CLK") != "CLK" or c.get("CLK") != clock:
            return f"DO{side}{i}'s flip-flop has another clock"
        if c.get("LSR", ["0"]) != ["0"] or p.get("LSRMUX", "LSR") != "LSR":
            return f"DO{side}{i}'s flip-flop has a set or reset"
        if p.get("REGSET", "RESET") != "RESET":
            return f"DO{side}{i}'s flip-flop starts at 1"   # the RAM's register starts at 0
        cemux = p.get("CEMUX", "CE")
        if cemux == "1":
            enables.add(("1", False))
        elif cemux in ("CE", "INV"):
            enables.add((c.get("CE", ["1"])[0], cemux == "INV"))
        else:
            return f"DO{side}{i}'s flip-flop has clock enable mode {cemux}"
        registers.append(name)
    if all(r is None for r in registers):
        return "no data output used"
    if len(enables) != 1:
        return "the flip-flops have different clock enables"
    return registers, enables.pop()


def _next_bit(module):
    bits = [b for cell in module["cells"].values() for v in cell["connections"].values()
            for b in v if isinstance(b, int)]
    bits += [b for net in module["netnames"].values() for b in net["bits"] if isinstance(b, int)]
    bits += [b for port in module["ports"].values() for b in port["bits"] if isinstance(b, int)]
    return max(bits, default=1) + 1


def _inverter(module, net, inverted):
    """The net carrying ``~net``: one LUT4 per net, shared (``inverted`` caches them)."""
    if net in ("0", "1"):
        return "1" if net == "0" else "0"
    if net not in inverted:
        bit = _next_bit(module)
        module["cells"][f"$eventconv$outreg_ce_inverter${bit}"] = {
            "hide_name": 1, "type": "LUT4",
            # Z = ~D (INIT bit i is Z for D C B A = i; bits 0-7 have D = 0).
            "parameters": {"INIT": "0000000011111111"}, "attributes": {},
            "port_directions": {"A": "input", "B": "input", "C": "input", "D": "input",
                                "Z": "output"},
            "connections": {"A": ["0"], "B": ["0"], "C": ["0"], "D": [net], "Z": [bit]}}
        inverted[net] = bit
    return inverted[net]


def absorb_output_registers(netlist):
    """Edit ``netlist`` (Yosys JSON, as a dict) in place. Returns ``(absorbed, skipped)``:
    the RAM ports given their output register (``"cell:B"``), and a dict of the RAM ports
    with a used data output that were left alone, each with the reason."""
    absorbed, skipped = [], {}
    for module in netlist["modules"].values():
        cells = module["cells"]
        loads = _loads(module)
        inverted = {}
        for ram in sorted(name for name, cell in cells.items() if cell["type"] == "DP16KD"):
            for side in "AB":
                found = _port_registers(module, loads, ram, side)
                if isinstance(found, str):
                    if found != "no data output used":
                        skipped[f"{ram}:{side}"] = found
                    continue
                registers, (enable, invert) = found
                cell = cells[ram]
                cell["parameters"][f"REGMODE_{side}"] = "OUTREG"
                # A flip-flop enabled by the complement of a net (Yosys's CEMUX "INV") gives
                # the port's OCE an inverter (a LUT: its enable path has the cycle to spare).
                cell["connections"][f"OCE{side}"] = [_inverter(module, enable, inverted)
                                                     if invert else enable]
                for i, name in enumerate(registers):
                    if name is not None:
                        cell["connections"][f"DO{side}{i}"] = cells[name]["connections"]["Q"]
                        del cells[name]
                absorbed.append(f"{ram}:{side}")
    return absorbed, skipped


def absorb_file(path):
    """:func:`absorb_output_registers` on a JSON netlist file, rewritten in place."""
    with open(path) as f:
        netlist = json.load(f)
    result = absorb_output_registers(netlist)
    with open(path, "w") as f:
        json.dump(netlist, f)
    return result
