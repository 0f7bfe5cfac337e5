package main

import (
	"flag"
	"fmt"
	"math"

	"github.com/sessiond/sessiond/server"
)

// rateLimitConfig is the per-caller rate limits (server.Config.CreateLimit
// and FailedValidationLimit): token buckets in each replica's memory.
type rateLimitConfig struct {
	create            server.RateLimit
	failedValidations server.RateLimit
}

func (r *rateLimitConfig) register(fs *flag.FlagSet) {
	fs.Float64Var(&r.create.PerSecond, "rate-limit-create", 100, "CreateSession calls per second per caller, in each replica (0: no limit)")
	fs.IntVar(&r.create.Burst, "rate-limit-create-burst", 200, "CreateSession calls a caller may make at once before --rate-limit-create applies")
	fs.Float64Var(&r.failedValidations.PerSecond, "rate-limit-failed-validations", 50, "failed validations (ValidateSession, ext_authz Check) per second per caller, in each replica;\nover it every validation of the caller is refused until the bucket refills (0: no limit)")
	fs.IntVar(&r.failedValidations.Burst, "rate-limit-failed-validations-burst", 200, "failed validations a caller may have at once before --rate-limit-failed-validations applies")
}

func (r *rateLimitConfig) check() []error {
	var errs []error
	for _, l := range []struct {
		flag  string
		limit server.RateLimit
	}{{"--rate-limit-create", r.create}, {"--rate-limit-failed-validations", r.failedValidations}} {
		if math.IsNaN(l.limit.PerSecond) || math.IsInf(l.limit.PerSecond, 0) || l.limit.PerSecond < 0 {
			errs = append(errs, fmt.Errorf("%s %v: want a number of calls per second, 0 or more (0: no limit)", l.flag, l.limit.PerSecond))
		}
		if l.limit.Burst < 1 && l.limit.PerSecond != 0 {
			errs = append(errs, fmt.Errorf("%s-burst %d: must be at least 1", l.flag, l.limit.Burst))
		}
	}
	return errs
}
