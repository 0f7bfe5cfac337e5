package server

import (
	"fmt"
	"net/netip"
	"time"
	"unicode"
	"unicode/utf8"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
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
	maxPageTokenBytes  = 128
	pageTokenPrefix    = "p1:"
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
