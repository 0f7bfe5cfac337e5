package credential

import (
	"strings"
	"testing"
)

// FuzzFromAuthorization checks the Authorization parser: a token is never
// empty and never has surrounding blanks; it is what follows the scheme
// (the first word, matched without regard to case) and a space; with no scheme it is
// the whole trimmed value; and a value built as "<scheme> <token>" gives the
// token back, in any ASCII case of the scheme.
func FuzzFromAuthorization(f *testing.F) {
	f.Fuzz(func(t *testing.T, v, scheme, token string) {
		tok, ok := FromAuthorization(v, scheme)
		if ok != (tok != "") {
			t.Fatalf("FromAuthorization(%q, %q) = %q, %v", v, scheme, tok, ok)
		}
		if strings.Trim(tok, " \t") != tok {
			t.Fatalf("token %q has surrounding blanks", tok)
		}
		trimmed := strings.Trim(v, " \t")
		if scheme == "" {
			if tok != trimmed {
				t.Fatalf("FromAuthorization(%q, \"\") = %q, want the trimmed value", v, tok)
			}
		} else if ok {
			// The scheme is the first word (up to the first space), equal to
			// scheme under case folding.
			word, after, _ := strings.Cut(trimmed, " ")
			if !strings.EqualFold(word, scheme) || strings.Trim(after, " \t") != tok {
				t.Fatalf("FromAuthorization(%q, %q) = %q: not what follows the scheme", v, scheme, tok)
			}
		}

		// Round trip, for a scheme that is one word and a token without
		// surrounding blanks.
		if scheme == "" || strings.ContainsAny(scheme, " \t") || token == "" || strings.Trim(token, " \t") != token {
			return
		}
		for _, s := range []string{scheme, swapASCIICase(scheme)} {
			for _, value := range []string{s + " " + token, " \t" + s + "  " + token + "\t "} {
				if got, ok := FromAuthorization(value, scheme); !ok || got != token {
					t.Fatalf("FromAuthorization(%q, %q) = %q, %v; want %q", value, scheme, got, ok, token)
				}
			}
		}
		if _, ok := FromAuthorization(scheme+"x "+token, scheme); ok {
			t.Fatalf("a longer scheme %q matched %q", scheme+"x", scheme)
		}
	})
}

func swapASCIICase(s string) string {
	b := []byte(s)
	for i, c := range b {
		switch {
		case 'a' <= c && c <= 'z':
			b[i] = c - 'a' + 'A'
		case 'A' <= c && c <= 'Z':
			b[i] = c - 'A' + 'a'
		}
	}
	return string(b)
}

// FuzzCookieHeader checks CookieValue and WithoutCookie together:
//   - CookieValue finds the first pair whose trimmed name is name, and its
//     value never holds a ';';
//   - WithoutCookie keeps exactly the other non-empty pairs, in order, joined
//     by "; ": the cookie is gone, every other cookie keeps its value, and
//     removing again changes nothing;
//   - a token-shaped cookie appended to what is left is found again.
func FuzzCookieHeader(f *testing.F) {
	f.Fuzz(func(t *testing.T, header, name string) {
		v, found := CookieValue(header, name)
		if !found && v != "" {
			t.Fatalf("CookieValue(%q, %q) = %q without finding it", header, name, v)
		}
		if strings.Contains(v, ";") {
			t.Fatalf("CookieValue(%q, %q) = %q holds a ';'", header, name, v)
		}
		var first *string
		var kept []string
		for _, pair := range strings.Split(header, ";") {
			pair = strings.Trim(pair, " \t")
			k, val, hasEq := strings.Cut(pair, "=")
			if strings.Trim(k, " \t") == name {
				if hasEq && first == nil {
					val = strings.Trim(val, " \t")
					if len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' {
						val = val[1 : len(val)-1]
					}
					first = &val
				}
				continue
			}
			if pair != "" {
				kept = append(kept, pair)
			}
		}
		if (first != nil) != found || (found && *first != v) {
			t.Fatalf("CookieValue(%q, %q) = %q, %v; not the first such cookie", header, name, v, found)
		}

		rest := WithoutCookie(header, name)
		if want := strings.Join(kept, "; "); rest != want {
			t.Fatalf("WithoutCookie(%q, %q) = %q, want %q", header, name, rest, want)
		}
		if _, ok := CookieValue(rest, name); ok {
			t.Fatalf("WithoutCookie(%q, %q) = %q still has the cookie", header, name, rest)
		}
		if again := WithoutCookie(rest, name); again != rest {
			t.Fatalf("WithoutCookie is not idempotent: %q, then %q", rest, again)
		}
		for _, pair := range kept {
			other, _, _ := strings.Cut(pair, "=")
			other = strings.Trim(other, " \t")
			want, wantOK := CookieValue(header, other)
			if got, ok := CookieValue(rest, other); got != want || ok != wantOK {
				t.Fatalf("cookie %q was %q, %v; after WithoutCookie(%q) %q, %v", other, want, wantOK, name, got, ok)
			}
		}

		if ValidCookieName(name) {
			const tok = "AW2JSqMBoinNatxzwoE6bj3HKvOkExjlhyb3Qi_XdxdnXOp3MSNVt3jT3tlnPSddnQONjHDK"
			for _, h := range []string{rest + "; " + name + "=" + tok, name + "=" + tok + ";" + header, name + `="` + tok + `"`} {
				if got, ok := CookieValue(h, name); !ok || got != tok {
					t.Fatalf("CookieValue(%q, %q) = %q, %v; want the token", h, name, got, ok)
				}
			}
			for i := range len(name) {
				if !IsTokenChar(name[i]) {
					t.Fatalf("ValidCookieName(%q) with byte %q", name, name[i])
				}
			}
		}
	})
}
