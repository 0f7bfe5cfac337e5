package store

import (
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/google/uuid"
)

func testID(t testing.TB) sessionID {
	t.Helper()
	return sessionID{tag: userTag("user-1"), uuid: uuid.Must(uuid.NewV7())}
}

func TestTokenRoundTrip(t *testing.T) {
	t.Parallel()
	id := testID(t)
	tok, parsed, err := newToken(id)
	if err != nil {
		t.Fatal(err)
	}
	if len(tok) != 72 {
		t.Fatalf("token length = %d, want 72", len(tok))
	}
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		t.Fatalf("token is not base64url: %v", err)
	}
	if got := len(raw) - 1 - tagLen - 16; got*8 < 256 {
		t.Fatalf("token carries %d random bits, want at least 256", got*8)
	}
	p, ok := parseToken(tok)
	if !ok {
		t.Fatal("parseToken rejected a token newToken made")
	}
	if p.id != id || p.hash != parsed.hash || p.hash != sha256.Sum256(raw) {
		t.Fatalf("parsed %+v, want id %v and the SHA-256 of the token", p, id)
	}
	if !p.matches(string(parsed.hash[:])) || p.matches(strings.Repeat("x", 32)) {
		t.Fatal("matches does not tell the right hash from a wrong one")
	}
	other, _, _ := newToken(id)
	if other == tok {
		t.Fatal("two tokens for one session id are equal")
	}
}

func TestParseTokenRejects(t *testing.T) {
	t.Parallel()
	tok, _, err := newToken(testID(t))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.RawURLEncoding.DecodeString(tok)
	badVersion := append([]byte{2}, raw[1:]...)
	for name, s := range map[string]string{
		"empty":        "",
		"short":        tok[:71],
		"long":         tok + "A",
		"padded":       tok + "==",
		"std alphabet": strings.NewReplacer("-", "+", "_", "/").Replace(tok[:70]) + "+/",
		"space":        tok[:71] + " ",
		"newline":      tok[:36] + "\n" + tok[37:],
		"bad version":  base64.RawURLEncoding.EncodeToString(badVersion),
		"bearer":       "Bearer " + tok[:65],
	} {
		if _, ok := parseToken(s); ok {
			t.Errorf("%s: parseToken accepted %q", name, s)
		}
	}
}

func TestSessionIDRoundTrip(t *testing.T) {
	t.Parallel()
	id := testID(t)
	s := id.String()
	got, err := parseSessionID(s)
	if err != nil || got != id {
		t.Fatalf("parseSessionID(%q) = %v, %v", s, got, err)
	}
	for _, bad := range []string{"", s[:44], s + "0", strings.ToUpper(s), strings.Replace(s, "_", "-", 1),
		s[:9] + "{" + s[10:], "zzzzzzzz" + s[8:], s[:9] + "urn:uuid:" + s[18:]} {
		if _, err := parseSessionID(bad); err == nil {
			t.Errorf("parseSessionID accepted %q", bad)
		}
	}
}

// FuzzParseToken checks that the parser never panics, that what it accepts is
// exactly the canonical spelling of 54 bytes, and that it agrees with the id
// parser on the session id inside.
func FuzzParseToken(f *testing.F) {
	for range 3 {
		tok, _, err := newToken(testID(f))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(tok)
	}
	f.Add("")
	f.Add(strings.Repeat("A", 72))
	f.Add(strings.Repeat("_", 72))
	f.Fuzz(func(t *testing.T, s string) {
		p, ok := parseToken(s)
		if !ok {
			return
		}
		raw, err := base64.RawURLEncoding.Strict().DecodeString(s)
		if err != nil || len(raw) != tokenLen || base64.RawURLEncoding.EncodeToString(raw) != s {
			t.Fatalf("accepted a non-canonical token %q", s)
		}
		if p.hash != sha256.Sum256(raw) {
			t.Fatal("hash is not the SHA-256 of the decoded token")
		}
		if back, err := parseSessionID(p.id.String()); err != nil || back != p.id {
			t.Fatalf("session id %q does not round-trip", p.id)
		}
	})
}
