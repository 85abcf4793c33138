"""smoothmax on the ``dask.distributed`` scheduler: worker processes, pickled tasks.

One ``LocalCluster`` of two single-threaded worker *processes* on this machine:
the chunk, combine and aggregate functions of the single-pass reduction travel
to the workers by pickle and their states come back through the scheduler, so
this is the path a real cluster takes. The results must equal NumPy's (smoothmax
on the computed array, and scipy's ``logsumexp``) within 1 ulp; softmax within
2 ulp of NumPy's (the row sums are rounded in another order).
"""

from __future__ import annotations

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
da = pytest.importorskip("dask.array")
scipy_special = pytest.importorskip("scipy.special")

import smoothmax  # noqa: E402


def ulps(got: np.ndarray, expected: np.ndarray) -> float:
    got, expected = np.asarray(got, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    return float(np.max(np.abs(got - expected) / np.spacing(np.maximum(np.abs(got), np.abs(expected)))))


def test_logsumexp_and_softmax_on_a_local_process_cluster():
    with distributed.LocalCluster(
        processes=True, n_workers=2, threads_per_worker=1, dashboard_address=None, silence_logs=40
    ) as cluster, distributed.Client(cluster) as client:
        # rows of 200_000 entries in 4 chunks each: every row's reduction merges 4 states
        x = da.random.default_rng(0).standard_normal((6, 200_000), chunks=(3, 50_000))
        row_lse = smoothmax.logsumexp(x, axis=1)
        total_lse = smoothmax.logsumexp(x)
        p = smoothmax.softmax(x, axis=1)
        log_p = smoothmax.log_softmax(x, axis=1)
        prefixes = smoothmax.logcumsumexp(x, axis=1)  # each chunk's scan merged with the earlier chunks' state
        assert all(isinstance(value, da.Array) for value in (row_lse, total_lse, p, log_p, prefixes))
        values, row_got, total_got, p_got, log_p_got, prefixes_got = client.compute(
            [x, row_lse, total_lse, p, log_p, prefixes], sync=True
        )
        assert len(client.scheduler_info()["workers"]) == 2
        # the tasks did run in the worker processes: the reduction's tasks are in their logs
        processing = client.run(lambda dask_worker: len(dask_worker.data) + dask_worker.state.executed_count)
        assert sum(processing.values()) > 0 and len(processing) == 2

    assert isinstance(values, np.ndarray) and values.shape == (6, 200_000)
    assert ulps(row_got, smoothmax.logsumexp(values, axis=1)) <= 1.0
    assert ulps(row_got, scipy_special.logsumexp(values, axis=1)) <= 1.0
    assert ulps(total_got, smoothmax.logsumexp(values)) <= 1.0
    assert ulps(total_got, scipy_special.logsumexp(values)) <= 1.0
    # softmax / log_softmax: the same formula exp(x_i - m) / (1 + rest), but `rest`
    # (a sum of 200_000 terms) is summed in another order (chunk by chunk): each
    # result carries its own rounding of that sum, so they may differ by 2 ulp
    assert ulps(p_got, smoothmax.softmax(values, axis=1)) <= 2.0
    assert ulps(log_p_got, smoothmax.log_softmax(values, axis=1)) <= 1.0
    np.testing.assert_allclose(p_got.sum(axis=1), 1.0, rtol=1e-13)
    # the prefixes merge states in another order than NumPy's one scan: a few ulp
    assert ulps(prefixes_got, smoothmax.logcumsumexp(values, axis=1)) <= 2.0
