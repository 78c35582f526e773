"""The artifact contract: what a model folder in ``models/`` holds and how it is written, read and verified.

`training/` writes artifacts through this package and `app/` reads them through it; the two never import each
other. The JSON schema ships as package data (``manifest.schema.json``); `SCHEMA_VERSION` is the version written,
and readers accept every minor of major `SUPPORTED_MAJOR`.
"""

from contract.hashing import MANIFEST, file_table, sha256_file
from contract.reading import (
    Artifact,
    ArtifactError,
    discover,
    is_artifact,
    load_schema,
    open_artifact,
    read_manifest,
    verify_files,
)
from contract.tasks import (
    GENERATION,
    LEGACY_CLASSIFICATION,
    SENTENCE_EMBEDDING,
    TASKS,
    TEXT_CLASSIFICATION,
    canonical_task,
)
from contract.writing import (
    SCHEMA_PATH,
    SCHEMA_VERSION,
    SUPPORTED_MAJOR,
    exporter_versions,
    publish,
    staging_dir,
    validate_manifest,
    write_manifest,
)

__all__ = [
    "GENERATION", "LEGACY_CLASSIFICATION", "MANIFEST", "SCHEMA_PATH", "SCHEMA_VERSION", "SENTENCE_EMBEDDING",
    "SUPPORTED_MAJOR", "TASKS", "TEXT_CLASSIFICATION", "Artifact", "ArtifactError", "canonical_task", "discover",
    "exporter_versions", "file_table", "is_artifact", "load_schema", "open_artifact", "publish", "read_manifest",
    "sha256_file", "staging_dir", "validate_manifest", "verify_files", "write_manifest",
]
