"""``python -m conformance``: run every case on every installed backend and dtype.

Prints the case x backend x dtype table of max ulp errors (``!`` marks a
failure), a per backend x dtype summary and the failures; exits 1 on any
failure. ``--peers`` adds the side-by-side table of scipy / torch / jax.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Sequence

from . import floats, peers, runner
from .backends import BACKENDS
from .cases import load_cases, select


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m conformance", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", action="append", metavar="NAME",
                        help=f"only this backend (repeatable): {', '.join(b.name for b in BACKENDS)}")
    parser.add_argument("--case", action="append", metavar="PATTERN",
                        help="only cases whose id contains PATTERN or matches it as a glob (repeatable)")
    parser.add_argument("--dtype", action="append", choices=floats.DTYPES, help="only this dtype (repeatable)")
    parser.add_argument("--json", metavar="PATH", type=Path, help="write the full report as JSON")
    parser.add_argument("--peers", action="store_true",
                        help="also compare scipy, torch and jax's own functions side by side")
    parser.add_argument("--all-rows", action="store_true", help="with --peers: show every row, not only notable ones")
    parser.add_argument("--quiet", action="store_true", help="no per-case table: summary and failures only")
    parser.add_argument("--list", action="store_true", help="list the selected case ids and exit")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    options = _parser().parse_args(argv)
    cases = select(load_cases(), options.case)
    if not cases:
        print("no case matches", options.case, file=sys.stderr)
        return 2
    if options.list:
        print("\n".join(f"{case.id}  [{', '.join(case.dtypes)}]" for case in cases))
        return 0
    problems = [problem for case in cases for problem in case.validate()]
    if problems:
        print("malformed cases:\n" + "\n".join(problems), file=sys.stderr)
        return 2

    known = {backend.name: backend for backend in BACKENDS}
    unknown = [name for name in options.backend or [] if name not in known]
    if unknown:
        print(f"unknown backend(s) {unknown}; registered: {sorted(known)}", file=sys.stderr)
        return 2
    wanted = [known[name] for name in options.backend] if options.backend else BACKENDS
    backends = [backend for backend in wanted if backend.available]
    missing = [backend.name for backend in wanted if not backend.available]

    import smoothmax

    started = time.perf_counter()
    results = runner.run_checks(cases, backends, options.dtype, smoothmax)
    elapsed = time.perf_counter() - started
    columns = runner.columns_of(backends, options.dtype)

    if not options.quiet:
        print(runner.format_matrix(results, columns, [case.id for case in cases]))
        print()
    print(f"smoothmax {smoothmax.__version__} from {Path(smoothmax.__file__).parent}")
    if missing:
        print(f"not installed (skipped): {', '.join(missing)}")
    print(runner.format_summary(results, columns))
    failures = [result for result in results if not result.ok]
    checks = sum(1 for result in results if result.status != runner.SKIP)
    print(f"\n{len(cases)} cases, {checks} checks on {len(backends)} backends in {elapsed:.1f} s: "
          f"{checks - len(failures)} passed, {len(failures)} failed")
    if failures:
        print(runner.format_failures(results))

    peer_rows = []
    if options.peers:
        peer_rows = peers.run_peers(cases, backends, options.dtype, smoothmax)
        print("\nPeers (max ulp error vs the exact result; NaN/inf/finite/not NaN = wrong special value):")
        print(peers.format_peers(peer_rows, backends, only_interesting=not options.all_rows))
        print()
        print(peers.peer_summary(peer_rows))

    if options.json:
        report = {
            "smoothmax": {"version": smoothmax.__version__, "path": str(Path(smoothmax.__file__).parent)},
            "backends": [backend.name for backend in backends],
            "not_installed": missing,
            "results": runner.as_json(results),
            "passed": not failures,
        }
        if options.peers:
            report["peers"] = [
                {"case": row.case, "dtype": row.dtype,
                 "results": {name: result for name, result in zip(row.results, runner.as_json(list(row.results.values())))}}
                for row in peer_rows
            ]
        options.json.parent.mkdir(parents=True, exist_ok=True)
        options.json.write_text(json.dumps(report, indent=1))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
