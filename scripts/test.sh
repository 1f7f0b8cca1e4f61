#!/usr/bin/env bash
# The README's second command: install everything the tests need, make sure the
# servers are up, lint, type-check and run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
bash scripts/services.sh
.venv/bin/ruff check .
.venv/bin/mypy  # the packages listed in setup.cfg
set +e
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
rc=$?
set -e
# pytest exits 5 when it collected nothing: an empty suite is a failure here.
if [ $rc -eq 5 ]; then echo "test: no tests were collected" >&2; exit 1; fi
exit $rc
