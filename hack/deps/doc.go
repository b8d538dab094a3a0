// Package deps holds deps.list, the files and programs that k8sm's build, code
// generation, local cluster and tests take from the machine rather than from Go
// modules, each with the Debian package that provides it. hack/install-deps.sh
// installs from it and hack/verify-deps.sh checks it; this package's test keeps
// the two scripts honest.
package deps
