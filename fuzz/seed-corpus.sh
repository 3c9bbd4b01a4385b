#!/usr/bin/env bash
# Seeds the fuzz corpora from the e2e fixtures and settings (generated, not
# committed): each AdmissionReview becomes a `validate` payload.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p fuzz/corpus/validate fuzz/corpus/validate_settings fuzz/corpus/validate_structured
for fixture in e2e-tests/fixtures/*.json; do
  jq -c '{settings: {}, request: .request}' "$fixture" >"fuzz/corpus/validate/$(basename "$fixture")"
done
for settings in e2e-tests/settings/*.json; do
  cp "$settings" "fuzz/corpus/validate_settings/$(basename "$settings")"
done
echo '{}' >fuzz/corpus/validate_settings/empty.json
echo "seeded $(ls fuzz/corpus/validate | wc -l) validate and $(ls fuzz/corpus/validate_settings | wc -l) validate_settings inputs"
