package main

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// readmeAddr is the address the README's grpcurl session uses (make run's).
const readmeAddr = "localhost:50051"

// TestTour runs docs/tour.sh, the README's grpcurl session, with the grpcurl
// pinned in tools/go.mod against an in-process sessiond on the embedded
// store; checks what it printed (codes, fields, counts, and how its times
// relate; not the tokens, ids or times themselves); and checks that the
// README shows the same commands and narration, with output that the run
// printed.
func TestTour(t *testing.T) {
	t.Parallel()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatal("TestTour runs docs/tour.sh with bash, which is not on PATH")
	}
	grpcurl := buildGrpcurl(t, root)
	conn, _, _ := startRun(t, nil, noEnv)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	waitHealthOf(ctx, t, conn, healthpb.HealthCheckResponse_SERVING, "sessionauth.v1.SessionAuthority", "envoy.service.auth.v3.Authorization")

	addr := conn.Target()
	cmd := exec.CommandContext(ctx, bash, filepath.Join(root, "docs", "tour.sh"))
	cmd.Env = append(os.Environ(), "ADDR="+addr, "GRPCURL="+grpcurl)
	// Its own process group, so that a timeout also ends the grpcurl it runs
	// in the background.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	transcript := strings.ReplaceAll(string(out), addr, readmeAddr)
	if err != nil {
		t.Fatalf("docs/tour.sh: %v\n%s\nstderr:\n%s", err, transcript, stderr.String())
	}
	checkTour(t, parseSession(transcript))
	if t.Failed() {
		t.Logf("the transcript:\n%s", transcript)
	}

	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if err := matchReadme(readmeSession(t, string(readme)), parseSession(transcript)); err != "" {
		t.Fatalf("README.md's grpcurl session is not what docs/tour.sh prints: %s.\n"+
			"Paste the transcript into the README (and elide output with lines of ... if you like):\n%s", err, transcript)
	}
}

// buildGrpcurl compiles the grpcurl of tools/go.mod into a temporary
// directory of the test and returns the binary's path.
func buildGrpcurl(t *testing.T, root string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "grpcurl")
	cmd := exec.Command("go", "build", "-modfile=tools/go.mod", "-o", bin, "github.com/fullstorydev/grpcurl/cmd/grpcurl")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building grpcurl from tools/go.mod: %v\n%s", err, out)
	}
	return bin
}

// A sessionStep is a command of a console session ("$ ..." and its
// continuation lines, indented by 4 spaces) or a comment ("# ..."), and the
// lines printed after it.
type sessionStep struct {
	cmd string
	out []string
}

// parseSession splits a console session into its steps.
func parseSession(s string) []sessionStep {
	var steps []sessionStep
	inCmd := false
	for line := range strings.Lines(s) {
		line = strings.TrimRight(line, "\n")
		switch {
		case strings.HasPrefix(line, "$ ") || strings.HasPrefix(line, "# "):
			steps = append(steps, sessionStep{cmd: line})
			inCmd = strings.HasPrefix(line, "$ ")
		case len(steps) == 0:
		case inCmd && strings.HasPrefix(line, "    "):
			steps[len(steps)-1].cmd += "\n" + line
		default:
			inCmd = false
			steps[len(steps)-1].out = append(steps[len(steps)-1].out, line)
		}
	}
	for i := range steps {
		for len(steps[i].out) > 0 && steps[i].out[len(steps[i].out)-1] == "" {
			steps[i].out = steps[i].out[:len(steps[i].out)-1]
		}
	}
	return steps
}

// tourSession and tourResponse are the JSON that grpcurl prints.
type tourSession struct {
	SessionID       string            `json:"sessionId"`
	UserID          string            `json:"userId"`
	Attributes      map[string]string `json:"attributes"`
	CreatedAt       time.Time         `json:"createdAt"`
	ExpiresAt       time.Time         `json:"expiresAt"`
	IdleExpiresAt   time.Time         `json:"idleExpiresAt"`
	AuthenticatedAt time.Time         `json:"authenticatedAt"`
	AuthMethods     []string          `json:"authMethods"`
	AssuranceLevel  int               `json:"assuranceLevel"`
}

type tourResponse struct {
	Token         string        `json:"token"`
	Session       tourSession   `json:"session"`
	Sessions      []tourSession `json:"sessions"`
	NextPageToken string        `json:"nextPageToken"`
	RevokedCount  *int          `json:"revokedCount"`
	Revoked       bool          `json:"revoked"`
	Status        string        `json:"status"`
	IssuedBefore  time.Time     `json:"issuedBefore"`
}

type tourEvent struct {
	SessionIDs   []string  `json:"sessionIds"`
	UserID       string    `json:"userId"`
	Reason       string    `json:"reason"`
	IssuedBefore time.Time `json:"issuedBefore"`
}

// checkTour checks the steps of docs/tour.sh's transcript, in order. The
// narration (comment lines with no output) is skipped.
func checkTour(t *testing.T, steps []sessionStep) {
	t.Helper()
	steps = slices.DeleteFunc(steps, func(s sessionStep) bool { return strings.HasPrefix(s.cmd, "# ") && len(s.out) == 0 })
	next := func(what string) sessionStep {
		t.Helper()
		if len(steps) == 0 {
			t.Fatalf("the tour ended before %s", what)
		}
		s := steps[0]
		steps = steps[1:]
		if !strings.Contains(s.cmd, what) {
			t.Fatalf("step %q, want %s", s.cmd, what)
		}
		return s
	}
	// call is the next step, a call of method that succeeded.
	call := func(method string) tourResponse {
		t.Helper()
		s := next(method)
		var r tourResponse
		if err := json.Unmarshal([]byte(strings.Join(s.out, "\n")), &r); err != nil {
			t.Fatalf("%s printed %q, not a response: %v", method, s.out, err)
		}
		return r
	}
	// fail is the next step, a call of method that failed with code.
	fail := func(method, code string) string {
		t.Helper()
		s := next(method)
		out := strings.Join(s.out, "\n")
		if !strings.HasPrefix(out, "ERROR:\n  Code: "+code+"\n") {
			t.Fatalf("%s printed %q, want the error %s", method, out, code)
		}
		return out
	}
	// assign is the next step, $ name=value; it returns value.
	assign := func(name string) string {
		t.Helper()
		v, ok := strings.CutPrefix(next("$ "+name+"=").cmd, "$ "+name+"=")
		if !ok || v == "" {
			t.Fatalf("no value assigned to %s", name)
		}
		return v
	}
	const method = "sessionauth.v1.SessionAuthority/"

	services := []string{"envoy.service.auth.v3.Authorization", "grpc.health.v1.Health",
		"grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection", "sessionauth.v1.SessionAuthority"}
	if s := next(" list"); !slices.Equal(s.out, services) {
		t.Errorf("list printed %q, want %q", s.out, services)
	}
	// Reflection serves the proto's comments.
	if s := next(" describe sessionauth.v1.CreateSessionRequest.user_id"); !slices.Contains(s.out, "// Required. The user's stable identifier (not the email: emails change).") {
		t.Errorf("describe of a field printed %q, without the proto's comment", s.out)
	}
	next(method + "WatchRevocations")

	first := call(method + "CreateSession")
	if len(first.Token) != 72 || first.Session.SessionID == "" || first.Session.UserID != "user-42" || first.Session.Attributes["tenant"] != "acme" ||
		!slices.Equal(first.Session.AuthMethods, []string{"password"}) || first.Session.AssuranceLevel != 1 ||
		!first.Session.AuthenticatedAt.Equal(first.Session.CreatedAt) || !first.Session.ExpiresAt.Equal(first.Session.CreatedAt.Add(2*time.Hour)) {
		t.Errorf("CreateSession: %+v", first)
	}
	if assign("TOKEN") != first.Token || assign("SID") != first.Session.SessionID {
		t.Error("TOKEN and SID are not CreateSession's")
	}
	second := call(method + "CreateSession")
	if second.Session.SessionID == "" || second.Session.SessionID == first.Session.SessionID || second.Session.UserID != "user-42" ||
		second.Session.AssuranceLevel != 1 || len(second.Session.AuthMethods) != 0 {
		t.Errorf("the second CreateSession: %+v", second)
	}
	created := 2
	if v := call(method + "ValidateSession"); v.Session.SessionID != first.Session.SessionID {
		t.Errorf("ValidateSession of the first token: %+v", v)
	}
	// Level 1 where 2 is asked: denied, with the ErrorInfo that says why.
	if s := next(method + "ValidateSession"); !strings.Contains(s.cmd, `\"min_assurance_level\":2`) {
		t.Errorf("the step-up's validation %q asks for no min_assurance_level 2", s.cmd)
	} else if out := strings.Join(s.out, "\n"); !strings.HasPrefix(out, "ERROR:\n  Code: PermissionDenied\n") ||
		!strings.Contains(out, `"@type": "type.googleapis.com/google.rpc.ErrorInfo"`) ||
		!strings.Contains(out, `"reason": "ASSURANCE_LEVEL_TOO_LOW"`) || !strings.Contains(out, `"domain": "sessiond"`) {
		t.Errorf("ValidateSession with min_assurance_level 2 of a level 1 session printed\n%s\nwant PermissionDenied with an ErrorInfo ASSURANCE_LEVEL_TOO_LOW", out)
	}

	rotated := call(method + "RotateSession")
	if len(rotated.Token) != 72 || rotated.Token == first.Token || rotated.Session.SessionID == "" ||
		rotated.Session.SessionID == first.Session.SessionID || rotated.Session.UserID != "user-42" {
		t.Errorf("RotateSession: %+v", rotated)
	}
	// The step-up: level 2, totp added, authenticated again; the same creation and expiry.
	if r := rotated.Session; r.AssuranceLevel != 2 || !slices.Equal(r.AuthMethods, []string{"password", "totp"}) ||
		!r.AuthenticatedAt.After(first.Session.AuthenticatedAt) || !r.CreatedAt.Equal(first.Session.CreatedAt) ||
		!r.ExpiresAt.Equal(first.Session.ExpiresAt) || r.Attributes["tenant"] != "acme" {
		t.Errorf("RotateSession with a step-up: %+v", r)
	}
	fail(method+"ValidateSession", "Unauthenticated") // the token rotated away, within the grace
	if assign("TOKEN") != rotated.Token || assign("SID") != rotated.Session.SessionID {
		t.Error("TOKEN and SID are not RotateSession's")
	}
	if s := next(method + "ValidateSession"); !strings.Contains(s.cmd, `\"min_assurance_level\":2`) || !strings.Contains(s.cmd, `\"max_auth_age\":`) {
		t.Errorf("the validation after the step-up %q asks for no min_assurance_level 2 and max_auth_age", s.cmd)
	} else {
		var v tourResponse
		if err := json.Unmarshal([]byte(strings.Join(s.out, "\n")), &v); err != nil || v.Session.SessionID != rotated.Session.SessionID || v.Session.AssuranceLevel != 2 {
			t.Errorf("ValidateSession after the step-up printed %q (%v), want the rotated session", s.out, err)
		}
	}

	updated := call(method + "UpdateSession")
	if u := updated.Session; u.SessionID != rotated.Session.SessionID || !maps.Equal(u.Attributes, map[string]string{"plan": "pro"}) ||
		!u.ExpiresAt.Equal(rotated.Session.ExpiresAt) || u.AssuranceLevel != 2 {
		t.Errorf("UpdateSession (set plan, remove tenant): %+v", u)
	}
	if g := call(method + "GetSession").Session; g.SessionID != rotated.Session.SessionID || !maps.Equal(g.Attributes, updated.Session.Attributes) ||
		g.AssuranceLevel != 2 || !slices.Equal(g.AuthMethods, rotated.Session.AuthMethods) {
		t.Errorf("GetSession: %+v, want the updated session", g)
	}
	extended := call(method + "ExtendSession").Session
	if extended.SessionID != rotated.Session.SessionID || !extended.ExpiresAt.After(rotated.Session.ExpiresAt) ||
		!extended.IdleExpiresAt.Equal(rotated.Session.IdleExpiresAt) || !maps.Equal(extended.Attributes, updated.Session.Attributes) {
		t.Errorf("ExtendSession (ttl 24h): %+v; want a later expiresAt than %v and the idle expiry unchanged (%v)",
			extended, rotated.Session.ExpiresAt, rotated.Session.IdleExpiresAt)
	}
	if d := extended.ExpiresAt.Sub(extended.IdleExpiresAt); d < 23*time.Hour {
		t.Errorf("ExtendSession (ttl 24h): expiresAt %v, only %v after the idle expiry", extended.ExpiresAt, d)
	}

	live := []string{rotated.Session.SessionID, second.Session.SessionID}
	for _, m := range []string{"ListUserSessions", "ListSessions"} {
		page1 := call(method + m)
		if len(page1.Sessions) != 1 || page1.NextPageToken == "" {
			t.Errorf("%s, page 1: %+v", m, page1)
		}
		if assign("PAGE") != page1.NextPageToken {
			t.Errorf("PAGE is not %s's nextPageToken", m)
		}
		page2 := call(method + m)
		if len(page2.Sessions) != 1 || page2.NextPageToken != "" {
			t.Errorf("%s, page 2: %+v", m, page2)
		}
		var listed []string
		for _, s := range slices.Concat(page1.Sessions, page2.Sessions) {
			listed = append(listed, s.SessionID)
			if s.SessionID == rotated.Session.SessionID && (s.AssuranceLevel != 2 || !s.ExpiresAt.Equal(extended.ExpiresAt)) {
				t.Errorf("%s listed %+v, not the session as extended", m, s)
			}
		}
		if !slices.Equal(slices.Sorted(slices.Values(listed)), slices.Sorted(slices.Values(live))) {
			t.Errorf("%s listed %v, want the live sessions %v", m, listed, live)
		}
	}

	// Every session the tour created but the one kept.
	if r := call(method + "RevokeUserSessions"); r.RevokedCount == nil || *r.RevokedCount != created-1 {
		t.Errorf("RevokeUserSessions: %+v, want revokedCount %d", r, created-1)
	}
	if r := call(method + "RevokeSession"); !r.Revoked {
		t.Errorf("RevokeSession by token: %+v, want revoked", r)
	}
	if s := next(method + "RevokeSession"); !strings.Contains(s.cmd, `session_id`) || !slices.Equal(s.out, []string{"{}"}) {
		t.Errorf("RevokeSession by id of a revoked session: %q → %q, want {}", s.cmd, s.out)
	}

	fail(method+"ValidateSession", "Unauthenticated")
	fail(method+"GetSession", "NotFound")
	if out := fail(method+"CreateSession", "InvalidArgument"); !strings.Contains(out, "google.rpc.BadRequest") || !strings.Contains(out, `"field": "ttl"`) {
		t.Errorf("CreateSession with a negative ttl: %s, want a BadRequest about ttl", out)
	}

	for range 3 { // "", the SessionAuthority, the Authorization
		if r := call("grpc.health.v1.Health/Check"); r.Status != "SERVING" {
			t.Errorf("health: %+v", r)
		}
	}

	// The incident button: a session created before the cutoff no longer validates.
	last := call(method + "CreateSession")
	if len(last.Token) != 72 || last.Session.UserID != "user-7" {
		t.Errorf("CreateSession of user-7: %+v", last)
	}
	if assign("TOKEN") != last.Token {
		t.Error("TOKEN is not user-7's")
	}
	cutoff := call(method + "RevokeAllSessions").IssuedBefore
	if !cutoff.After(last.Session.CreatedAt) || cutoff.Nanosecond()%int(time.Millisecond) != 0 {
		t.Errorf("RevokeAllSessions: issuedBefore %v, want a millisecond after user-7's session was created (%v)", cutoff, last.Session.CreatedAt)
	}
	fail(method+"ValidateSession", "Unauthenticated")

	watched := next("# In the second terminal")
	out := strings.Join(watched.out, "\n")
	if !strings.Contains(out, "sessiond-revocations: subscribed") {
		t.Errorf("WatchRevocations printed no subscribed header:\n%s", out)
	}
	var events []tourEvent
	for _, part := range strings.Split(out, "Response contents:\n")[1:] {
		var e tourEvent
		if err := json.Unmarshal([]byte(part), &e); err != nil {
			t.Fatalf("WatchRevocations printed %q, not an event: %v", part, err)
		}
		events = append(events, e)
	}
	want := []tourEvent{
		{[]string{first.Session.SessionID}, "user-42", "REASON_ROTATED", time.Time{}},
		{[]string{rotated.Session.SessionID}, "user-42", "REASON_UPDATED", time.Time{}}, // UpdateSession
		{[]string{rotated.Session.SessionID}, "user-42", "REASON_UPDATED", time.Time{}}, // ExtendSession
		{[]string{second.Session.SessionID}, "user-42", "REASON_USER_REVOKED", time.Time{}},
		{[]string{rotated.Session.SessionID}, "user-42", "REASON_LOGOUT", time.Time{}},
		{nil, "", "REASON_ALL_REVOKED", cutoff},
	}
	if !slices.EqualFunc(events, want, func(a, b tourEvent) bool {
		return slices.Equal(a.SessionIDs, b.SessionIDs) && a.UserID == b.UserID && a.Reason == b.Reason && a.IssuedBefore.Equal(b.IssuedBefore)
	}) {
		t.Errorf("revocation events %+v, want %+v", events, want)
	}
	for _, tok := range []string{first.Token, second.Token, rotated.Token, last.Token} {
		if strings.Contains(out, tok) {
			t.Error("a revocation event holds a token")
		}
	}
	if len(steps) != 0 {
		t.Errorf("unchecked steps at the end of the tour: %q", steps)
	}
}

// readmeSession returns the steps of the console block of README.md's
// section "A grpcurl session".
func readmeSession(t *testing.T, readme string) []sessionStep {
	t.Helper()
	_, section, ok := strings.Cut(readme, "\n## A grpcurl session\n")
	if ok {
		section, _, _ = strings.Cut(section, "\n## ")
		_, section, ok = strings.Cut(section, "```console\n")
		section, _, _ = strings.Cut(section, "\n```")
	}
	if !ok {
		t.Fatal("README.md has no console block in a section \"## A grpcurl session\"")
	}
	return parseSession(section)
}

// volatile are the values that change from run to run, with what stands
// for them when the README and a transcript are compared.
var volatile = []struct {
	re   *regexp.Regexp
	repl string
}{
	{regexp.MustCompile(`[0-9a-f]{8}_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`), "<session id>"},
	{regexp.MustCompile(`(^|[^A-Za-z0-9_-])[A-Za-z0-9_-]{72}([^A-Za-z0-9_-]|$)`), "${1}<token>${2}"},
	{regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z`), "<time>"},
	{regexp.MustCompile(`("nextPageToken": ")[^"]*`), "${1}<page token>"},
	{regexp.MustCompile(`^(\$ PAGE=).*`), "${1}<page token>"},
}

func normalize(line string) string {
	for _, v := range volatile {
		line = v.re.ReplaceAllString(line, v.repl)
	}
	return line
}

// matchReadme reports how the README's steps differ from the transcript's
// ("" if they do not): the same commands, and each output the transcript's
// with its volatile values anywhere, where a line "..." stands for any
// number of lines.
func matchReadme(readme, transcript []sessionStep) string {
	for i := range max(len(readme), len(transcript)) {
		switch {
		case i >= len(readme):
			return "it lacks " + transcript[i].cmd
		case i >= len(transcript):
			return "it has " + readme[i].cmd + " after the last command of the tour"
		case normalize(readme[i].cmd) != normalize(transcript[i].cmd):
			return "it has\n" + readme[i].cmd + "\nwhere the tour has\n" + transcript[i].cmd
		}
		var got, want []string
		for _, l := range readme[i].out {
			got = append(got, normalize(l))
		}
		for _, l := range transcript[i].out {
			want = append(want, normalize(l))
		}
		if !matchLines(got, want) {
			return "the output of\n" + readme[i].cmd + "\nis\n" + strings.Join(readme[i].out, "\n") +
				"\nwhich does not match the tour's\n" + strings.Join(transcript[i].out, "\n")
		}
	}
	return ""
}

// matchLines reports whether lines equal want, where a line of lines that is
// "..." (indented or not) stands for any number of lines.
func matchLines(lines, want []string) bool {
	if len(lines) == 0 {
		return len(want) == 0
	}
	if strings.TrimSpace(lines[0]) == "..." {
		for i := range len(want) + 1 {
			if matchLines(lines[1:], want[i:]) {
				return true
			}
		}
		return false
	}
	return len(want) > 0 && lines[0] == want[0] && matchLines(lines[1:], want[1:])
}

// TestMatchReadme: volatile values may differ, "..." elides lines, anything
// else that differs is reported.
func TestMatchReadme(t *testing.T) {
	t.Parallel()
	const transcript = `$ grpcurl -d '{"user_id":"u"}' \
    localhost:50051 sessionauth.v1.SessionAuthority/CreateSession
{
  "token": "AW2JSqMBojN7ODp71KtxY5oy3eywqHbSPl3zCbPQfN2A1h95XV0MsIR8shYvWRdS-UmxM4MD",
  "session": {
    "sessionId": "6d894aa3_01a2337b-383a-7bd4-ab71-639a32ddecb0",
    "createdAt": "2026-12-01T21:20:43.066Z",
    "userId": "u"
  }
}

$ grpcurl localhost:50051 sessionauth.v1.SessionAuthority/RevokeUserSessions
{
  "revokedCount": 1
}
`
	same := strings.NewReplacer("AW2JSqMBojN7ODp71K", "BX3KTrNCpkO8PEq82L", "383a-7bd4", "0000-7000", "43.066Z", "59Z").Replace(transcript)
	elided := strings.Replace(same, "    \"createdAt\": \"2026-12-01T21:20:59Z\",\n    \"userId\": \"u\"\n", "    ...\n", 1)
	for _, tc := range []struct {
		name, readme string
		ok           bool
	}{
		{"itself", transcript, true},
		{"other volatile values", same, true},
		{"elided", elided, true},
		{"another count", strings.Replace(transcript, `"revokedCount": 1`, `"revokedCount": 2`, 1), false},
		{"another command", strings.Replace(transcript, `{"user_id":"u"}`, `{"user_id":"v"}`, 1), false},
		{"a line less", strings.Replace(transcript, "    \"userId\": \"u\"\n", "", 1), false},
		{"a step less", transcript[:strings.Index(transcript, "\n\n$ ")], false},
		{"a step more", transcript + "\n$ grpcurl localhost:50051 list\n", false},
	} {
		if err := matchReadme(parseSession(tc.readme), parseSession(transcript)); (err == "") != tc.ok {
			t.Errorf("%s: matchReadme = %q, want a match: %v", tc.name, err, tc.ok)
		}
	}
}
