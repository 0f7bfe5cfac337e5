#!/usr/bin/env bash
# The grpcurl session of the README ("A grpcurl session"), as a script: every RPC of
# sessionauth.v1.SessionAuthority (a step-up included), the error examples and health, against
# a fresh sessiond. It prints each command as you would type it, with a line of narration
# ("# ...") above some, then what grpcurl printed. cmd/sessiond's TestTour runs it, checks the
# transcript, and checks that the README shows these commands.
#
# Its last RPC, RevokeAllSessions, cuts off every session that exists on the sessiond it talks
# to: run it against a sessiond of your own (make run), never a shared one.
#
# Usage, from the repository root with `make run` in another terminal:
#   docs/tour.sh
# Environment:
#   ADDR     sessiond's gRPC address (default localhost:50051)
#   GRPCURL  the grpcurl command, split into words at spaces (default: go tool
#            -modfile=tools/go.mod grpcurl)
set -euo pipefail
cd "$(dirname "$0")/.."

ADDR=${ADDR:-localhost:50051}
read -r -a grpcurl_cmd <<<"${GRPCURL:-go tool -modfile=tools/go.mod grpcurl}"
grpcurl() { "${grpcurl_cmd[@]}" "$@"; }

gap=    # set: print a blank line before the next command
ok_out= # what the last command that succeeded printed

# show prints the command $1 as typed at a prompt, with $ADDR's value.
show() {
	if [[ -n $gap ]]; then echo; fi
	printf '$ %s\n' "${1//'$ADDR'/$ADDR}"
}

# step prints the command on its stdin, runs it (its variables expand then) and prints its
# output; the tour stops unless it exits 0 (want ok) or not (want fails).
step() {
	local want=$1 cmd out rc=0
	cmd=$(cat)
	show "$cmd"
	out=$(eval "$cmd" 2>&1) || rc=$?
	printf '%s\n' "$out"
	gap=1
	if [[ $want == ok ]]; then ok_out=$out; fi
	if [[ $want == ok && $rc != 0 || $want == fails && $rc == 0 ]]; then
		echo "tour.sh: exit status $rc, want $want" >&2
		exit 1
	fi
}
ok() { step ok; }
fails() { step fails; }

# keep sets the variable $1 to the (first) JSON field $2 in the output of the last command
# that succeeded, and prints the assignment, to be typed as it is shown.
keep() {
	local v
	v=$(sed -n "s/^ *\"$2\": \"\(.*\)\",\{0,1\}\$/\1/p" <<<"$ok_out" | head -n 1)
	if [[ -z $v ]]; then
		echo "tour.sh: no $2 in the last output" >&2
		exit 1
	fi
	printf -v "$1" %s "$v"
	gap=
	show "$1=$v"
	gap=1
}

# say prints its arguments as comment lines ("# ..."), the narration of the session, right
# above the next command.
say() {
	if [[ -n $gap ]]; then echo; fi
	printf '# %s\n' "$@"
	gap=
}

tmp=$(mktemp -d)
watcher=
trap 'if [[ -n $watcher ]]; then kill "$watcher" 2>/dev/null || true; fi; rm -rf "$tmp"' EXIT

# waitfor waits until the watcher has printed $2 lines that match the grep -E pattern $1, at
# most 60s (the first go tool run compiles grpcurl).
waitfor() {
	local deadline=$((SECONDS + 60))
	until (($(grep -cE "$1" "$tmp/revocations" || true) >= $2)); do
		if ((SECONDS > deadline)) || ! kill -0 "$watcher" 2>/dev/null; then
			echo "tour.sh: WatchRevocations did not print $2 lines like $1:" >&2
			cat "$tmp/revocations" "$tmp/errors" >&2
			exit 1
		fi
		sleep 0.05
	done
}

ok <<'EOF'
grpcurl -plaintext $ADDR list
EOF

# Reflection serves the proto's comments, the API reference.
ok <<'EOF'
grpcurl -plaintext $ADDR describe sessionauth.v1.CreateSessionRequest.user_id
EOF

# The stream of revocations runs in the background from here on; what it printed comes last.
show 'grpcurl -plaintext -v $ADDR sessionauth.v1.SessionAuthority/WatchRevocations    # in a second terminal'
"${grpcurl_cmd[@]}" -plaintext -v "$ADDR" sessionauth.v1.SessionAuthority/WatchRevocations >"$tmp/revocations" 2>"$tmp/errors" &
watcher=$!
waitfor '^sessiond-revocations: subscribed' 1
gap=1

say 'A login backend starts a session once the user has given a password: one factor, assurance' \
	'level 1 (NIST SP 800-63B AAL1).'
ok <<'EOF'
grpcurl -plaintext -d '{"user_id":"user-42","email":"ada@example.com","client_ip":"203.0.113.7",
    "user_agent":"Firefox/140","attributes":{"tenant":"acme"},"ttl":"7200s","idle_timeout":"1800s",
    "auth_methods":["password"],"assurance_level":1}' \
    $ADDR sessionauth.v1.SessionAuthority/CreateSession
EOF
keep TOKEN token
keep SID sessionId

say 'A second session of the same user, on another device.'
ok <<'EOF'
grpcurl -plaintext -d '{"user_id":"user-42","user_agent":"Safari/26 (iPhone)"}' \
    $ADDR sessionauth.v1.SessionAuthority/CreateSession
EOF

say 'Every service checks the token on each request.'
ok <<'EOF'
grpcurl -plaintext -d "{\"token\":\"$TOKEN\"}" $ADDR sessionauth.v1.SessionAuthority/ValidateSession
EOF

say 'A sensitive action asks for two factors (level 2): the session is live but falls short.'
fails <<'EOF'
grpcurl -plaintext -d "{\"token\":\"$TOKEN\",\"min_assurance_level\":2}" \
    $ADDR sessionauth.v1.SessionAuthority/ValidateSession
EOF

say 'The user completes a second factor, and the login backend steps the session up by rotating' \
	'it: a new token and session id, level 2, totp added, authenticated_at now.'
ok <<'EOF'
grpcurl -plaintext -d "{\"token\":\"$TOKEN\",\"assurance_level\":2,\"add_auth_methods\":[\"totp\"],\"reauthenticated\":true}" \
    $ADDR sessionauth.v1.SessionAuthority/RotateSession
EOF
say 'The old token no longer validates. Presented again after --rotation-grace (10s), it would be' \
	'taken for a stolen copy, and the new session revoked as well (REASON_REUSE_DETECTED).'
fails <<'EOF'
grpcurl -plaintext -d "{\"token\":\"$TOKEN\"}" $ADDR sessionauth.v1.SessionAuthority/ValidateSession
EOF
keep TOKEN token
keep SID sessionId

say 'Level 2, and an authentication within the last 5 minutes: the new token passes.'
ok <<'EOF'
grpcurl -plaintext -d "{\"token\":\"$TOKEN\",\"min_assurance_level\":2,\"max_auth_age\":\"300s\"}" \
    $ADDR sessionauth.v1.SessionAuthority/ValidateSession
EOF

say 'Set an attribute and remove another; caches drop their copy (REASON_UPDATED).'
ok <<'EOF'
grpcurl -plaintext -d "{\"session_id\":\"$SID\",\"set_attributes\":{\"plan\":\"pro\"},\"remove_attributes\":[\"tenant\"]}" \
    $ADDR sessionauth.v1.SessionAuthority/UpdateSession
EOF

say "An operator looks a session up by its id, and extends it: the absolute expiry becomes" \
	"now + ttl, the idle expiry stays."
ok <<'EOF'
grpcurl -plaintext -d "{\"session_id\":\"$SID\"}" $ADDR sessionauth.v1.SessionAuthority/GetSession
EOF
ok <<'EOF'
grpcurl -plaintext -d "{\"session_id\":\"$SID\",\"ttl\":\"86400s\"}" $ADDR sessionauth.v1.SessionAuthority/ExtendSession
EOF

say "A user's sessions, newest first, a page at a time."
ok <<'EOF'
grpcurl -plaintext -d '{"user_id":"user-42","page_size":1}' $ADDR sessionauth.v1.SessionAuthority/ListUserSessions
EOF
keep PAGE nextPageToken
ok <<'EOF'
grpcurl -plaintext -d "{\"user_id\":\"user-42\",\"page_size\":1,\"page_token\":\"$PAGE\"}" \
    $ADDR sessionauth.v1.SessionAuthority/ListUserSessions
EOF

say "Every user's sessions, in no particular order, a page at a time, until no nextPageToken."
ok <<'EOF'
grpcurl -plaintext -d '{"page_size":1}' $ADDR sessionauth.v1.SessionAuthority/ListSessions
EOF
keep PAGE nextPageToken
ok <<'EOF'
grpcurl -plaintext -d "{\"page_size\":1,\"page_token\":\"$PAGE\"}" $ADDR sessionauth.v1.SessionAuthority/ListSessions
EOF

say 'Log out everywhere else: the second session ends.'
ok <<'EOF'
grpcurl -plaintext -d "{\"user_id\":\"user-42\",\"except_session_id\":\"$SID\"}" \
    $ADDR sessionauth.v1.SessionAuthority/RevokeUserSessions
EOF

say 'Logout by token; then by session id, which is idempotent: revoked is false (and omitted).'
ok <<'EOF'
grpcurl -plaintext -d "{\"token\":\"$TOKEN\"}" $ADDR sessionauth.v1.SessionAuthority/RevokeSession
EOF
ok <<'EOF'
grpcurl -plaintext -d "{\"session_id\":\"$SID\"}" $ADDR sessionauth.v1.SessionAuthority/RevokeSession
EOF

say 'Errors.'
fails <<'EOF'
grpcurl -plaintext -d "{\"token\":\"$TOKEN\"}" $ADDR sessionauth.v1.SessionAuthority/ValidateSession
EOF
fails <<'EOF'
grpcurl -plaintext -d "{\"session_id\":\"$SID\"}" $ADDR sessionauth.v1.SessionAuthority/GetSession
EOF
fails <<'EOF'
grpcurl -plaintext -d '{"user_id":"user-42","ttl":"-5s"}' $ADDR sessionauth.v1.SessionAuthority/CreateSession
EOF

say 'Health: the process (liveness), then each service (readiness).'
ok <<'EOF'
grpcurl -plaintext $ADDR grpc.health.v1.Health/Check
EOF
ok <<'EOF'
grpcurl -plaintext -d '{"service":"sessionauth.v1.SessionAuthority"}' $ADDR grpc.health.v1.Health/Check
EOF
ok <<'EOF'
grpcurl -plaintext -d '{"service":"envoy.service.auth.v3.Authorization"}' $ADDR grpc.health.v1.Health/Check
EOF

say 'The incident button: every session created before now stops validating, on every replica' \
	'within a second, whoever its user; sessions created afterwards live.'
ok <<'EOF'
grpcurl -plaintext -d '{"user_id":"user-7"}' $ADDR sessionauth.v1.SessionAuthority/CreateSession
EOF
keep TOKEN token
ok <<'EOF'
grpcurl -plaintext -d '{}' $ADDR sessionauth.v1.SessionAuthority/RevokeAllSessions
EOF
fails <<'EOF'
grpcurl -plaintext -d "{\"token\":\"$TOKEN\"}" $ADDR sessionauth.v1.SessionAuthority/ValidateSession
EOF

# What the watcher printed, one event per revocation or change (the rotation, the update,
# the extension, the other session, the logout, the cutoff), from the response headers on:
# -v prints the method's descriptor first.
waitfor '"reason":' 6
kill "$watcher"
wait "$watcher" || true
watcher=
echo
echo '# In the second terminal, from the response headers on:'
sed -n '/^Response headers received:/,$p' "$tmp/revocations"
