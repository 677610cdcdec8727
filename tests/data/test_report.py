"""The report: JSON-safe to_dict, readable to_text, and no traceback for any bad content."""

from __future__ import annotations

import gzip
import json

import pytest

from salesmesh.data import Finding, ValidationReport, load_sales_bytes, validate_file


def test_to_dict_is_plain_json(write_file, sales_text):
    """to_dict of a rich report serialises with the standard json module, no default hook."""
    text = sales_text().replace("2024-01-05,S1,P1,4", "2024-01-05,S1,P1,x")
    report = validate_file(write_file("sales.csv", text))
    decoded = json.loads(json.dumps(report.to_dict()))
    assert decoded["errors"][0]["examples"] == [{"line": 6, "column": "sales", "value": "x"}]
    assert decoded["stats"]["delimiter"] == ","


def test_to_text_lists_errors_examples_warnings_and_stats():
    """to_text has the verdict line, each finding with rule id and examples, then stats."""
    report = ValidationReport(stats={"rows": 3, "source": {"uri": "gs://b/s.csv"}})
    report.error("sales_numeric", "column 'sales' is not a number", [{"line": 4, "value": "x"}])
    report.warn("single_store", "no store column")
    text = report.to_text().splitlines()
    assert text[0] == "REJECTED: gs://b/s.csv (1 error, 1 warning)"
    assert text[1:4] == [
        "ERROR [sales_numeric] column 'sales' is not a number",
        "    line 4, value='x'",
        "WARNING [single_store] no store column",
    ]
    assert "    rows: 3" in text


def test_ok_report_has_no_errors():
    """ok is true exactly when there are no errors; warnings do not count."""
    report = ValidationReport(warnings=[Finding("duplicates", "merged")])
    assert report.ok
    report.error("empty", "nothing")
    assert not report.ok


@pytest.mark.parametrize(
    "content",
    [
        b"\x00",
        b",,,\n,,,\n",
        b'date,sales\n"',
        b"\xff\xfe",
        b"date\n2024-01-01\n",
        b"date,sales\n2024-01-01\n2024-01-02,1,2,3\n",
        b"sales,date\n1e999,2024-01-01\n",
        b"date;sales\n\xff\xfe\xfa;\x81\n",
        gzip.compress(b"\x1f\x8b\x08garbage", mtime=0),
        b"date,store,sku,qty\n" + b"2024-01-01,S,P,1\n" * 3 + b"\x1a",
        "date,store,sku,qty\n2024-01-01,S,P,\u2028\n".encode(),
    ],
)
def test_bad_content_never_escapes_as_exception(content):
    """Odd bytes end in error findings with a known rule, never an exception or 'internal'."""
    result = load_sales_bytes(content, "odd.csv")
    assert not result.report.ok
    assert result.frame is None
    assert "internal" not in result.report.rules


def test_long_cell_values_are_cut_short_in_examples(write_file):
    """A huge cell does not turn into a huge report: examples keep 100 characters."""
    from salesmesh.data import Contract, validate_file

    rows = "".join(f"2024-01-{d:02d},S1,P1,{d}\n" for d in range(1, 31))
    huge = "x" * 50_000
    path = write_file("huge.csv", f"date,store,item,qty\n{rows}2024-01-31,S1,P1,{huge}\n")
    report = validate_file(path, Contract(horizon=7))
    value = report.errors[0].examples[0]["value"]
    assert report.rules == ["sales_numeric"]
    assert value.startswith("x" * 100) and value.endswith("(50,000 characters)")
    assert len(value) < 200
