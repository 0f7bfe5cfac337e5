// Package assurance checks a live session against a caller's demand for a
// strong or recent enough authentication (step-up), with one answer for
// every way in: sessiond's ValidateSession, its gateways, and the client's
// interceptors and middleware (which check cached sessions themselves).
//
// A session that falls short is denied with PERMISSION_DENIED and a
// google.rpc.ErrorInfo (domain "sessiond") whose reason says what the user
// must do; over HTTP, 403 with the reason in the Sessiond-Reason header and
// a JSON body.
package assurance

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The ErrorInfo of a denial.
const (
	// Domain is the ErrorInfo domain of sessiond's reasons.
	Domain = "sessiond"
	// ReasonLevelTooLow: the session's assurance level is below the one
	// asked for. The user must authenticate with a stronger method (and the
	// login backend rotate the session with the new level).
	ReasonLevelTooLow = "ASSURANCE_LEVEL_TOO_LOW"
	// ReasonReauthenticationRequired: the user last authenticated longer
	// ago than allowed. The user must authenticate again (and the login
	// backend rotate the session with reauthenticated).
	ReasonReauthenticationRequired = "REAUTHENTICATION_REQUIRED"
)

// HTTPHeader names the response header of a 403 that carries the reason.
const HTTPHeader = "Sessiond-Reason"

// MaxLevel is the highest assurance level (NIST SP 800-63B AAL3).
const MaxLevel = 3

// Requirement is what a caller demands of a session. The zero Requirement
// demands nothing.
type Requirement struct {
	// MinLevel is the lowest assurance level accepted, 0 to 3 (0: any).
	MinLevel int
	// MaxAuthAge is how long ago the user may have last authenticated (0:
	// any time).
	MaxAuthAge time.Duration
}

// IsZero reports whether r demands nothing.
func (r Requirement) IsZero() bool { return r.MinLevel <= 0 && r.MaxAuthAge <= 0 }

// Check returns nil when a session of assurance level level, whose user last
// authenticated at authenticatedAt, meets r at now; otherwise the
// PERMISSION_DENIED status saying why (the level first).
func (r Requirement) Check(level int, authenticatedAt, now time.Time) error {
	if r.MinLevel > 0 && level < r.MinLevel {
		return deny(ReasonLevelTooLow,
			fmt.Sprintf("this needs assurance level %d and the session has %d: authenticate with a stronger method", r.MinLevel, level),
			map[string]string{"required_assurance_level": strconv.Itoa(r.MinLevel), "assurance_level": strconv.Itoa(level)})
	}
	if r.MaxAuthAge > 0 && now.Sub(authenticatedAt) > r.MaxAuthAge {
		return deny(ReasonReauthenticationRequired,
			fmt.Sprintf("this needs an authentication within the last %v and the last was %v ago: authenticate again", r.MaxAuthAge, now.Sub(authenticatedAt).Truncate(time.Second)),
			map[string]string{"max_auth_age": r.MaxAuthAge.String(), "authenticated_at": authenticatedAt.UTC().Format(time.RFC3339Nano)})
	}
	return nil
}

func deny(reason, msg string, md map[string]string) error {
	st := status.New(codes.PermissionDenied, msg)
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: Domain, Metadata: md}); err == nil {
		st = d
	}
	return st.Err()
}

// Denial returns the ErrorInfo of err when it is a denial of Check's (or
// sessiond's, received over gRPC).
func Denial(err error) (*errdetails.ErrorInfo, bool) {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.PermissionDenied {
		return nil, false
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == Domain {
			return info, true
		}
	}
	return nil, false
}

// Body is the JSON body of an HTTP 403 for a denial: {"error": reason,
// "message": ..., and the ErrorInfo's metadata}.
type Body struct {
	Error    string            `json:"error"`
	Message  string            `json:"message"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

// HTTPBody returns the JSON body of the 403 for a denial of Check's, and its
// reason.
func HTTPBody(err error) (body []byte, reason string) {
	info, _ := Denial(err)
	b := Body{Error: info.GetReason(), Message: status.Convert(err).Message(), Metadata: info.GetMetadata()}
	out, _ := json.Marshal(b) // strings only: cannot fail
	return append(out, '\n'), b.Error
}

// WriteHTTP answers a denial of Check's: 403, the reason in HTTPHeader, and
// the JSON body.
func WriteHTTP(w http.ResponseWriter, err error) {
	body, reason := HTTPBody(err)
	w.Header().Set(HTTPHeader, reason)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusForbidden)
	_, _ = w.Write(body)
}

// ParseLevel reads a min_assurance_level parameter ("" is 0).
func ParseLevel(s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > MaxLevel {
		return 0, fmt.Errorf("min_assurance_level %q: want 0 to %d", s, MaxLevel)
	}
	return n, nil
}

// ParseMaxAge reads a max_auth_age parameter: a Go duration ("5m", "300s")
// or a number of seconds ("300"); "" is 0.
func ParseMaxAge(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && n >= 0 && n <= int64(1<<62/time.Second) {
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("max_auth_age %q: want a duration such as 300s or 5m, or a number of seconds", s)
	}
	return d, nil
}

// Parse reads the two parameters of a Requirement.
func Parse(minLevel, maxAge string) (Requirement, error) {
	l, err := ParseLevel(minLevel)
	if err != nil {
		return Requirement{}, err
	}
	a, err := ParseMaxAge(maxAge)
	if err != nil {
		return Requirement{}, err
	}
	return Requirement{MinLevel: l, MaxAuthAge: a}, nil
}

// The names of a Requirement's two parameters: ValidateSession's fields, the
// query parameters of the gateways' HTTP endpoints and the keys of ext_authz's
// context_extensions.
const (
	MinLevelParam   = "min_assurance_level"
	MaxAuthAgeParam = "max_auth_age"
)

// ParseRoute reads the Requirement of a gateway's route from the values each
// of its two parameters was given there (none: not given). A route's
// requirement is the operator's configuration, and a mistake in it must deny
// rather than relax, so ParseRoute is stricter than Parse: a parameter given
// empty (an unset template variable, say) or more than once is an error, as
// is a value Parse refuses. The error starts with the parameter's name.
func ParseRoute(minLevel, maxAge []string) (Requirement, error) {
	level, err := routeParam(MinLevelParam, minLevel, ParseLevel)
	if err != nil {
		return Requirement{}, err
	}
	age, err := routeParam(MaxAuthAgeParam, maxAge, ParseMaxAge)
	if err != nil {
		return Requirement{}, err
	}
	return Requirement{MinLevel: level, MaxAuthAge: age}, nil
}

func routeParam[T int | time.Duration](name string, values []string, parse func(string) (T, error)) (T, error) {
	switch {
	case len(values) == 0:
		return 0, nil
	case len(values) > 1:
		return 0, fmt.Errorf("%s given %d times: give it once", name, len(values))
	case values[0] == "":
		return 0, fmt.Errorf("%s is empty: give a value, or leave it out for none", name)
	}
	return parse(values[0])
}
