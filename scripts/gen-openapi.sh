#!/usr/bin/env bash
# Regenerates the committed openapi.yaml from the code: the spec test rewrites it instead of comparing.
#
#   scripts/gen-openapi.sh
set -euo pipefail
cd "$(dirname "$0")/.."
UPDATE_OPENAPI=1 cargo test -q -p e2e --test e2e openapi::the_committed_openapi_yaml_equals_the_generated_spec
git --no-pager diff --stat -- openapi.yaml || true
