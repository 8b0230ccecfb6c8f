"""Run every benchmark module ``bench/bench_*.py`` in turn: ``python -m bench.run_all`` (``make bench``).

Each module's ``main()`` is called with no arguments (so each uses its defaults and writes its
own results file and docs section). A failing benchmark is reported and the rest still run;
the exit code is non-zero if any failed.
"""

from __future__ import annotations

import importlib
import sys
import time
import traceback
from pathlib import Path


def benchmark_modules() -> list[str]:
    """Dotted names of ``bench/bench_*.py``, sorted."""
    return sorted(f"bench.{p.stem}" for p in Path(__file__).parent.glob("bench_*.py"))


def run(name: str) -> bool:
    """Import ``name`` and call its ``main()``; True when it finished without an exception."""
    print(f"== {name}", flush=True)
    start = time.perf_counter()
    try:
        main = importlib.import_module(name).main
        sys.argv = [name]  # argparse-based mains must not see run_all's own arguments
        main()
    except Exception:  # noqa: BLE001 - report and go on to the next benchmark
        traceback.print_exc()
        print(f"== {name} FAILED after {time.perf_counter() - start:.0f} s", flush=True)
        return False
    print(f"== {name} done in {time.perf_counter() - start:.0f} s", flush=True)
    return True


def main() -> int:
    failed = [name for name in benchmark_modules() if not run(name)]
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
