#!/usr/bin/env bash
# failure-digest.sh LOG: for every failed test of a `go test -v` log that
# has no failed subtest of its own, the last lines it logged (t.Log,
# t.Error: "file.go:NN: ..."; long lines cut), so that the end of a CI log,
# which may be all a reader gets, says why.
set -euo pipefail
log=${1:?usage: failure-digest.sh LOG}
lines=${DIGEST_LINES:-25}
awk -v keep="$lines" '
function cut(s) { return length(s) > 300 ? substr(s, 1, 300) " ..." : s }
/^=== (RUN|CONT) / { cur = $3; next }
/^ *--- FAIL: / { name = $3; failed[name] = 1; order[++n] = name; next }
cur != "" && /^ +[A-Za-z0-9_]+\.go:[0-9]+: / { buf[cur, ++cnt[cur]] = cut($0) }
END {
	for (i = 1; i <= n; i++) {
		t = order[i]; leaf = 1
		for (u in failed) if (index(u, t "/") == 1) leaf = 0
		if (!leaf) continue
		print "==== why " t " failed (the last " keep " lines it logged) ===="
		from = cnt[t] - keep + 1; if (from < 1) from = 1
		for (j = from; j <= cnt[t]; j++) print buf[t, j]
	}
}' "$log"
