"""The dependency audit tells vulnerable, clean and not-audited apart (pip-audit's JSON)."""

from __future__ import annotations

from scripts.audit_deps import EXIT_CLEAN, EXIT_NOT_AUDITED, EXIT_VULNERABLE, summarize

SKIP = "Dependency not found on PyPI and could not be audited: flask (3.1.3)"


def test_vulnerable_package_fails_and_names_the_fix() -> None:
    status, lines = summarize(
        {
            "dependencies": [
                {"name": "flask", "version": "3.1.3", "vulns": []},
                {
                    "name": "requests",
                    "version": "2.19.0",
                    "vulns": [{"id": "PYSEC-2018-28", "fix_versions": ["2.20.0"]}],
                },
            ]
        }
    )
    assert status == EXIT_VULNERABLE
    assert "VULNERABLE requests 2.19.0: PYSEC-2018-28 (fix: 2.20.0)" in lines


def test_clean_report_passes() -> None:
    status, lines = summarize(
        {"dependencies": [{"name": "flask", "version": "3.1.3", "vulns": []}]}
    )
    assert status == EXIT_CLEAN
    assert lines == ["No known vulnerabilities in 1 locked packages."]


def test_everything_skipped_is_not_a_pass() -> None:
    # What pip-audit reports (with exit 0) when it cannot reach PyPI's JSON API.
    status, lines = summarize({"dependencies": [{"name": "flask", "skip_reason": SKIP}]})
    assert status == EXIT_NOT_AUDITED
    assert lines[0].startswith("NOT AUDITED: all 1 locked packages were skipped")
    assert "JSON API" in lines[0]
