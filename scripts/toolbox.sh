#!/usr/bin/env bash
# Finds a real program that a suite needs, the way a user has it: from its
# variable, else on PATH (after `make tools`, the Makefile sets the variables
# from target/tools.mk). Nothing is downloaded here, nothing is read from
# outside the repository.
#   scripts/toolbox.sh kwctl   print the real kwctl's absolute path
# A missing program prints one `skipped:` line naming the program, its
# variable and the official way to get it, and nothing on stdout; with
# REQUIRE_REAL_TOOLS=1 (the GitHub workflow) it is a failure instead.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/tools.versions

case "${1:-}" in
  kwctl)
    # KWCTL may name kwrun, the e2e suite's default evaluator: not kwctl.
    given="${KWCTL:-}"
    [ "$(basename "${given:-x}")" = kwrun ] && given=
    for candidate in "$given" "$(command -v kwctl || true)"; do
      if [ -n "$candidate" ] && [ -x "$candidate" ]; then
        echo "$(cd "$(dirname "$candidate")" && pwd)/$(basename "$candidate")"
        exit 0
      fi
    done
    message="kwctl not found (\$KWCTL, PATH): set KWCTL to the kwctl of the kubewarden/adm-controller release $KUBEWARDEN_VERSION (kwctl-linux-<arch>.zip), or run make tools"
    ;;
  *)
    echo "usage: scripts/toolbox.sh kwctl" >&2
    exit 2
    ;;
esac
if [ "${REQUIRE_REAL_TOOLS:-}" = 1 ]; then
  echo "toolbox: $message (REQUIRE_REAL_TOOLS=1: a missing program is a failure)" >&2
  exit 1
fi
echo "skipped: $message" >&2
