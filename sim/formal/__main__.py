"""``python -m eventconv.sim.formal``: run the formal checks (``make formal`` runs them all).

Prints one line per check (name, mode and depth, status, time) and exits 1 if any check ended
other than expected (a proof not PASS, a planted bug not FAIL).
"""

import argparse
import fnmatch
import sys
from pathlib import Path

from eventconv.sim.formal.checks import CHECKS
from eventconv.sim.formal.runner import DEFAULT_SOLVER, SOLVERS, run_check


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m eventconv.sim.formal",
                                     description="Formal stream proofs (SymbiYosys).")
    parser.add_argument("patterns", nargs="*", help="only checks whose name matches (glob)")
    parser.add_argument("--quick", action="store_true", help="only the quick subset")
    parser.add_argument("--list", action="store_true", help="list the checks and stop")
    parser.add_argument("--solver", choices=sorted(SOLVERS), default=DEFAULT_SOLVER)
    parser.add_argument("--timeout", type=float, default=1800.0,
                        help="seconds per check (default 1800)")
    parser.add_argument("--build-dir", type=Path, default=Path("build/formal"))
    args = parser.parse_args(argv)

    checks = [check for check in CHECKS
              if (not args.quick or check.quick)
              and (not args.patterns
                   or any(fnmatch.fnmatch(check.name, pattern) for pattern in args.patterns))]
    if args.list:
        for check in checks:
            print(f"{check.name:50s} {check.mode} {check.depth:3d}  expect {check.expect}"
                  f"{'  (quick)' if check.quick else ''}  {check.what}")
        return 0
    if not checks:
        print("no check matches", file=sys.stderr)
        return 2
    bad = []
    total = 0.0
    for check in checks:
        if args.solver != check.solver:
            check = type(check)(**{**check.__dict__, "solver": args.solver})
        result = run_check(check, args.build_dir / check.name, timeout=args.timeout)
        total += result.seconds
        mark = "ok" if result.as_expected else "UNEXPECTED"
        failed = f"  [{'; '.join(result.failed())}]" if result.status == "FAIL" else ""
        print(f"{check.name:50s} {check.mode:5s} {check.depth:3d}  {result.status:7s} "
              f"(expect {check.expect}) {result.seconds:7.1f} s  {mark}{failed}", flush=True)
        if not result.as_expected:
            bad.append(result)
    print(f"{len(checks) - len(bad)} passed, {len(bad)} failed ({total:.0f} s)")
    for result in bad:
        print(f"\n--- {result.name}: {result.status}, log {result.workdir / 'sby.log'}")
        print(result.log_tail())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
