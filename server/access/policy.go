// Package access decides who is calling sessiond and what they may call:
// caller identities (client certificates, API keys), the policy of roles and
// RPCs, and the key a rate limit counts a call against.
//
// The policy is a small matcher with the semantics of grpc-go's authz engine
// where they overlap (allow rules only, methods exact or "pkg.Service/*",
// callers exact, "*" or with one "*" at an end). The engine itself does not
// fit: it needs modules sessiond does not carry (cel.dev/expr, genproto's
// api), and it cannot match API-key callers or roles without rewriting
// request metadata.
package access

import (
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"slices"
	"sort"
	"strings"

	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
)

// Built-in roles. A caller holds a role when its API key's entry names it, or
// when the policy grants it to the caller's name (or to another role it holds).
const (
	// RoleValidator may check sessions: ValidateSession, WatchRevocations and
	// envoy.service.auth.v3.Authorization/Check.
	RoleValidator = "validator"
	// RoleIssuer may create, rotate, update and revoke single sessions:
	// CreateSession, RotateSession, UpdateSession and RevokeSession.
	RoleIssuer = "issuer"
	// RoleAdmin may call every RPC: ListUserSessions, RevokeUserSessions,
	// GetSession, ExtendSession, ListSessions, RevokeAllSessions and server
	// reflection included.
	RoleAdmin = "admin"
	// RoleEndUserProxy may name the end user a validation is for
	// (EndUserHeader), so that failed validations are limited per end user
	// under the caller's own limit. It grants no RPC.
	RoleEndUserProxy = "end-user-proxy"
)

// envoyCheckMethod is Envoy's ext_authz Check, which the validator role may
// call. Spelled out here so that only server/extauthz imports
// go-control-plane; a test holds it to the generated constant.
const envoyCheckMethod = "/envoy.service.auth.v3.Authorization/Check"

// builtinRoles are the RPCs each built-in role may call, as method patterns.
var builtinRoles = map[string][]string{
	RoleValidator: {
		sessionauthv1.SessionAuthority_ValidateSession_FullMethodName,
		sessionauthv1.SessionAuthority_WatchRevocations_FullMethodName,
		envoyCheckMethod,
	},
	RoleIssuer: {
		sessionauthv1.SessionAuthority_CreateSession_FullMethodName,
		sessionauthv1.SessionAuthority_RotateSession_FullMethodName,
		sessionauthv1.SessionAuthority_RevokeSession_FullMethodName,
		sessionauthv1.SessionAuthority_UpdateSession_FullMethodName,
	},
	RoleAdmin:        {"*"},
	RoleEndUserProxy: nil,
}

// Policy is a parsed policy file.
type Policy struct {
	rules []policyRule
}

// policyRule grants Grant to every caller whose name matches one of Callers
// or who holds one of Roles.
type policyRule struct {
	Callers []string `json:"callers,omitempty"`
	Roles   []string `json:"roles,omitempty"`
	Grant   []string `json:"grant"`
}

type policyFile struct {
	Rules []policyRule `json:"rules"`
}

var (
	// methodRE is a grant of RPCs: "package.Service/Method" or
	// "package.Service/*", with or without a leading slash.
	methodRE = regexp.MustCompile(`^/?[A-Za-z_][A-Za-z0-9_.]*/([A-Za-z_][A-Za-z0-9_]*|\*)$`)
	// callerPatternRE is a caller name, "*", or a name with a "*" at one end.
	callerPatternRE = regexp.MustCompile(`^(\*|\*?[^*\s]+|[^*\s]+\*)$`)
)

// ParsePolicy reads a policy file: JSON of the form
//
//	{"rules": [
//	  {"callers": ["spiffe://example.org/ns/prod/sa/login"], "grant": ["issuer", "validator"]},
//	  {"callers": ["*.gateway.example.org"], "grant": ["validator"]},
//	  {"roles": ["support"], "grant": ["sessionauth.v1.SessionAuthority/ListUserSessions"]}
//	]}
//
// Each rule grants everything in "grant" to every caller whose name matches
// one of "callers" (exact, "*" for any caller with an identity, or a "*" at
// the start or end of the pattern) or who holds one of "roles". A grant is a
// role (built-in, or one of the policy's own that some rule is for) or RPCs:
// "package.Service/Method" or "package.Service/*". An empty policy ({})
// leaves the built-in roles of API keys in force and nothing else. Unknown
// fields are errors; every problem is reported, with its rule's number.
func ParsePolicy(r io.Reader) (*Policy, error) {
	var f policyFile
	d := json.NewDecoder(r)
	d.DisallowUnknownFields()
	if err := d.Decode(&f); err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	if d.More() {
		return nil, fmt.Errorf("policy: more than one JSON value")
	}
	known := map[string]bool{}
	for role := range builtinRoles {
		known[role] = true
	}
	for _, rule := range f.Rules {
		for _, role := range rule.Roles {
			known[role] = true
		}
	}
	var problems []string
	bad := func(i int, format string, args ...any) {
		problems = append(problems, fmt.Sprintf("rule %d: ", i+1)+fmt.Sprintf(format, args...))
	}
	for i, rule := range f.Rules {
		if len(rule.Callers) == 0 && len(rule.Roles) == 0 {
			bad(i, `want "callers" or "roles" (who the rule is for)`)
		}
		if len(rule.Grant) == 0 {
			bad(i, `want "grant" (roles or RPCs)`)
		}
		for _, c := range rule.Callers {
			if !callerPatternRE.MatchString(c) || c == Anonymous {
				bad(i, `caller %q: want a caller name, "*", or a name with "*" at its start or end`, c)
			}
		}
		for _, role := range rule.Roles {
			if !roleRE.MatchString(role) {
				bad(i, "role %q: want a lowercase letter, then up to 62 of a-z 0-9 _ -", role)
			}
		}
		for j, g := range rule.Grant {
			switch {
			case strings.Contains(g, "/"):
				if !methodRE.MatchString(g) {
					bad(i, `grant %q: want "package.Service/Method" or "package.Service/*"`, g)
				}
				rule.Grant[j] = "/" + strings.TrimPrefix(g, "/")
			case !known[g]:
				bad(i, "grant %q: not a built-in role (validator, issuer, admin, end-user-proxy), nor a role that a rule of the policy is for", g)
			}
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("policy: %s", strings.Join(problems, "; "))
	}
	return &Policy{rules: f.Rules}, nil
}

// builtinPolicy is the policy with no rules: the built-in roles only.
func builtinPolicy() *Policy { return &Policy{} }

// rolesOf returns every role a caller named name holds, given the roles it
// holds already (its API key's): those, and every role the policy grants to
// its name or, transitively, to a role it holds. Sorted, without repeats.
func (p *Policy) rolesOf(name string, have []string) []string {
	roles := map[string]bool{}
	for _, r := range have {
		roles[r] = true
	}
	for changed := true; changed; {
		changed = false
		for _, rule := range p.rules {
			if !p.applies(rule, name, roles) {
				continue
			}
			for _, g := range rule.Grant {
				if !strings.HasPrefix(g, "/") && !roles[g] {
					roles[g], changed = true, true
				}
			}
		}
	}
	if len(roles) == 0 {
		return nil
	}
	out := make([]string, 0, len(roles))
	for r := range roles {
		out = append(out, r)
	}
	sort.Strings(out)
	return out
}

func (p *Policy) applies(rule policyRule, name string, roles map[string]bool) bool {
	return slices.ContainsFunc(rule.Callers, func(pat string) bool { return matchCaller(pat, name) }) ||
		slices.ContainsFunc(rule.Roles, func(r string) bool { return roles[r] })
}

// allows reports whether caller c (its Roles already resolved by rolesOf)
// may call method ("/package.Service/Method").
func (p *Policy) allows(c Caller, method string) bool {
	if c.Name == Anonymous || c.Name == "" {
		return false
	}
	roles := map[string]bool{}
	for _, r := range c.Roles {
		roles[r] = true
		if slices.ContainsFunc(builtinRoles[r], func(pat string) bool { return matchMethod(pat, method) }) {
			return true
		}
	}
	for _, rule := range p.rules {
		if p.applies(rule, c.Name, roles) &&
			slices.ContainsFunc(rule.Grant, func(g string) bool { return strings.HasPrefix(g, "/") && matchMethod(g, method) }) {
			return true
		}
	}
	return false
}

// matchCaller matches a caller name against a policy pattern: "*" is any
// name, "x*" a prefix, "*x" a suffix, anything else the exact name. The
// anonymous caller matches nothing.
func matchCaller(pattern, name string) bool {
	switch {
	case name == "" || name == Anonymous:
		return false
	case pattern == "*":
		return true
	case strings.HasSuffix(pattern, "*"):
		return strings.HasPrefix(name, strings.TrimSuffix(pattern, "*"))
	case strings.HasPrefix(pattern, "*"):
		return strings.HasSuffix(name, strings.TrimPrefix(pattern, "*"))
	}
	return pattern == name
}

// matchMethod matches a full method name against "*" (every method),
// "/package.Service/*" or "/package.Service/Method".
func matchMethod(pattern, method string) bool {
	if pattern == "*" {
		return true
	}
	if prefix, ok := strings.CutSuffix(pattern, "*"); ok {
		return strings.HasPrefix(method, prefix)
	}
	return pattern == method
}
