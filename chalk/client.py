"""``ChalkClient``: the Python entry point (register models; deploy and query as they land).

Finds the project (``chalk.yaml``, walking up from the working directory) and opens its catalog.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from chalk.catalog import ModelVersion, ScalingGroup, open_catalog
from chalk.catalog.config import Project, find_project
from chalk.catalog.models import schema_from_mapping
from chalk.catalog.resources import AutoScalingSpec, ScalingGroupResourceRequest
from chalk.deploy.groups import delete_group, deploy_model_version, wait_until_serving

__all__ = ["ChalkClient"]


class ChalkClient:
    """The client of one project's catalog and backend.

    Parameters
    ----------
    project_dir
        Where to start looking for ``chalk.yaml`` (default: the working directory).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (root / "chalk.yaml").write_text("project: demo\\n")
    >>> client = ChalkClient(project_dir=root)
    >>> version = client.register_model_version(
    ...     name="my-model",
    ...     input_schema={"text": pa.large_string()},
    ...     output_schema={"entities": pa.large_string()},
    ...     model_image="my-model-image:latest",
    ... )
    >>> version.model_name, version.model_version
    ('my-model', 1)
    """

    def __init__(self, *, project_dir: str | Path | None = None) -> None:
        self.project: Project = find_project(Path(project_dir) if project_dir else None)
        self._catalog = open_catalog(self.project)

    def register_model_version(
        self,
        name: str,
        input_schema: Mapping[str, pa.DataType] | pa.Schema,
        output_schema: Mapping[str, pa.DataType] | pa.Schema,
        model_image: str,
        aliases: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> ModelVersion:
        """Register the next version of model ``name`` (numbered from 1 per name).

        ``input_schema`` lists the model's arguments in call order: ``catalog_call``'s
        argument i becomes field i. ``output_schema`` has exactly one field.
        """
        return self._catalog.models.register(
            name,
            input_schema=schema_from_mapping(input_schema, what=f"model {name!r} input_schema"),
            output_schema=schema_from_mapping(output_schema, what=f"model {name!r} output_schema"),
            image=model_image,
            aliases=aliases or (),
            metadata=metadata,
        )

    def get_model_version(
        self, name: str, version_or_alias: int | str | None = None
    ) -> ModelVersion:
        """One version of ``name``: the latest, or the one with that number or alias."""
        return self._catalog.models.get(name, version_or_alias)

    def list_model_versions(self, name: str) -> list[ModelVersion]:
        """Every version of ``name``, oldest first."""
        return self._catalog.models.list(name)

    def list_scaling_groups(self) -> list[ScalingGroup]:
        """Every live scaling group of the project, oldest first, with its reported status.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (root / "chalk.yaml").write_text("project: demo\\n")
        >>> ChalkClient(project_dir=root).list_scaling_groups()
        []
        """
        return self._catalog.groups.list()

    def get_scaling_group(self, name: str) -> ScalingGroup:
        """The live scaling group ``name``: its spec, status, replica counts and URL.

        Raises ``NotFoundError`` when no live group has that name (saying when, if it was
        deleted).

        Examples
        --------
        >>> import tempfile, pathlib
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (root / "chalk.yaml").write_text("project: demo\\n")
        >>> ChalkClient(project_dir=root).get_scaling_group("ner")
        Traceback (most recent call last):
        ...
        chalk.catalog.errors.NotFoundError: there is no scaling group named 'ner'
        """
        return self._catalog.groups.get(name)

    def delete_scaling_group(self, name: str) -> ScalingGroup:
        """Delete the scaling group ``name`` and return its record, now marked deleted.

        Its replicas and URL stop (the local controller, started if needed, stops them); the
        record stays in the catalog's history and the name is free for a new group.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (root / "chalk.yaml").write_text("project: demo\\n")
        >>> ChalkClient(project_dir=root).delete_scaling_group("ner")
        Traceback (most recent call last):
        ...
        chalk.catalog.errors.NotFoundError: there is no scaling group named 'ner'
        """
        return delete_group(self.project, self._catalog, name)

    def deploy_model_version_to_scaling_group(
        self,
        name: str,
        model_name: str,
        model_version: int | str,
        scaling: AutoScalingSpec | None = None,
        resources: ScalingGroupResourceRequest | None = None,
        env_vars: Mapping[str, str] | None = None,
        port: int | None = None,
        wait: bool = False,
    ) -> ScalingGroup:
        """Serve a registered model version from scaling group ``name``.

        Creates the group, or updates an existing one to this version (its replicas roll
        with no call lost). On update, ``None`` keeps the current value of ``scaling``,
        ``resources``, ``env_vars`` and ``port``. The handler receives its arguments named by
        the model's input_schema, in order (``CHALK_INPUT_ARGS``). With ``wait=True`` it
        returns once the new version serves.

        Examples
        --------
        >>> from chalk.scaling import AutoScalingSpec, ScalingGroupResourceRequest
        >>> spec = AutoScalingSpec(min_replicas=1, max_replicas=2,
        ...                        target_cpu_utilization_percentage=70)
        >>> spec.autoscales
        True
        """
        group, _spec, _changed = deploy_model_version(
            self.project,
            self._catalog,
            name,
            model_name,
            model_version,
            scaling=scaling,
            resources=resources,
            env=env_vars,
            port=port,
        )
        assert group is not None  # not a dry run
        if wait:
            return wait_until_serving(self._catalog, name)
        return group
