#!/usr/bin/env bash
# Finds the real programs the cluster tests and the kwctl e2e run need, and
# prints the kwctl to use. Each comes from its variable (KWCTL, POLICY_SERVER,
# KUBEBUILDER_ASSETS as envtest sets it, CURL, …); where one is unset, from the
# reference toolbox (TOOLBOX, default ../shared/toolbox), unpacked and checked
# into target/toolbox by its own install.sh. Nothing is downloaded.
#   scripts/toolbox.sh kwctl     print the real kwctl's path
# Under CI=true a missing program is an error; elsewhere it says what is
# missing and how to get it, and prints nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
toolbox="${TOOLBOX:-../shared/toolbox}"
if [ -x "$toolbox/install.sh" ] || [ -f "$toolbox/install.sh" ]; then
  bash "$toolbox/install.sh" target/toolbox >/dev/null
fi

case "${1:-kwctl}" in
  kwctl)
    # KWCTL is the e2e suite's evaluator: kwrun unless it names a real kwctl.
    given="${KWCTL:-}"
    [ "$(basename "${given:-x}")" = kwrun ] && given=
    for candidate in "$given" target/toolbox/kwctl "$(command -v kwctl || true)"; do
      if [ -n "$candidate" ] && [ -x "$candidate" ]; then
        echo "$(cd "$(dirname "$candidate")" && pwd)/$(basename "$candidate")"
        exit 0
      fi
    done
    message="kwctl not found (KWCTL, $toolbox, PATH): download it from the kubewarden/kubewarden-controller release v1.35.0, or unpack ../shared/toolbox with its install.sh"
    ;;
  *)
    echo "usage: scripts/toolbox.sh kwctl" >&2
    exit 2
    ;;
esac
if [ "${CI:-}" = true ]; then
  echo "toolbox: $message (CI=true: a missing program is a failure)" >&2
  exit 1
fi
echo "toolbox: $message; skipped" >&2
