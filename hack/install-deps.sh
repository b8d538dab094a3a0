#!/usr/bin/env bash
# Installs what the local cluster and the tests need from Debian's packages,
# skipping what is already there. Idempotent; safe to run on every `make up`
# and in CI. Go modules come through the module proxy as `go build` asks.
# hack/verify-deps.sh checks afterwards that every listed path is there.
set -euo pipefail

# hack/deps/deps.list names every file and program the build and the tests read
# from the machine, with the Debian package that provides it.
LIST=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/deps/deps.list
missing=()
while read -r path pkg _; do
  [[ -z "${path}" || "${path}" == \#* ]] && continue
  [ -e "${path}" ] && continue
  [[ " ${missing[*]} " == *" ${pkg} "* ]] || missing+=("${pkg}")
done <"${LIST}"
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages ${missing[*]}; run as root (or apt-get install ${missing[*]})" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
apt_retry() {
  # Another dpkg (unattended upgrades, a parallel install) may hold the lock.
  for i in $(seq 1 30); do
    if "$@" >>"$log" 2>&1; then return 0; fi
    if grep -q "Could not get lock\|dpkg was interrupted" "$log"; then sleep 5; continue; fi
    return 1
  done
  return 1
}
if ! apt_retry apt-get update -q; then
  echo "install-deps: apt-get update failed; is a Debian mirror reachable? (log: $log)" >&2
  tail -5 "$log" >&2
  exit 1
fi
if ! apt_retry apt-get install -y -q --no-install-recommends "${missing[@]}"; then
  echo "install-deps: could not install ${missing[*]} (log: $log); install them by hand with apt-get install, then run again" >&2
  tail -5 "$log" >&2
  exit 1
fi
rm -f "$log"
