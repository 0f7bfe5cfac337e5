package extauthz

import (
	"slices"
	"strings"
	"testing"

	"github.com/sessiond/sessiond/internal/credential"
)

func TestFindCredential(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		authorization, cookie string
		want                  foundCredential
	}{
		{"", "", foundCredential{}},
		{"Bearer abc", "", foundCredential{"abc", fromAuthorization}},
		{"bEaReR   abc \t", "", foundCredential{"abc", fromAuthorization}},
		{"  Bearer abc", "", foundCredential{"abc", fromAuthorization}},
		{"Bearer", "", foundCredential{}},
		{"Bearer ", "session=xyz", foundCredential{"xyz", fromCookie}},
		{"Bearerabc", "", foundCredential{}},
		{"Basic abc", "session=xyz", foundCredential{"xyz", fromCookie}},
		{"Bearer abc", "session=xyz", foundCredential{"abc", fromAuthorization}},
		{"", "a=1;session=xyz;b=2", foundCredential{"xyz", fromCookie}},
		{"", ` session = "xyz" `, foundCredential{"xyz", fromCookie}},
		{"", "session=first; session=second", foundCredential{"first", fromCookie}},
		{"", "Session=xyz", foundCredential{}},
		{"", "xsession=xyz; session", foundCredential{}},
		{"", "session=", foundCredential{}},
		{"", "session=a=b", foundCredential{"a=b", fromCookie}},
	} {
		if got := findCredential(tc.authorization, tc.cookie, "session"); got != tc.want {
			t.Errorf("findCredential(%q, %q) = %+v, want %+v", tc.authorization, tc.cookie, got, tc.want)
		}
	}
}

func TestWithoutCookie(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"":                                  "",
		"session=x":                         "",
		"a=1; session=x; b=2":               "a=1; b=2",
		"a=1;session=x;b=2":                 "a=1; b=2",
		"session=x; a=1; session=y; ; b=2 ": "a=1; b=2",
		"sessionx=1; xsession=2; Session=3": "sessionx=1; xsession=2; Session=3",
		"session; a=1":                      "a=1",
	} {
		if got := credential.WithoutCookie(in, "session"); got != want {
			t.Errorf("credential.WithoutCookie(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestValidNames(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]bool{
		"x-session-id": true, "x-user-id": true, "x_user.id~1": true,
		"": false, "X-User-Id": false, "x user": false, "x:y": false, ":authority": false, "x-ü": false,
		"authorization": false, "cookie": false, "host": false, "content-length": false, "connection": false,
	} {
		if got := ValidHeaderName(name); got != want {
			t.Errorf("ValidHeaderName(%q) = %v, want %v", name, got, want)
		}
	}
	for name, want := range map[string]bool{
		"session": true, "__Host-sid": true, "SID": true,
		"": false, "a b": false, "a=b": false, "a;b": false, `"q"`: false, "a,b": false,
	} {
		if got := credential.ValidCookieName(name); got != want {
			t.Errorf("ValidCookieName(%q) = %v, want %v", name, got, want)
		}
	}
}

// FuzzExtAuthzToken checks that credential extraction never panics, that what
// it returns is what the header holds, and that the rewritten Cookie header
// never carries the session cookie.
func FuzzExtAuthzToken(f *testing.F) {
	f.Add("Bearer AW2JSqMBoinNatxzwoE6bj3HKvOkExjlhyb3Qi_XdxdnXOp3MSNVt3jT3tlnPSddnQONjHDK", "")
	f.Add("", "theme=dark; session=AW2JSqMBoinNatxzwoE6bj3HKvOkExjlhyb3Qi_XdxdnXOp3MSNVt3jT3tlnPSddnQONjHDK; lang=en")
	f.Add("Basic dXNlcjpwYXNz", `session="abc"`)
	f.Add("bearer\t x", "session;session=;=session; session =y")
	const name = "session"
	f.Fuzz(func(t *testing.T, authorization, cookie string) {
		c := findCredential(authorization, cookie, name)
		switch c.source {
		case fromAuthorization:
			tok, ok := credential.FromAuthorization(authorization, "Bearer")
			if !ok || tok != c.token || c.token == "" || strings.Trim(c.token, " \t") != c.token {
				t.Fatalf("bearer token %q from %q", c.token, authorization)
			}
		case fromCookie:
			if _, ok := credential.FromAuthorization(authorization, "Bearer"); ok {
				t.Fatalf("the cookie won over the Bearer header %q", authorization)
			}
			if v, ok := credential.CookieValue(cookie, name); !ok || v != c.token || c.token == "" || strings.Contains(c.token, ";") {
				t.Fatalf("cookie token %q from %q", c.token, cookie)
			}
		default:
			if c.token != "" {
				t.Fatalf("a token %q without a source", c.token)
			}
		}
		rest := credential.WithoutCookie(cookie, name)
		if _, found := credential.CookieValue(rest, name); found {
			t.Fatalf("credential.WithoutCookie(%q) = %q still has the cookie", cookie, rest)
		}
		if again := credential.WithoutCookie(rest, name); again != rest {
			t.Fatalf("withoutCookie is not idempotent: %q, then %q", rest, again)
		}
		if len(rest) > len(cookie)+2*strings.Count(cookie, ";") {
			t.Fatalf("credential.WithoutCookie(%q) = %q grew", cookie, rest)
		}
		if slices.Contains(strings.Split(rest, "; "), "") && rest != "" {
			t.Fatalf("credential.WithoutCookie(%q) = %q has an empty pair", cookie, rest)
		}
	})
}
