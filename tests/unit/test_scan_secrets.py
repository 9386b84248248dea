"""The secret scanner finds each kind of secret, spares placeholders, and the repo is clean."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from scripts import scan_secrets

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "scan-secrets"

# Built at run time so that this file itself holds no secret-shaped text.
KEY_ID = "AKIA" + "Q3EXAMPLEKEYID00"
SECRET = "wJalrXUtnFEMI/K7MDENG/" + "bPxRfiCYEXAMPLEKEY"
ACCOUNT = "4" + "87" * 5 + "1"
CASES = [
    (f"key = '{KEY_ID}'", "aws-access-key-id"),
    (f"aws_secret_access_key = {SECRET}", "aws-secret-access-key"),
    (f'"AWS_SECRET_ACCESS_KEY": "{SECRET}"', "aws-secret-access-key"),
    (f"arn:aws:sqs:us-east-1:{ACCOUNT}:orders", "aws-account-id"),
    (f"image: {ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/app:1", "aws-account-id"),
    (f"account_id = {ACCOUNT}", "aws-account-id"),
    ("-----BEGIN " + "RSA PRIVATE KEY-----", "private-key"),
    ("-----BEGIN " + "OPENSSH PRIVATE KEY-----", "private-key"),
    ("token: gh" + "p_" + "a1B2" * 9, "github-token"),
    ("xox" + "b-1234567890-abcdefghij", "slack-token"),
    ("LOCALSTACK_AUTH_TOKEN=" + "ls-AbCd1234-EfGh-5678", "localstack-auth-token"),
    ("aws_session_token = " + "A" * 120, "aws-session-token"),
]


@pytest.mark.parametrize(("line", "kind"), CASES)
def test_each_kind_is_found(tmp_path: Path, line: str, kind: str) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "config.txt").write_text(f"first line\n{line}\n")
    findings = scan_secrets.scan([tmp_path])
    assert [(f.kind, f.line) for f in findings] == [(kind, 2)]
    # The report never prints a whole key or token.
    if kind not in ("aws-account-id", "private-key"):
        assert findings[0].match not in findings[0].describe()


@pytest.mark.parametrize(
    "line",
    [
        "arn:aws:sqs:us-east-1:000000000000:pubsub-email",
        "arn:aws:sns:us-east-1:123456789012:pubsub-order-events",
        "AWS_ACCESS_KEY_ID=test",
        "AWS_SECRET_ACCESS_KEY=test",
        "AKIAIOSFODNN7EXAMPLE",
        "sha256 = 1234567890123456789",
        "port 123456789012345",
        f"arn:aws:sqs:us-east-1:{ACCOUNT}:q  # scan-secrets: allow",
    ],
)
def test_placeholders_and_plain_numbers_pass(tmp_path: Path, line: str) -> None:
    (tmp_path / "ok.txt").write_text(line + "\n")
    assert scan_secrets.scan([tmp_path]) == []


def test_caches_virtualenvs_and_binaries_are_skipped(tmp_path: Path) -> None:
    for folder in (".git", ".venv-localstack", "__pycache__", "node_modules"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "x.txt").write_text(KEY_ID)
    (tmp_path / "blob.bin").write_bytes(b"\0\1" + KEY_ID.encode())
    assert scan_secrets.scan([tmp_path]) == []


def test_the_script_exits_1_on_findings_and_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "leak.env").write_text(f"AWS_ACCESS_KEY_ID={KEY_ID}\n")
    result = subprocess.run(
        [str(SCRIPT), str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert f"{tmp_path / 'leak.env'}:1: aws-access-key-id" in result.stdout
    assert KEY_ID not in result.stdout
    assert "rotate" in result.stderr


def test_the_script_exits_2_on_a_missing_directory(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "scan_secrets.py"), str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2


def test_the_repository_is_clean() -> None:
    result = subprocess.run([str(SCRIPT), str(ROOT)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
