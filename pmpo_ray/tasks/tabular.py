"""Read records from CSV and Parquet files, one dict per row, rows numbered from 1.

CSV goes through the standard library so every cell stays the text the file has ('007'
stays '007'); Parquet keeps its own column types.
"""

from __future__ import annotations

import csv
from pathlib import Path

from pmpo_ray.tasks.formats import DataError


def csv_records(path: Path) -> list[tuple[int, dict]]:
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            # Cells past the header land under the key None; they belong to no column.
            return [
                (row, {k: v for k, v in record.items() if k is not None})
                for row, record in enumerate(reader, start=1)
            ]
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise DataError(f"{path}: cannot read ({reason})") from None
    except csv.Error as error:
        raise DataError(f"{path}: not valid CSV ({error})") from None


def parquet_records(path: Path) -> list[tuple[int, dict]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as error:
        raise DataError(f"{path}: cannot read as Parquet ({error})") from None
    return list(enumerate(table.to_pylist(), start=1))
