package server

import (
	"fmt"
	"net/netip"
	"slices"
	"time"
	"unicode"
	"unicode/utf8"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sessiond/sessiond/internal/assurance"
)

// Request limits, enforced before any Redis call. They are documented in the
// proto comments; keep the two in step.
const (
	maxUserIDBytes     = 256
	maxEmailBytes      = 320
	maxUserAgentBytes  = 512
	maxTokenBytes      = 1024
	maxAttributes      = 32
	maxAttrKeyBytes    = 64
	maxAttrValueBytes  = 1024
	maxAttrTotalBytes  = 8192
	minLifetime        = time.Second
	defaultPageSize    = 50
	maxPageSize        = 200
	maxSessionIDBytes  = 64
	maxPageTokenBytes  = 256
	maxAuthMethods     = 16
	maxAuthMethodBytes = 64
	maxRemoveAttrs     = maxAttributes
	pageTokenPrefix    = "p2:" // ListUserSessions (p1: before tokens were authenticated)
	listTokenPrefix    = "l2:" // ListSessions
	invalidTokenReason = "session token is invalid or expired"
)

// invalid collects field violations and turns them into one InvalidArgument
// status, with a google.rpc.BadRequest detail naming each field.
type invalid struct {
	violations []*errdetails.BadRequest_FieldViolation
}

func (v *invalid) add(field, format string, args ...any) {
	v.violations = append(v.violations, &errdetails.BadRequest_FieldViolation{Field: field, Description: fmt.Sprintf(format, args...)})
}

func (v *invalid) err() error {
	if len(v.violations) == 0 {
		return nil
	}
	msg := v.violations[0].Field + ": " + v.violations[0].Description
	if n := len(v.violations); n > 1 {
		msg += fmt.Sprintf(" (and %d more)", n-1)
	}
	st, err := status.New(codes.InvalidArgument, msg).WithDetails(&errdetails.BadRequest{FieldViolations: v.violations})
	if err != nil {
		return status.Error(codes.InvalidArgument, msg)
	}
	return st.Err()
}

// token checks a token field's presence and size; its form is the store's
// to judge (a malformed token is Unauthenticated, not InvalidArgument).
func (v *invalid) token(tok string) {
	switch {
	case tok == "":
		v.add("token", "is required")
	case len(tok) > maxTokenBytes:
		v.add("token", "is %d bytes; the limit is %d", len(tok), maxTokenBytes)
	}
}

// text checks a free-text field: valid UTF-8, no control characters, at most
// limit bytes.
func (v *invalid) text(field, s string, limit int, required bool) {
	switch {
	case s == "" && required:
		v.add(field, "is required")
	case len(s) > limit:
		v.add(field, "is %d bytes; the limit is %d", len(s), limit)
	case !utf8.ValidString(s):
		v.add(field, "is not valid UTF-8")
	default:
		for _, r := range s {
			if unicode.IsControl(r) {
				v.add(field, "contains a control character (%U)", r)
				return
			}
		}
	}
}

func (v *invalid) clientIP(s string) string {
	if s == "" {
		return ""
	}
	if len(s) > 64 {
		v.add("client_ip", "is %d bytes; the limit is 64", len(s))
		return ""
	}
	addr, err := netip.ParseAddr(s)
	if err != nil {
		v.add("client_ip", "is not an IPv4 or IPv6 address")
		return ""
	}
	// A zone ("fe80::1%eth0") names an interface of the host that saw the
	// address, not the user's; and it is free text that would be stored and
	// returned to every validator.
	if addr.Zone() != "" {
		v.add("client_ip", "must not have a zone (%%...)")
		return ""
	}
	return addr.String()
}

func (v *invalid) attributes(attrs map[string]string) {
	if len(attrs) > maxAttributes {
		v.add("attributes", "has %d entries; the limit is %d", len(attrs), maxAttributes)
		return
	}
	total := 0
	for k, val := range attrs {
		total += len(k) + len(val)
		if k == "" {
			v.add("attributes", "has an empty key")
			continue
		}
		v.text("attributes", k, maxAttrKeyBytes, true)
		if len(val) > maxAttrValueBytes {
			v.add("attributes", "the value of %q is %d bytes; the limit is %d", k, len(val), maxAttrValueBytes)
		}
	}
	if total > maxAttrTotalBytes {
		v.add("attributes", "keys and values total %d bytes; the limit is %d", total, maxAttrTotalBytes)
	}
}

// lifetime resolves an optional duration: unset or zero gives def; otherwise
// it must lie in [minLifetime, limit].
func (v *invalid) lifetime(field string, d *durationpb.Duration, def, limit time.Duration) time.Duration {
	if d == nil {
		return def
	}
	if err := d.CheckValid(); err != nil {
		v.add(field, "is not a valid duration")
		return 0
	}
	dur := d.AsDuration()
	switch {
	case dur == 0:
		return def
	case dur < 0:
		v.add(field, "must not be negative (got %v); leave it unset for the server default", dur)
	case dur < minLifetime:
		v.add(field, "must be at least %v (got %v)", minLifetime, dur)
	case dur > limit:
		v.add(field, "%v exceeds the server maximum of %v", dur, limit)
	}
	return dur
}

// InvalidArgument is the InvalidArgument status for one bad field, with the
// same google.rpc.BadRequest detail as the service's own answers.
func InvalidArgument(field, description string) error {
	var v invalid
	v.add(field, "%s", description)
	return v.err()
}

// authMethods checks a list of authentication methods: at most
// maxAuthMethods entries of 1 to maxAuthMethodBytes bytes of ASCII letters,
// digits, '.', '_', ':' or '-'. It returns the list without duplicates, in
// its order.
func (v *invalid) authMethods(field string, methods []string) []string {
	var out []string
	for _, m := range methods {
		switch {
		case m == "":
			v.add(field, "has an empty entry")
			return nil
		case len(m) > maxAuthMethodBytes:
			v.add(field, "an entry is %d bytes; the limit is %d", len(m), maxAuthMethodBytes)
			return nil
		}
		for i := range len(m) {
			if c := m[i]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-') {
				v.add(field, "%q has a character other than ASCII letters, digits, '.', '_', ':' and '-'", m)
				return nil
			}
		}
		if !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	if len(out) > maxAuthMethods {
		v.add(field, "has %d methods; the limit is %d", len(out), maxAuthMethods)
		return nil
	}
	return out
}

// level checks an assurance level: 0 (unset) or 1 to 3.
func (v *invalid) level(field string, n int32) int {
	if n < 0 || n > assurance.MaxLevel {
		v.add(field, "must be 1, 2 or 3 (NIST SP 800-63B AAL), or 0 for the default (got %d)", n)
		return 0
	}
	return int(n)
}

// requirement checks ValidateSession's demands on the session.
func (v *invalid) requirement(minLevel int32, maxAge *durationpb.Duration) assurance.Requirement {
	r := assurance.Requirement{MinLevel: v.level("min_assurance_level", minLevel)}
	if maxAge != nil {
		if err := maxAge.CheckValid(); err != nil {
			v.add("max_auth_age", "is not a valid duration")
		} else if d := maxAge.AsDuration(); d < 0 {
			v.add("max_auth_age", "must not be negative (got %v); leave it unset to accept any", d)
		} else {
			r.MaxAuthAge = d
		}
	}
	return r
}

// sessionID checks a required session id's presence and size; its form is
// the store's to judge (ErrMalformedSessionID).
func (v *invalid) sessionID(field, id string) {
	switch {
	case id == "":
		v.add(field, "is required")
	case len(id) > maxSessionIDBytes:
		v.add(field, "is not a session id issued by sessiond")
	}
}

// pageSize resolves a page_size: unset or zero gives defaultPageSize.
func (v *invalid) pageSize(n int32) int {
	switch {
	case n < 0:
		v.add("page_size", "must not be negative")
	case n == 0:
		return defaultPageSize
	case n > maxPageSize:
		v.add("page_size", "%d exceeds the maximum of %d", n, maxPageSize)
	}
	return int(n)
}

// attributeResult checks a session's attributes after an update against the
// limits of CreateSession's, naming the field of the request.
func attributeResult(field string) func(map[string]string) error {
	return func(attrs map[string]string) error {
		var v invalid
		v.attributes(attrs)
		for _, viol := range v.violations {
			viol.Field = field
			viol.Description = "the result " + viol.Description
		}
		return v.err()
	}
}
