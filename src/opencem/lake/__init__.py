"""The Parquet lake: tables partitioned by date, a manifest, atomic commits, and the derived
(cube) tables the indicator engine writes. Every later package reads and writes through it."""

from .lake import MANIFEST, Lake, LakeBusy, LakeError, LakeFile, Manifest, Transaction, partition_days

__all__ = ["MANIFEST", "Lake", "LakeBusy", "LakeError", "LakeFile", "Manifest", "Transaction", "partition_days"]
