#!/usr/bin/env bash
# Security checks: no secret in the repository, and the locked dependencies audited.
# (The unit tier also covers the topology lint, the IAM policies (shared and per program)
# and a short web fuzz; `make test` runs the security tier of the integration tests:
# tests/integration/test_trust_web.py, test_security.py and test_security_tier.py.)
set -Eeuo pipefail
cd "$(dirname "$0")/../.."
make venv

echo ">> scanning the repository for credentials, account ids, keys and tokens"
scripts/scan-secrets .

echo ">> the web's fuzz, 1000 examples per route and test (no request may answer 5xx)"
make test-fuzz

echo ">> pip-audit on uv.lock"
status=0
.venv/bin/python scripts/audit_deps.py || status=$?
case "$status" in
  0) ;;
  3)
    # The registry reachable from CI serves packages but not PyPI's vulnerability API:
    # the audit cannot run here. Set AUDIT_REQUIRED=1 where it can, to make this fatal.
    echo "WARNING: dependency audit NOT performed (no vulnerability data reachable)." >&2
    if [ "${AUDIT_REQUIRED:-0}" = 1 ]; then exit 3; fi
    ;;
  *) exit "$status" ;;
esac
