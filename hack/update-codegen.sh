#!/usr/bin/env bash
# Regenerates the Go code committed beside every .proto file under proto/.
#
#   hack/update-codegen.sh              # write into the repository
#   hack/update-codegen.sh <dir>        # write the tree into <dir> instead
#                                       # (hack/verify-codegen.sh uses this)
#
# The protoc plugins are built from the versions pinned in go.mod (see
# hack/tools/tools.go), so the output changes only when go.mod or a .proto
# file does. protoc itself comes from Debian's protobuf-compiler package (its
# version is written into the generated headers), the well-known types it
# imports from libprotobuf-dev.
set -o errexit -o nounset -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${1:-$ROOT}
TOOLS=${ROOT}/_output/tools
MODULE=github.com/k8sm/k8sm

# protoc and its well-known types (libprotobuf-dev) come from Debian.
"${ROOT}/hack/install-deps.sh"
"${ROOT}/hack/verify-deps.sh" >/dev/null
mkdir -p "${TOOLS}" "${OUT}"
(
  cd "${ROOT}"
  go build -o "${TOOLS}/protoc-gen-go" google.golang.org/protobuf/cmd/protoc-gen-go
  go build -o "${TOOLS}/protoc-gen-go-grpc" google.golang.org/grpc/cmd/protoc-gen-go-grpc
)

# The well-known types (google/protobuf/*.proto) are beside protoc: /usr/include.
INCLUDE=$(dirname "$(dirname "$(command -v protoc)")")/include

cd "${ROOT}"
find proto -name '*.proto' -print0 | sort -z | while IFS= read -r -d '' file; do
  protoc \
    -I "${ROOT}" -I "${INCLUDE}" \
    --plugin=protoc-gen-go="${TOOLS}/protoc-gen-go" \
    --plugin=protoc-gen-go-grpc="${TOOLS}/protoc-gen-go-grpc" \
    --go_out="${OUT}" --go_opt=module="${MODULE}" \
    --go-grpc_out="${OUT}" --go-grpc_opt=module="${MODULE}" \
    "${file}"
done
