"""Data: files and hub names -> typed records -> a mixed train/eval split (batches live in collate.py)."""

from pixiu.data.formats import detect
from pixiu.data.loader import DataSplit, load_data, load_records
from pixiu.data.sources import DataError, read_rows

__all__ = ["DataError", "DataSplit", "detect", "load_data", "load_records", "read_rows"]
