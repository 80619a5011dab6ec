#!/usr/bin/env bash
# Runs the observer daemon (embedded defaults unless --config FILE or OBSERVER_CONFIG_FILE is given).
source "$(dirname "$0")/_venv.sh"
exec observer "$@"
