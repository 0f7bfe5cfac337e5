// Package credential finds a session token in the places HTTP and gRPC
// requests carry it: an Authorization-style value ("Bearer <token>") and a
// Cookie header. It is shared by the server's ext_authz API and the client's
// interceptors and middleware, so every entry point reads credentials alike.
package credential

import "strings"

// FromAuthorization returns the token of an Authorization value in the given
// scheme ("Bearer <token>"; the scheme is case-insensitive, RFC 9110 section
// 11.1), and false for another scheme or an empty token. With scheme "" the
// whole trimmed value is the token.
func FromAuthorization(v, scheme string) (string, bool) {
	v = strings.Trim(v, " \t")
	if scheme == "" {
		return v, v != ""
	}
	got, rest, ok := strings.Cut(v, " ")
	if !ok || !strings.EqualFold(got, scheme) {
		return "", false
	}
	tok := strings.Trim(rest, " \t")
	return tok, tok != ""
}

// CookieValue returns the value of the first cookie called name in a Cookie
// header value ("a=1; b=2", RFC 6265 section 4.2.1), without the double
// quotes a value may be wrapped in. Names are case-sensitive.
func CookieValue(header, name string) (string, bool) {
	for pair := range strings.SplitSeq(header, ";") {
		k, v, ok := strings.Cut(strings.Trim(pair, " \t"), "=")
		if !ok || strings.Trim(k, " \t") != name {
			continue
		}
		v = strings.Trim(v, " \t")
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = v[1 : len(v)-1]
		}
		return v, true
	}
	return "", false
}

// WithoutCookie returns a Cookie header value without any cookie called name:
// the other pairs as they were, in their order, joined by "; ". It returns ""
// when nothing is left.
func WithoutCookie(header, name string) string {
	var kept []string
	for pair := range strings.SplitSeq(header, ";") {
		pair = strings.Trim(pair, " \t")
		if pair == "" {
			continue
		}
		if k, _, _ := strings.Cut(pair, "="); strings.Trim(k, " \t") == name {
			continue
		}
		kept = append(kept, pair)
	}
	return strings.Join(kept, "; ")
}

// ValidCookieName reports whether name is a cookie name (RFC 6265 section
// 4.1.1: an RFC 9110 token).
func ValidCookieName(name string) bool {
	if name == "" {
		return false
	}
	for i := range len(name) {
		if !IsTokenChar(name[i]) {
			return false
		}
	}
	return true
}

// IsTokenChar reports whether c is an RFC 9110 tchar.
func IsTokenChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
