package access

import (
	"crypto/sha256"
	"encoding/hex"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
	"slices"
	"strings"
	"testing"
)

func TestParseAPIKeys(t *testing.T) {
	t.Parallel()
	sum := sha256.Sum256([]byte("the-key"))
	hash := hex.EncodeToString(sum[:])
	keys, err := ParseAPIKeys(strings.NewReader("# comment\n\n  gw " + hash + " validator,issuer\nnoroles " + strings.Repeat("0", 64) + "\n"))
	if err != nil || keys.Len() != 2 {
		t.Fatalf("ParseAPIKeys = %v, %v", keys, err)
	}
	k, ok := keys.lookup("the-key")
	if !ok || k.name != "gw" || !slices.Equal(k.roles, []string{"validator", "issuer"}) {
		t.Fatalf("lookup = %+v, %v", k, ok)
	}
	for _, wrong := range []string{"", "the-key ", "The-key", hash} {
		if _, ok := keys.lookup(wrong); ok {
			t.Errorf("lookup(%q) matched", wrong)
		}
	}
	for _, tc := range []struct{ file, want string }{
		{"lonely\n", `line 1: want "name sha256hex [role,role...]" (1 fields)`},
		{"a " + hash + " validator extra\n", "(4 fields)"},
		{"a b\n", "line 1: the second field must be the SHA-256"},
		{"a " + hash[:63] + "\n", "64 hex digits"},
		{"a " + hash + "\na " + strings.Repeat("1", 64) + "\n", `line 2: name "a" is already used on line 1`},
		{"a " + hash + "\nb " + hash + "\n", "line 2: the same key hash is already on line 1"},
		{"anonymous " + hash + "\n", "reserved"},
		{"a,b " + hash + "\n", `name "a,b"`},
		{"a " + hash + " validator,\n", `role ""`},
		{"a " + hash + " Admin\n", `role "Admin"`},
	} {
		if _, err := ParseAPIKeys(strings.NewReader(tc.file)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseAPIKeys(%q) = %v, want %q", tc.file, err, tc.want)
		}
	}
}

func TestPolicy(t *testing.T) {
	t.Parallel()
	p, err := ParsePolicy(strings.NewReader(`{"rules": [
		{"callers": ["spiffe://example.org/*"], "grant": ["validator"]},
		{"callers": ["*.ops.example.org"], "grant": ["oncall"]},
		{"roles": ["oncall"], "grant": ["admin"]},
		{"roles": ["support"], "grant": ["/sessionauth.v1.SessionAuthority/ListUserSessions", "grpc.reflection.v1.ServerReflection/*"]},
		{"callers": ["exact"], "grant": ["support"]}
	]}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		have []string
		want []string
	}{
		{"spiffe://example.org/ns/a", nil, []string{"validator"}},
		{"spiffe://other.org/ns/a", nil, nil},
		{"alice.ops.example.org", nil, []string{"admin", "oncall"}},
		{"key", []string{"oncall"}, []string{"admin", "oncall"}},
		{"exact", nil, []string{"support"}},
		{"exactly", nil, nil},
		{Anonymous, nil, nil},
	} {
		if got := p.rolesOf(tc.name, tc.have); !slices.Equal(got, tc.want) {
			t.Errorf("rolesOf(%q, %v) = %v, want %v", tc.name, tc.have, got, tc.want)
		}
	}
	svc := "/" + sessionauthv1.SessionAuthority_ServiceDesc.ServiceName + "/"
	for _, tc := range []struct {
		caller Caller
		method string
		want   bool
	}{
		{Caller{Name: "v", Roles: []string{RoleValidator}}, svc + "ValidateSession", true},
		{Caller{Name: "v", Roles: []string{RoleValidator}}, svc + "WatchRevocations", true},
		{Caller{Name: "v", Roles: []string{RoleValidator}}, "/envoy.service.auth.v3.Authorization/Check", true},
		{Caller{Name: "v", Roles: []string{RoleValidator}}, svc + "CreateSession", false},
		{Caller{Name: "i", Roles: []string{RoleIssuer}}, svc + "RotateSession", true},
		{Caller{Name: "i", Roles: []string{RoleIssuer}}, svc + "ListUserSessions", false},
		{Caller{Name: "a", Roles: []string{RoleAdmin}}, svc + "RevokeUserSessions", true},
		{Caller{Name: "a", Roles: []string{RoleAdmin}}, "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", true},
		{Caller{Name: "s", Roles: []string{"support"}}, svc + "ListUserSessions", true},
		{Caller{Name: "s", Roles: []string{"support"}}, "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", true},
		{Caller{Name: "s", Roles: []string{"support"}}, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", false},
		{Caller{Name: "s", Roles: []string{"support"}}, svc + "ListUserSessionsX", false},
		{Caller{Name: "nobody"}, svc + "ValidateSession", false},
		{Caller{Name: Anonymous, Roles: []string{RoleAdmin}}, svc + "ValidateSession", false},
	} {
		if got := p.allows(tc.caller, tc.method); got != tc.want {
			t.Errorf("allows(%v %v, %s) = %v, want %v", tc.caller.Name, tc.caller.Roles, tc.method, got, tc.want)
		}
	}

	for _, tc := range []struct{ policy, want string }{
		{`{"rules": [{"grant": ["admin"]}]}`, `rule 1: want "callers" or "roles"`},
		{`{"rules": [{"callers": ["a"]}]}`, `rule 1: want "grant"`},
		{`{"rules": [{"callers": ["a*b*"], "grant": ["admin"]}]}`, `caller "a*b*"`},
		{`{"rules": [{"callers": ["anonymous"], "grant": ["admin"]}]}`, `caller "anonymous"`},
		{`{"rules": [{"roles": ["Ops"], "grant": ["admin"]}]}`, `role "Ops"`},
		{`{"rules": [{"callers": ["a"], "grant": ["root"]}]}`, `grant "root": not a built-in role`},
		{`{"rules": [{"callers": ["a"], "grant": ["pkg.Svc/Method/x"]}]}`, `grant "pkg.Svc/Method/x"`},
		{`{"rules": [{"callers": ["a"], "grant": ["admin"], "deny": true}]}`, `unknown field "deny"`},
		{`{"rules": []} {}`, "more than one JSON value"},
		{`[`, "policy:"},
	} {
		if _, err := ParsePolicy(strings.NewReader(tc.policy)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParsePolicy(%s) = %v, want %q", tc.policy, err, tc.want)
		}
	}
}

func TestEnvoyCheckMethodIsEnvoys(t *testing.T) {
	if envoyCheckMethod != authv3.Authorization_Check_FullMethodName {
		t.Fatalf("envoyCheckMethod = %q, want %q", envoyCheckMethod, authv3.Authorization_Check_FullMethodName)
	}
}
