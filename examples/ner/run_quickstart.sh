#!/usr/bin/env bash
# The NER quickstart, step by step, in this folder: build the model image, register and deploy
# it (scaling group `ner`, 1 to 2 replicas), apply the features, query them online and offline,
# then stop the local controller. Needs scalegroup and models/requirements.txt installed in the
# Python first on PATH (`bash scripts/quickstart` from the repo root sees to both).
# Arguments go to query.py (--documents N, --summary-json PATH). State lives in .chalk/ here.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

step() {
  echo
  echo "==> $*"
}

stop_on_failure() {
  local status=$?
  if [ "$status" -ne 0 ]; then
    echo "the quickstart failed (exit $status); stopping the local controller it started" >&2
    chalk down >&2 || true
    echo "logs of the controller and the replicas: $PWD/.chalk/logs/" >&2
  fi
  exit "$status"
}
trap stop_on_failure EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

started=$(date +%s)

step "building the model image from models/ (chalk image build models -t ner-model:latest)"
chalk image build models -t ner-model:latest

step "registering the model and deploying it to scaling group 'ner' (python models/deploy_model.py)"
python models/deploy_model.py

step "storing the features (chalk apply)"
chalk apply

step "scaling group 'ner' (chalk scaling-group get --name ner)"
chalk scaling-group get --name ner

step "querying the features (python query.py)"
python query.py "$@"

step "stopping the local controller and its replicas (chalk down)"
chalk down

echo
echo "==> done in $(($(date +%s) - started)) s"
