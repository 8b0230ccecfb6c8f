"""Run the optimiser with single-threaded BLAS.

L-BFGS-B makes many BLAS calls on vectors of a few thousand entries. Multi-threaded
OpenBLAS turns each into a thread hand-off that costs more than the arithmetic; on a busy
2-core machine this slowed fits 3-20x (measured). ``threadpoolctl`` (a dependency of
scikit-learn, so usually present) limits the BLAS pools for the duration of a fit; if it is
not installed the fit still runs, just with the default thread pools.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext


def single_threaded_blas() -> AbstractContextManager[object]:
    """Context manager limiting BLAS libraries to one thread (no-op without threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional speed-up only
        return nullcontext()
    return threadpool_limits(limits=1, user_api="blas")
