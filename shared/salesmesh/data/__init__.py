"""The sales data contract: read a sales file, check every rule, return a normalised frame.

result = load_sales("gs://bucket/sales.csv.gz", Contract(horizon=28))
if result.report.ok:
    frame = result.frame  # date, store_id, product_id, sales, then numeric regressors
else:
    print(result.report.to_text())
"""

from salesmesh.data.contract import Contract, parse_mapping
from salesmesh.data.load import LoadResult, load_sales, load_sales_bytes, validate_file
from salesmesh.data.report import Finding, ValidationReport
from salesmesh.data.source import SourceInfo, read_source

__all__ = [
    "Contract",
    "Finding",
    "LoadResult",
    "SourceInfo",
    "ValidationReport",
    "load_sales",
    "load_sales_bytes",
    "parse_mapping",
    "read_source",
    "validate_file",
]
