"""Audit the locked dependencies (uv.lock) for known vulnerabilities with pip-audit.

Usage: .venv/bin/python scripts/audit_deps.py [--require-data]

pip-audit asks PyPI's JSON API for each pinned version's advisories. When that API cannot
be reached (offline, or a registry mirror that serves packages but not the JSON API),
pip-audit skips every package and still exits 0; this wrapper says so plainly instead.
Exit status: 0 audited and clean, 1 vulnerabilities found, 3 nothing could be audited
(with --require-data that is a failure; without, the caller decides).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
UV = ROOT / ".uv" / "bin" / "uv"
PIP_AUDIT = ROOT / ".venv" / "bin" / "pip-audit"

EXIT_CLEAN = 0
EXIT_VULNERABLE = 1
EXIT_NOT_AUDITED = 3


def export_lock(target: Path) -> None:
    """Write every locked package (all groups) as pinned requirements."""
    requirements = subprocess.run(
        [str(UV), "export", "--frozen", "--no-hashes", "--all-groups", "--no-emit-project"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    target.write_text(requirements)


def run_pip_audit(requirements: Path) -> dict[str, Any]:
    """pip-audit's JSON report for pinned requirements (no resolver, no installs)."""
    result = subprocess.run(
        [
            str(PIP_AUDIT),
            "--requirement",
            str(requirements),
            "--no-deps",
            "--disable-pip",
            "--progress-spinner",
            "off",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    # pip-audit exits 1 when it finds vulnerabilities; the JSON says which.
    if result.returncode not in (0, 1) or not result.stdout.strip():
        raise RuntimeError(f"pip-audit failed ({result.returncode}):\n{result.stderr}")
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def summarize(report: dict[str, Any]) -> tuple[int, list[str]]:
    """Exit status and the lines to print for a pip-audit JSON report."""
    dependencies = report.get("dependencies", [])
    skipped = [d for d in dependencies if d.get("skip_reason")]
    audited = [d for d in dependencies if not d.get("skip_reason")]
    vulnerable = [d for d in audited if d.get("vulns")]
    lines: list[str] = []
    for dep in vulnerable:
        for vuln in dep["vulns"]:
            fixes = ", ".join(vuln.get("fix_versions", [])) or "no fixed version yet"
            lines.append(f"VULNERABLE {dep['name']} {dep['version']}: {vuln['id']} (fix: {fixes})")
    if dependencies and not audited:
        lines.append(
            f"NOT AUDITED: all {len(dependencies)} locked packages were skipped "
            f"({skipped[0]['skip_reason']}). pip-audit got no vulnerability data: PyPI's "
            "JSON API (https://pypi.org/pypi/NAME/VERSION/json) does not answer from this "
            "network (a registry that serves packages but not that API, or offline). "
            "Run `make audit` where pypi.org is fully reachable."
        )
        return EXIT_NOT_AUDITED, lines
    if skipped:
        lines.append(f"{len(skipped)} package(s) skipped: " + ", ".join(d["name"] for d in skipped))
    if vulnerable:
        lines.append(f"{len(vulnerable)} vulnerable package(s) in uv.lock: upgrade and re-lock.")
        return EXIT_VULNERABLE, lines
    lines.append(f"No known vulnerabilities in {len(audited)} locked packages.")
    return EXIT_CLEAN, lines


def main(argv: Sequence[str] | None = None) -> int:
    """Export, audit, report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--require-data",
        action="store_true",
        help="fail (exit 3) when no vulnerability data could be fetched",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        requirements = Path(tmp) / "requirements.txt"
        export_lock(requirements)
        status, lines = summarize(run_pip_audit(requirements))
    for line in lines:
        print(line)
    if status == EXIT_NOT_AUDITED and not args.require_data:
        print("audit-deps: continuing without an audit (pass --require-data to fail instead).")
    return status


if __name__ == "__main__":
    sys.exit(main())
