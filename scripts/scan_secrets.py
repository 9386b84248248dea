"""Find credentials, account ids, private keys and tokens in a directory tree.

Usage: scripts/scan-secrets [--exclude NAME]... DIR [DIR...]

Standard library only (any Python 3.9+), so it scans a checkout in CI as well as an image's
unpacked filesystem. Exit status: 0 clean, 1 findings (each printed as
`path:line: kind: redacted match`), 2 usage error. A line containing
`scan-secrets: allow` is skipped, for documentation that must show a pattern.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

#: Account ids that are public placeholders: LocalStack's and moto's (and AWS docs').
ALLOWED_ACCOUNTS = frozenset({"000000000000", "123456789012"})
#: Directory names never scanned: tool caches and virtualenvs, not the project's content.
DEFAULT_EXCLUDES = frozenset(
    {
        ".git",
        ".uv",
        ".mypy_cache",
        ".ruff_cache",
        ".pytest_cache",
        ".hypothesis",
        "__pycache__",
        "node_modules",
        "var",
    }
)
ALLOW_MARKER = "scan-secrets: allow"
MAX_FILE_BYTES = 5 * 1024 * 1024

_ACCOUNT = r"(?P<account>\d{12})"
PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "aws-access-key-id",
        re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?![A-Z0-9])"),
    ),
    (
        "aws-secret-access-key",
        re.compile(
            r"(?i)aws_?secret_?access_?key[\"']?\s*[:=]\s*[\"']?(?P<value>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+])"
        ),
    ),
    ("aws-account-id", re.compile(r"arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:" + _ACCOUNT + r":")),
    ("aws-account-id", re.compile(_ACCOUNT + r"\.dkr\.ecr\.")),
    ("aws-account-id", re.compile(r"(?i)account[_ -]?id[\"']?\s*[:=]\s*[\"']?" + _ACCOUNT + r"\b")),
    (
        "private-key",
        re.compile(
            r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?-----"
        ),
    ),
    ("github-token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,})")),
    ("slack-token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}")),
    ("pypi-token", re.compile(r"\bpypi-AgE[A-Za-z0-9_-]{50,}")),
    ("npm-token", re.compile(r"\bnpm_[A-Za-z0-9]{36}\b")),
    ("google-api-key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b")),
    ("stripe-key", re.compile(r"\b[rs]k_live_[0-9A-Za-z]{20,}")),
    (
        "localstack-auth-token",
        re.compile(
            r"LOCALSTACK_(?:AUTH_TOKEN|API_KEY)[\"']?\s*[:=]\s*[\"']?(?P<value>ls-[A-Za-z0-9-]{8,})"
        ),
    ),
    (
        "aws-session-token",
        re.compile(r"(?i)aws_?session_?token[\"']?\s*[:=]\s*[\"']?(?P<value>[A-Za-z0-9/+=]{100,})"),
    ),
)


@dataclass(frozen=True)
class Finding:
    """One suspected secret."""

    path: Path
    line: int
    kind: str
    match: str

    def describe(self) -> str:
        """`path:line: kind: redacted` (never the whole secret)."""
        shown = self.match if len(self.match) <= 8 else f"{self.match[:4]}...{self.match[-2:]}"
        if self.kind == "private-key" or self.kind == "aws-account-id":
            shown = self.match
        return f"{self.path}:{self.line}: {self.kind}: {shown}"


def _files(root: Path, excludes: frozenset[str]) -> Iterator[Path]:
    if root.is_file():
        yield root
        return
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in excludes and not d.startswith(".venv"))
        for name in sorted(names):
            path = Path(folder) / name
            if path.is_file() and not path.is_symlink():
                yield path


def scan_text(text: str, path: Path) -> list[Finding]:
    """Findings in one file's text."""
    findings: list[Finding] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if ALLOW_MARKER in line:
            continue
        for kind, pattern in PATTERNS:
            for match in pattern.finditer(line):
                groups = match.groupdict()
                value = groups.get("account") or groups.get("value") or match.group(0)
                if kind == "aws-account-id" and value in ALLOWED_ACCOUNTS:
                    continue
                if kind == "aws-access-key-id" and value.endswith("EXAMPLE"):
                    continue  # AWS's documented example key
                findings.append(Finding(path, number, kind, value))
    return findings


def scan(roots: Sequence[Path], excludes: frozenset[str] = DEFAULT_EXCLUDES) -> list[Finding]:
    """Every finding under the given files and directories."""
    findings: list[Finding] = []
    for root in roots:
        for path in _files(root, excludes):
            try:
                if path.stat().st_size > MAX_FILE_BYTES:
                    continue
                data = path.read_bytes()
            except OSError:
                continue
            if b"\0" in data[:8192]:
                continue  # binary
            findings += scan_text(data.decode("utf-8", errors="replace"), path)
    return findings


def main(argv: Sequence[str] | None = None) -> int:
    """Scan, print findings, return the exit status."""
    parser = argparse.ArgumentParser(prog="scan-secrets", description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="+", type=Path, metavar="DIR")
    parser.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="NAME",
        help="also skip directories with this name (repeatable)",
    )
    args = parser.parse_args(argv)
    missing = [str(r) for r in args.roots if not r.exists()]
    if missing:
        print(f"scan-secrets: no such file or directory: {', '.join(missing)}", file=sys.stderr)
        return 2
    findings = scan(args.roots, DEFAULT_EXCLUDES | set(args.exclude))
    for finding in findings:
        print(finding.describe())
    if findings:
        print(
            f"scan-secrets: {len(findings)} possible secret(s). Remove them (and rotate any "
            f"real credential), or mark a deliberate example with '{ALLOW_MARKER}'.",
            file=sys.stderr,
        )
        return 1
    print(f"scan-secrets: no secrets found in {', '.join(map(str, args.roots))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
