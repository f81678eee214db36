"""The quick subset of the formal checks (SymbiYosys, Yices): each proof passes, each planted bug
makes its proof fail. ``make formal`` runs the full set (eventconv.sim.formal.checks)."""

import pytest

from eventconv.sim.formal.checks import CHECKS
from eventconv.sim.formal.runner import run_check

QUICK = [check for check in CHECKS if check.quick]


@pytest.mark.parametrize("check", QUICK, ids=[check.name for check in QUICK])
def test_formal(check, tmp_path):
    result = run_check(check, tmp_path / "check", timeout=300)
    assert result.status == check.expect, (
        f"{check.name}: {result.status}, expected {check.expect} "
        f"(failed: {result.failed()})\n{result.log_tail()}")
    if check.expect == "FAIL":
        # A planted bug is caught by a stated property, with a trace from the initial state.
        assert result.failed(), result.log_tail()
        assert not any(message.startswith("lemma:") for message in result.failed())


def test_quick_subset_covers_every_block():
    blocks = {check.name.split(".")[0] for check in CHECKS}
    assert blocks == {check.name.split(".")[0] for check in QUICK}
    for block in blocks:
        assert any(c.expect == "FAIL" for c in QUICK if c.name.startswith(block + "."))
