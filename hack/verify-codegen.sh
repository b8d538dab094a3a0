#!/usr/bin/env bash
# Fails when the committed generated code differs from what
# hack/update-codegen.sh produces now.
set -o errexit -o nounset -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TMP=$(mktemp -d)
trap 'rm -rf "${TMP}"' EXIT

"${ROOT}/hack/update-codegen.sh" "${TMP}"

cd "${ROOT}"
status=0
while IFS= read -r -d '' proto; do
  dir=$(dirname "${proto}")
  # Every generated file must match, and no stale generated file may remain.
  for f in "${TMP}/${dir}"/*.go "${dir}"/*.pb.go; do
    [[ -e "${f}" ]] || continue
    rel=${dir}/$(basename "${f}")
    if ! diff -u "${rel}" "${TMP}/${rel}"; then
      echo "out of date: ${rel}" >&2
      status=1
    fi
  done
done < <(find proto -name '*.proto' -print0 | sort -z)

if [[ ${status} -ne 0 ]]; then
  echo "generated code is out of date; run hack/update-codegen.sh" >&2
fi
exit "${status}"
