"""The batch pipeline: stages wired together, executors, and the run driver.

See ``docs/pipeline.md``. The stages (:mod:`~xsa_enhance.pipeline.stages`) are plain typed
functions; :mod:`~xsa_enhance.pipeline.tasks` groups them into the units an executor runs;
:mod:`~xsa_enhance.pipeline.executors` runs them in process or on Dask;
:func:`~xsa_enhance.pipeline.run.run_pipeline` drives a run and commits the catalogs.
"""

from xsa_enhance.pipeline.config import (
    LAST_SUCCESSFUL_RUN,
    EnhanceSettings,
    ExecutorSettings,
    PipelineConfig,
    SelectionSettings,
    load_pipeline,
)
from xsa_enhance.pipeline.executors import (
    DaskExecutor,
    InProcessExecutor,
    default_worker_count,
    make_executor,
)
from xsa_enhance.pipeline.run import run_pipeline
from xsa_enhance.pipeline.summary import ProgressState, RunSummary
from xsa_enhance.pipeline.weights import ModelInfo, resolve_models
from xsa_enhance.pipeline.selection import SelectionPlan, plan_selection

__all__ = [
    "LAST_SUCCESSFUL_RUN",
    "DaskExecutor",
    "EnhanceSettings",
    "ExecutorSettings",
    "InProcessExecutor",
    "ModelInfo",
    "PipelineConfig",
    "ProgressState",
    "RunSummary",
    "SelectionPlan",
    "SelectionSettings",
    "default_worker_count",
    "load_pipeline",
    "make_executor",
    "plan_selection",
    "resolve_models",
    "run_pipeline",
]
