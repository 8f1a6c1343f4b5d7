"""A Dagster run in its own OS process, for the crash and concurrency suites.

``python -m growingio_pipeline_tests.reliability_worker PARTITION [TYPE ...]`` materializes one
partition of the event assets (all types, or the named ones) with the resources configured from the
``GROWINGIO_*`` environment, exactly as the code location does. With ``GROWINGIO_WORKER_EXECUTOR=
multiprocess`` (and ``DAGSTER_HOME`` set) the run uses the multiprocess executor on a persistent
instance; otherwise the in-process executor. Exits 0 when the run succeeded, 1 when it failed.
"""

from __future__ import annotations

import os
import sys

import dagster as dg

from growingio_pipeline.resources import resources_from_env
from growingio_pipeline_tests.pipeline_harness import EVENT_ASSETS

MULTIPROCESS_JOB = "growingio_multiprocess_job"


def multiprocess_job() -> dg.JobDefinition:
    """The event assets as a job on the multiprocess executor (rebuilt in each step's process)."""
    job = dg.define_asset_job(MULTIPROCESS_JOB, selection=[EVENT_ASSETS], executor_def=dg.multiprocess_executor)
    return dg.Definitions(assets=[EVENT_ASSETS], jobs=[job], resources=resources_from_env()).get_job_def(
        MULTIPROCESS_JOB
    )


def run(partition_key: str, names: list[str]) -> bool:
    """Materialize the partition; whether the run succeeded."""
    selection = [dg.AssetKey(["growingio", name]) for name in names] or None
    if os.environ.get("GROWINGIO_WORKER_EXECUTOR") == "multiprocess":
        with dg.DagsterInstance.get() as instance:
            result = dg.execute_job(
                dg.reconstructable(multiprocess_job),
                instance=instance,
                tags={"dagster/partition": partition_key},
                asset_selection=selection,
                raise_on_error=False,
            )
            return result.success
    result = dg.materialize(
        [EVENT_ASSETS],
        partition_key=partition_key,
        selection=selection,
        resources=resources_from_env(),
        raise_on_error=False,
    )
    return result.success


if __name__ == "__main__":
    sys.exit(0 if run(sys.argv[1], sys.argv[2:]) else 1)
