"""The chaos soak from the command line (`make chaos` runs it):

    python -m testbed.chaos [--seed N] [--duration S] [--nodes N] [--controls 1|2] [--kinds a,b]
                            [--report PATH]

Exit 0 when no invariant was violated, 1 when one was (each named, with the command that replays
the run), 2 on bad arguments, 3 when the run itself failed (the lab could not be built, a fault
could not be applied: said on stderr; no verdict). SIGTERM ends it cleanly (the lab removed). The
JSON report (default build/chaos/report-<seed>.json) has the seed, the schedule, faults_by_kind,
checks_by_invariant, smallest_margins and violations; the run's logs and its timeline are kept
beside it (logs-<seed>/, timeline-<seed>.jsonl and .html).
"""
from __future__ import annotations

import argparse
import signal
import sys
import traceback
from collections import Counter
from pathlib import Path

from testbed import lab as labs
from testbed.chaos.run import APPLIED, soak

ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.chaos", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of faults and checks")
    parser.add_argument("--nodes", type=int, default=8)
    parser.add_argument("--controls", type=int, choices=(1, 2), default=1,
                        help="control instances: 1 on SQLite, or 2 sharing a PostgreSQL server of the run's own")
    parser.add_argument("--kinds", help=f"comma-separated fault kinds (default: {','.join(APPLIED)})")
    parser.add_argument("--report", type=Path, help="where the JSON report goes")
    args = parser.parse_args(argv)
    if args.nodes < 3 or args.duration < 60:
        parser.error("a chaos run needs at least 3 nodes and 60 s")
    reason = labs.can_run()
    if reason:
        parser.error(f"the namespace lab cannot run here: {reason}")
    report_path = args.report or ROOT / "build" / "chaos" / f"report-{args.seed}.json"
    signal.signal(signal.SIGTERM, stop)  # unwinds through every `finally`: the lab does not leak
    try:
        report = soak(args.seed, args.duration, args.nodes, report_path,
                      kinds=[k for k in args.kinds.split(",") if k] if args.kinds is not None else None,
                      ha=args.controls == 2)
    except ValueError as exc:
        parser.error(str(exc))
    except Exception:  # the run broke: no verdict, never mistaken for a violation
        traceback.print_exc()
        print("chaos: the run itself failed (above); no verdict", file=sys.stderr)
        return 3
    checks = sum(report["checks_by_invariant"].values())
    print(f"chaos: {len(report['schedule'])} faults, {checks} checks, {len(report['violations'])} violations; "
          f"report {report_path}")
    if report["violations"]:
        named = Counter(violation["invariant"] for violation in report["violations"])
        print("chaos: violated: " + ", ".join(f"{name} ({count})" for name, count in sorted(named.items())))
        print(f"chaos: replay with: {report['replay']}")
        return 1
    return 0


def stop(signum, frame) -> None:
    raise SystemExit(f"chaos: stopped by signal {signum}")


if __name__ == "__main__":
    sys.exit(main())
