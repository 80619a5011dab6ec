#!/usr/bin/env bash
# The whole test suite: installs what it needs into .venv, starts the real servers
# (Tansu/Kafka, SecantusDB/MongoDB, moto/S3+Firehose), runs the linters and pytest,
# and stops the servers it started. Extra arguments go to pytest.
source "$(dirname "$0")/_venv.sh" test
cd "$ROOT"
scripts/services.sh start
trap 'scripts/services.sh stop' EXIT
echo "== ruff"; ruff check hamok observer tests scripts examples
echo "== mypy (hamok)"; mypy hamok
echo "== import contracts"; lint-imports
echo "== pytest"
python -m pytest -q -p no:cacheprovider "$@"
