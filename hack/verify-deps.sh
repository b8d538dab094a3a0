#!/usr/bin/env bash
# Fails when a file or program listed in hack/deps/deps.list is missing, naming
# the Debian package that provides it. `make test` runs it after install-deps, so
# a package that install-deps forgets (or that Debian splits off, as it does the
# protobuf well-known types) fails here, on the first machine that lacks it,
# instead of in the middle of a build.
#
#   DEPS_ROOT=<dir>   check under <dir> instead of / (the tests use it)
set -o errexit -o nounset -o pipefail

LIST=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/deps/deps.list
ROOT=${DEPS_ROOT:-}

missing=() packages=()
while read -r path pkg why; do
  [[ -z "${path}" || "${path}" == \#* ]] && continue
  if [[ ! -e "${ROOT}${path}" ]]; then
    missing+=("${path} (Debian package ${pkg}: ${why})")
    [[ " ${packages[*]} " == *" ${pkg} "* ]] || packages+=("${pkg}")
  fi
done <"${LIST}"

if [[ ${#missing[@]} -gt 0 ]]; then
  echo "verify-deps: missing on this machine:" >&2
  printf '  %s\n' "${missing[@]}" >&2
  echo "verify-deps: run hack/install-deps.sh as root, or apt-get install ${packages[*]}" >&2
  exit 1
fi
echo "verify-deps: all $(grep -cv '^\s*\(#\|$\)' "${LIST}") files and programs present"
