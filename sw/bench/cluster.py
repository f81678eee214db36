"""The Dask client the long jobs (sweeps, soaks) run their tasks on."""

import contextlib

__all__ = ["dask_client"]


@contextlib.contextmanager
def dask_client(scheduler=None, workers=2):
    """A ``dask.distributed`` client: of the running scheduler at ``scheduler`` (an address),
    or of a LocalCluster of ``workers`` single-threaded processes here (the tasks hold the
    GIL), closed on leaving."""
    from dask.distributed import Client, LocalCluster

    cluster = None
    if scheduler is None:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=None)
    try:
        with Client(cluster if cluster is not None else scheduler) as client:
            yield client
    finally:
        if cluster is not None:
            cluster.close()
