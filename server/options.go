package server

import "time"

// Option configures a Server beyond its Config.
type Option func(*options)

type options struct {
	clock   func() time.Time
	metrics *Metrics // metrics.go
}

var defaultOptions = options{clock: time.Now}

// WithClock sets the clock of the rate limits and the audit log's event
// times. Default: time.Now.
func WithClock(now func() time.Time) Option {
	return func(o *options) {
		if now != nil {
			o.clock = now
		}
	}
}
