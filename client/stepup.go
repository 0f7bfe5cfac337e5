package client

import (
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
	"github.com/sessiond/sessiond/internal/assurance"
)

// Step-up: a caller may demand of a session a strong enough authentication
// (its assurance level) or a recent enough one (how long ago the user last
// proved who they are). A live session that falls short is denied with
// codes.PermissionDenied and a google.rpc.ErrorInfo (domain "sessiond")
// whose reason says what the user must do (see StepUpDenial); the session
// stays live, and the login backend steps it up with Client.StepUp once the
// user has authenticated again.

// The reasons of a step-up denial (the ErrorInfo's Reason, and the
// Sessiond-Reason header of the middleware's 403).
const (
	// ReasonAssuranceLevelTooLow: the session's assurance level is below the
	// one demanded; the user must authenticate with a stronger method.
	ReasonAssuranceLevelTooLow = "ASSURANCE_LEVEL_TOO_LOW"
	// ReasonReauthenticationRequired: the user last authenticated longer ago
	// than allowed; the user must authenticate again.
	ReasonReauthenticationRequired = "REAUTHENTICATION_REQUIRED"
)

// StepUpReasonHeader is the response header in which HTTPMiddleware's 403
// (and sessiond's gateways') names the reason of a step-up denial.
const StepUpReasonHeader = "Sessiond-Reason"

// StepUpDenial returns the ErrorInfo of err when err denies a live session
// for lack of assurance (codes.PermissionDenied, domain "sessiond"): its
// Reason is ReasonAssuranceLevelTooLow or ReasonReauthenticationRequired and
// its Metadata gives the figures ("required_assurance_level",
// "assurance_level"; "max_auth_age", "authenticated_at"). It works on the
// errors of Validate and of the interceptors (received over gRPC too), and
// on the error WithErrorHandler is given.
func StepUpDenial(err error) (*errdetails.ErrorInfo, bool) {
	return assurance.Denial(err)
}

// ValidateOption demands more of the session in one Validate call.
type ValidateOption interface{ applyValidate(*assurance.Requirement) }

// StepUpOption demands a strong or recent enough authentication of the
// session. It is a ValidateOption (Validate) and an AuthOption (the
// interceptors, AuthFunc and HTTPMiddleware).
type StepUpOption interface {
	AuthOption
	ValidateOption
}

type stepUpOption func(*assurance.Requirement)

func (f stepUpOption) applyValidate(r *assurance.Requirement) { f(r) }
func (f stepUpOption) applyGRPC(o *authOptions)               { f(&o.require) }
func (f stepUpOption) applyHTTP(o *authOptions)               { f(&o.require) }

// WithMinAssuranceLevel demands a session of assurance level n or more, 1 to
// 3 (NIST SP 800-63B AAL1 to AAL3; see Session.AssuranceLevel); a session
// below it is denied with ReasonAssuranceLevelTooLow. Default 0: any level.
// A level above 3 is a misconfiguration: Validate answers
// codes.InvalidArgument, and the interceptors and the middleware answer
// codes.Internal (HTTP 500) to every request they protect.
func WithMinAssuranceLevel(n int) StepUpOption {
	return stepUpOption(func(r *assurance.Requirement) { r.MinLevel = n })
}

// WithMaxAuthAge demands that the user last authenticated (the session's
// AuthenticatedAt: its creation, or its last StepUp) at most d ago; an older
// authentication is denied with ReasonReauthenticationRequired. Default 0:
// any time. A negative d is a misconfiguration, as for
// WithMinAssuranceLevel.
//
// The age is measured by sessiond's clock when sessiond checks (a client
// without WithCache) and by this process's clock when the client checks a
// cached session itself: keep the clocks synchronized.
func WithMaxAuthAge(d time.Duration) StepUpOption {
	return stepUpOption(func(r *assurance.Requirement) { r.MaxAuthAge = d })
}

// requirementError says what is wrong with a requirement that sessiond
// would refuse (codes.InvalidArgument), or nil.
func requirementError(r assurance.Requirement) error {
	switch {
	case r.MinLevel < 0 || r.MinLevel > assurance.MaxLevel:
		return status.Errorf(codes.InvalidArgument, "client.WithMinAssuranceLevel(%d): want 0 to %d", r.MinLevel, assurance.MaxLevel)
	case r.MaxAuthAge < 0:
		return status.Errorf(codes.InvalidArgument, "client.WithMaxAuthAge(%v): must not be negative", r.MaxAuthAge)
	}
	return nil
}

// checkSession is sessiond's check of a session against r, made here on a
// session the client already holds (internal/assurance: the same function
// sessiond calls).
func checkSession(r assurance.Requirement, s *Session, now time.Time) error {
	if r.IsZero() {
		return nil
	}
	return r.Check(int(s.GetAssuranceLevel()), s.GetAuthenticatedAt().AsTime(), now)
}

// validateRequest asks sessiond to check token against r.
func validateRequest(token string, r assurance.Requirement) *sessionauthv1.ValidateSessionRequest {
	req := &sessionauthv1.ValidateSessionRequest{Token: token, MinAssuranceLevel: int32(r.MinLevel)}
	if r.MaxAuthAge > 0 {
		req.MaxAuthAge = durationpb.New(r.MaxAuthAge)
	}
	return req
}

// recheck checks again what needs no clock of a requirement sessiond has
// checked: a sessiond that predates step-up ignores the requirement's fields
// and would let every session through. Such a sessiond's sessions have no
// assurance level (0) and no authenticated_at: they are denied here.
func recheck(r assurance.Requirement, s *Session) error {
	clockless := assurance.Requirement{MinLevel: r.MinLevel}
	if r.MaxAuthAge > 0 && s.GetAuthenticatedAt() == nil {
		clockless.MaxAuthAge = r.MaxAuthAge
	}
	return checkSession(clockless, s, time.Now())
}
