// Package faulttest holds sessiond's fault tests: real redis-server processes
// (single, Sentinel and Cluster) killed and restarted under load, with
// sessiond reached through gRPC so that the status codes checked are the ones
// callers see. Nothing is mocked.
//
// The tests check that sessiond fails closed (Unavailable, never a valid
// answer for a revoked session, never Unknown or Internal), that it resumes by
// itself when Redis returns, and that acknowledged writes survive: they log the
// measured gaps and counts that README.md's "Failure behaviour" section quotes.
//
//	go test -race -count=1 -v ./internal/faulttest
//
// Every load loop is bounded in calls and in time, and every process a test
// starts is stopped when it ends, failed or not.
package faulttest
