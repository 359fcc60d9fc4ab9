"""Feature partitions as their Parquet files: an input manager for training windows that are
read in batches (torch candidates), so the window is never loaded as one frame per partition."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import dagster as dg

from mlplatform.resources.store import partition_path

if TYPE_CHECKING:
    from upath import UPath


class ParquetFilesIOManager(dg.ConfigurableIOManager):
    """Loads a multi-partition input as ``{partition_key: UPath}`` of the files the Parquet IO
    manager (same ``base_path``) wrote; stores nothing."""

    base_path: str

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        raise TypeError(
            f"{context.asset_key.to_user_string()}: parquet_files only loads inputs; "
            "store DataFrames with parquet_io"
        )

    def load_input(self, context: dg.InputContext) -> Any:
        key = context.asset_key
        files: dict[str, UPath] = {}
        for pk in context.asset_partition_keys:
            path = partition_path(self.base_path, key, pk)
            if not path.exists():
                raise FileNotFoundError(
                    f"{key.to_user_string()} partition {pk} is not materialized ({path})"
                )
            files[pk] = path
        return files
