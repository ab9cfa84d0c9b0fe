"""Configuration support: JSON Schemas, file validation and the dask-jobqueue deployment configs.

The JSON Schemas live in the repository's top-level ``schemas/`` folder. The package reaches
them through ``xsa_enhance/schemas``, a symbolic link to ``../schemas`` in the source tree;
building a wheel or sdist follows the link, so an installed package carries real copies as
package data (``setup.cfg``: ``xsa_enhance = schemas/*.json``). ``XSA_ENHANCE_SCHEMAS`` (a
folder) overrides both. See :func:`schema_dir`.
"""

from __future__ import annotations

from xsa_enhance.config.jobqueue import (
    JOBQUEUE_PROFILES,
    JOBQUEUE_SYSTEMS,
    deploy_dir,
    jobqueue_config_name,
    load_jobqueue_config,
    make_jobqueue_cluster,
)
from xsa_enhance.config.store_check import is_product_store, validate_store
from xsa_enhance.config.schemas import available_schemas, load_schema, schema_dir
from xsa_enhance.config.validate import (
    ValidationIssue,
    detect_schema,
    load_validated,
    validate_data,
    validate_file,
)

__all__ = [
    "JOBQUEUE_PROFILES",
    "JOBQUEUE_SYSTEMS",
    "ValidationIssue",
    "available_schemas",
    "deploy_dir",
    "detect_schema",
    "jobqueue_config_name",
    "load_jobqueue_config",
    "load_schema",
    "load_validated",
    "make_jobqueue_cluster",
    "schema_dir",
    "validate_data",
    "validate_file",
    "validate_store",
    "is_product_store",
]
