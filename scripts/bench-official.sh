#!/usr/bin/env bash
# `make bench-official`: the real kwctl's `bench`, side by side in one run,
# for this policy and two official Kubewarden policies on the same three
# requests (issue: "the reconcile costs nothing"): the stamped, unchanged
# UPDATE (every Flux reconcile) and the unlabelled pass-through against
# pod-privileged, the stamp (a labelled image change) against the mutating
# user-group-psp. Prints the medians of kwctl's `validate` benchmark and
# their ratios. Ratios hold on a shared machine where times do not.
#
# The programs come from where a user gets them: KWCTL (default: kwctl on
# PATH), POD_PRIVILEGED_POLICY and USER_GROUP_PSP_POLICY, the official
# modules (`kwctl pull registry://ghcr.io/kubewarden/policies/pod-privileged:v1.0.13`
# and `…/user-group-psp:v1.1.6`, then the path `kwctl policies` shows, or
# built from kubewarden/policies). A missing one skips with a line naming it.
#
# Beside the timings, the stable measure: instructions per evaluation,
# counted by callgrind (valgrind) for every module alike through kwrun
# (`kwrun count`: one request evaluated 1 + N times on one instance, the N
# counted alone, so compiling, instantiating and the first evaluation stay
# out). Without valgrind, that table is skipped with a line.
# Usage: scripts/bench-official.sh POLICY KWRUN
set -euo pipefail
cd "$(dirname "$0")/.."
policy="$1"
kwrun="${2:-target/tools/kwrun}"
kwctl="${KWCTL:-$(command -v kwctl || true)}"
missing=()
[ -x "$kwctl" ] || missing+=("KWCTL (kwctl)")
[ -f "${POD_PRIVILEGED_POLICY:-}" ] || missing+=("POD_PRIVILEGED_POLICY (the official pod-privileged module)")
[ -f "${USER_GROUP_PSP_POLICY:-}" ] || missing+=("USER_GROUP_PSP_POLICY (the official user-group-psp module)")
if [ "${#missing[@]}" -gt 0 ]; then
  printf 'bench-official: skipped: not at hand: %s\n' "$(IFS=,; echo "${missing[*]}")"
  exit 0
fi
# user-group-psp mutates a Deployment whose pods name no user.
user_group_settings='{"run_as_user":{"rule":"MustRunAs","ranges":[{"min":1000,"max":2000}]},"run_as_group":{"rule":"RunAsAny"},"supplemental_groups":{"rule":"RunAsAny"}}'
measure_time="${MEASUREMENT_SECONDS:-3}"

# The median of kwctl bench's `validate` benchmark, in µs.
median_us() {
  local request="$1" module="$2"
  shift 2
  "$kwctl" bench --request-path "$request" --warm-up-time 1 --measurement-time "$measure_time" "$@" "$module" 2>&1 |
    sed 's/\x1b\[[0-9;]*m//g' | grep -A1 '^validate \[' | grep -o 'med = [0-9.]*[µnm]s' |
    awk '{ v = $3; unit = v; sub(/[0-9.]+/, "", unit); sub(/[µnm]s$/, "", v);
           if (unit == "ns") v /= 1000; else if (unit == "ms") v *= 1000; print v }'
}

# Instructions of one evaluation: callgrind counts only kwrun's
# `counted_evaluations` (N of them, after a first one that is not counted).
evaluations=10
instructions() {
  local request="$1" module="$2" out
  shift 2
  out="$(mktemp)"
  valgrind --tool=callgrind --callgrind-out-file="$out" --collect-atstart=no \
    --toggle-collect='*counted_evaluations*' \
    "$kwrun" count -n "$evaluations" -r "$request" "$@" "$module" >/dev/null 2>&1
  callgrind_annotate "$out" 2>/dev/null | awk -v n="$evaluations" \
    '/PROGRAM TOTALS/ { gsub(",", "", $1); printf "%d", $1 / n }'
  rm -f "$out"
}

# The same count inside kwctl: everything its `validate` benchmark times
# (kwctl's host work per request, the same for every module but for the
# response, is half or more of it), counted over the evaluations of a short
# `kwctl bench` (callgrind counts only kwctl's Evaluator::evaluate; the
# number of calls is in its output). What the timings' ratios follow.
kwctl_instructions() {
  local request="$1" module="$2" out
  shift 2
  out="$(mktemp)"
  valgrind --tool=callgrind --callgrind-out-file="$out" --collect-atstart=no \
    --toggle-collect='kwctl::command::run::evaluator::Evaluator::evaluate' \
    "$kwctl" bench --request-path "$request" --warm-up-time 0 --measurement-time 0 \
    --num-samples 10 --num-resamples 1 "$@" "$module" >/dev/null 2>&1
  python3 - "$out" <<'PY'
import re, sys
names, calls, total, callee = {}, {}, 0, None
for line in open(sys.argv[1]):
    match = re.match(r"(c?fn)=\((\d+)\)(?: (.*))?", line)
    if match:
        kind, number, name = match.groups()
        if name:
            names[number] = name
        callee = number if kind == "cfn" else None
    elif line.startswith("calls=") and callee:
        calls[callee] = calls.get(callee, 0) + int(line.split()[0][6:])
    elif line.startswith("summary:") or line.startswith("totals:"):
        total = int(line.split()[1])
evaluations = sum(calls.get(number, 0) for number, name in names.items()
                  if name.endswith("PolicyEvaluator::validate"))
print(total // evaluations if evaluations else 0)
PY
  rm -f "$out"
}

fixtures=e2e-tests/fixtures
rows=(
  "stamped, unchanged UPDATE (every reconcile)|$fixtures/update-unchanged-image.json|pod-privileged|$POD_PRIVILEGED_POLICY|0.5|"
  "labelled image change (the stamp)|$fixtures/update-image-changed.json|user-group-psp (mutating)|$USER_GROUP_PSP_POLICY|0.75|$user_group_settings"
  "unlabelled (pass-through)|$fixtures/create-unlabelled.json|pod-privileged|$POD_PRIVILEGED_POLICY|0.5|"
)
# One table: `measure REQUEST MODULE [--settings-json S]` for every row,
# this policy beside the official one, with the ratio; FORMAT prints a value.
# AIMS: "aims" judges each ratio by the row's aim; anything else prints the
# ratio alone.
table() {
  local measure="$1" format="$2" aims="${3:-aims}"
  printf '| request | this policy | official policy on the same request | ratio |%s\n|---|---|---|---|%s\n' \
    "$([ "$aims" = aims ] && echo ' aim |')" "$([ "$aims" = aims ] && echo '---|')"
  for row in "${rows[@]}"; do
    IFS='|' read -r label request official_name official aim settings <<<"$row"
    ours="$("$measure" "$request" "$policy")"
    theirs="$("$measure" "$request" "$official" ${settings:+--settings-json "$settings"})"
    [ "$aims" = aims ] || aim=""
    awk -v l="$label" -v o="$ours" -v n="$official_name" -v t="$theirs" -v a="$aim" -v f="$format" \
      'BEGIN { r = o / t; printf "| %s | " f " | %s " f " | %.2f |", l, o, n, t, r
               if (a != "") printf " ≤ %s%s |", a, (r <= a ? "" : " (missed)")
               printf "\n" }'
  done
}

echo "$("$kwctl" --version 2>/dev/null | head -1), $(date -u +%Y-%m-%d), module $(stat -c %s "$policy") bytes"
table median_us '%.1f µs'

echo
if ! command -v valgrind >/dev/null || [ ! -x "$kwrun" ]; then
  echo "bench-official: instructions skipped: valgrind (Debian: valgrind) and kwrun ($kwrun) are needed"
  exit 0
fi
echo "instructions per evaluation (callgrind, kwrun count: the waPC call, guest and host, $evaluations evaluations after a first)"
table instructions '%d'

echo
echo "for reference, instructions per evaluation in kwctl itself (callgrind, kwctl bench's evaluate: the request's copy and encoding, the waPC call, the response's decoding and JSON patch; its host work does more per instruction than the module's, so these ratios run above the timings')"
table kwctl_instructions '%d' reference
