#!/usr/bin/env bash
# scripts/promote.sh [TRAIN_ARG...]: trains a model against the MLflow of MLFLOW_TRACKING_URI
# (with MLFLOW_TRACKING_USERNAME/PASSWORD when it asks for them) and lets the quality gate
# decide whether the served alias moves (`python -m training.train`, see its --help). The
# services watch the alias and swap a promoted version in by themselves, so this is the whole
# "retrain and roll out".
#
# The promotion workflow (.github/workflows/promote.yml) runs it; the audit trail is the
# MLflow run (named github-<run id>-<attempt> under GitHub Actions, tagged with the commit and
# the gate's decision) and the workflow run, whose summary gets the trainer's JSON: who asked,
# with which inputs, which version, promoted or refused and why. A refusal by the gate is a
# decision, not an error: the exit status is the trainer's (0 trained, 2 bad arguments).
. "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
[ -n "${MLFLOW_TRACKING_URI:-}" ] || die "MLFLOW_TRACKING_URI is not set"

args=("$@")
if [ -n "${GITHUB_RUN_ID:-}" ]; then
  args+=(--run-name "github-$GITHUB_RUN_ID-${GITHUB_RUN_ATTEMPT:-1}")
fi
result="$(.venv/bin/python -m training.train --json "${args[@]}")"
printf '%s\n' "$result"
if [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then
  {
    echo "### Model promotion"
    echo
    echo "Asked by ${GITHUB_ACTOR:-?} at commit ${GITHUB_SHA:-?}, trainer arguments: \`${*:-(defaults)}\`"
    echo
    echo '```json'
    printf '%s\n' "$result"
    echo '```'
  } >>"$GITHUB_STEP_SUMMARY"
fi
