package access

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
)

// FuzzParseAPIKeys: whatever a keys file holds, ParseAPIKeys never panics;
// what it accepts is a set of well-formed entries (names and hashes unique,
// names and roles of the documented form) that the parser's own format
// reads back the same; and no error message echoes a line's second field,
// which may be a key pasted by mistake.
func FuzzParseAPIKeys(f *testing.F) {
	h := hex.EncodeToString(make([]byte, sha256.Size))
	for _, seed := range []string{
		"login " + h + " issuer,validator\n",
		"# comment\n\n gateway\t" + h + "\n",
		"a " + h + "\nb " + h + "\n",
		"x not-a-hash\n",
		"anonymous " + h + "\n",
		"a " + h + " Bad-Role\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, file string) {
		keys, err := ParseAPIKeys(strings.NewReader(file))
		if err != nil {
			// Errors may name names and roles (quoted): a second field that
			// also stands in one of those proves nothing.
			var seconds, others []string
			for line := range strings.Lines(file) {
				fields := strings.Fields(line)
				for i, f := range fields {
					if i == 1 {
						seconds = append(seconds, f)
					} else {
						others = append(others, fmt.Sprintf("%q", f))
					}
				}
			}
			named := strings.Join(others, " ")
			for _, sec := range seconds {
				if len(sec) >= 16 && !strings.Contains(named, sec) && strings.Contains(err.Error(), sec) {
					t.Fatalf("the error %q echoes a second field", err)
				}
			}
			return
		}
		names := map[string]bool{}
		hashes := map[[sha256.Size]byte]bool{}
		var again bytes.Buffer
		for _, k := range keys.keys {
			if !callerNameRE.MatchString(k.name) || k.name == Anonymous || names[k.name] || hashes[k.hash] {
				t.Fatalf("accepted entry %q (duplicate name or hash, or malformed)", k.name)
			}
			names[k.name], hashes[k.hash] = true, true
			for _, r := range k.roles {
				if !roleRE.MatchString(r) {
					t.Fatalf("accepted role %q", r)
				}
			}
			fmt.Fprintf(&again, "%s %x %s\n", k.name, k.hash, strings.Join(k.roles, ","))
		}
		back, err := ParseAPIKeys(&again)
		if err != nil || back.Len() != keys.Len() {
			t.Fatalf("the accepted keys do not read back: %v", err)
		}
		for i := range back.keys {
			if back.keys[i].name != keys.keys[i].name || back.keys[i].hash != keys.keys[i].hash || strings.Join(back.keys[i].roles, ",") != strings.Join(keys.keys[i].roles, ",") {
				t.Fatalf("entry %d reads back as %v, was %v", i, back.keys[i], keys.keys[i])
			}
		}
	})
}

// FuzzParsePolicy: whatever a policy file holds, ParsePolicy never panics,
// and a policy it accepts answers every question without panicking: the
// roles of any caller, and whether it may call any method; a caller without
// an identity holds no role it was not given.
func FuzzParsePolicy(f *testing.F) {
	for _, seed := range []string{
		`{"rules": [{"callers": ["spiffe://example.org/ns/prod/sa/login"], "grant": ["issuer", "validator"]}]}`,
		`{"rules": [{"callers": ["*.gateway.example.org"], "grant": ["validator"]}, {"roles": ["support"], "grant": ["sessionauth.v1.SessionAuthority/ListUserSessions"]}]}`,
		`{"rules": [{"callers": ["*"], "grant": ["sessionauth.v1.SessionAuthority/*"]}]}`,
		`{}`,
		`{"rules": [{"grant": []}]}`,
		`{"rules": [{"callers": ["a**"], "grant": ["nope"]}]} {}`,
	} {
		f.Add(seed, "login", "/sessionauth.v1.SessionAuthority/CreateSession")
	}
	f.Fuzz(func(t *testing.T, file, caller, method string) {
		p, err := ParsePolicy(strings.NewReader(file))
		if err != nil {
			return
		}
		roles := p.rolesOf(caller, nil)
		_ = p.allows(Caller{Name: caller, Roles: roles}, method)
		_ = p.allows(Caller{Name: Anonymous}, method)
		if anon := p.rolesOf(Anonymous, nil); len(anon) > 0 && !strings.Contains(file, "*") && !strings.Contains(file, Anonymous) {
			t.Fatalf("the anonymous caller holds %v under a policy that names no one like it", anon)
		}
	})
}
