// Package linearize checks recorded histories of sessiond calls for
// linearizability with porcupine (github.com/anishathalye/porcupine), against
// a sequential model of sessiond's sessions.
//
// A Recorder runs concurrent clients against a sessiond through gRPC and
// records every call: its input, its answer and when it was sent and
// answered (History). Check partitions the history by user and looks for an
// order of the calls, each taking effect at one instant between its call and
// its answer, that the model accepts; Require does so in a test, and on a
// violation writes porcupine's HTML view of the history and fails with its
// path.
//
// # The model
//
// Per user, the state is the set of the user's live sessions, each with the
// value of its attribute "v" (the recorder's clients set only that one):
//
//   - CreateSession adds a session. When the user already has cap live
//     sessions, the oldest ones by session id (a UUIDv7: creation order) are
//     revoked first, so that the user ends with exactly cap (server/store
//     Create; the new session's id is drawn before the transaction, so it
//     may be older than a session created concurrently).
//   - ValidateSession answers OK (with the session, its user and its "v")
//     exactly when the session is live, UNAUTHENTICATED otherwise.
//   - RevokeSession (by token or id) ends a live session and answers
//     revoked=true, or answers revoked=false when it was not live.
//   - RevokeUserSessions ends every live session but except_session_id and
//     answers how many it ended.
//   - RotateSession ends a live session and starts one with a new id and the
//     same "v"; UNAUTHENTICATED when it was not live (a rotated-away token
//     never validates, rotates or updates again).
//   - UpdateSession sets "v" of a live session (NOT_FOUND by id,
//     UNAUTHENTICATED by token, when not live); ExtendSession answers OK,
//     with the session, exactly when it is live.
//   - ListUserSessions lists only live sessions of the user, newest first.
//     It reads the user's index, then each session, so it is not one
//     snapshot: every session it lists was live at one instant of the call
//     (checked as one operation), and every session it leaves out that the
//     client knew was not live at some instant of the call (not created
//     yet, or ended already), each checked as an operation of its own with
//     the call's interval. A session already shown ended before the call
//     began is not checked again.
//
// A session never comes back: nothing in the model makes an ended session
// live again. Sessions live far longer than a run (no idle timeout), and the
// rotation grace is longer than a run, so no expiry or reuse detection
// happens behind the model's back.
//
// # Indeterminate calls
//
// A write that failed with UNAVAILABLE, DEADLINE_EXCEEDED or CANCELED may or
// may not have happened, as Jepsen treats such operations: its answer time is
// open-ended (after every other event of the history) and the model accepts
// both outcomes. The state porcupine sees is therefore a set of
// configurations (the power-set construction of a nondeterministic model,
// deduplicated by a canonical key); answers that only one configuration
// explains prune the others. A read (ValidateSession, ListUserSessions) or an
// ExtendSession that failed changes nothing and is left out. ABORTED, and an
// UNAVAILABLE saying that Redis refused the write ("nothing was written"),
// are a definite "nothing changed" and are left out too.
//
// A CreateSession whose answer was lost leaves a session no client knows:
// no token, no id. If it happened, it occupies a cap slot, is evicted when it
// is the oldest, and is counted by RevokeUserSessions. Such a "phantom" is
// kept in a configuration only as its place in the user's id order: its
// UUIDv7 was drawn during the call, so its creation millisecond lies between
// the call's and the answer's (2 ms of slack; when the answer did not come
// from sessiond, with no upper bound), which places it in a range of gaps
// [lo, hi] between the user's known session ids (sorted; gap g lies after
// the g oldest). Two phantoms with the same range are interchangeable, so a
// configuration holds a sorted multiset of ranges, not identities: the
// lost creates of one outage usually share a range and collapse into a count,
// which keeps the configurations few (at most about cap+1 per outage and
// user, instead of 2^k). An eviction among sessions whose order is not known
// (a phantom whose range straddles a known id) branches over every choice
// consistent with some order. A lost RotateSession is handled alike: if it
// happened, the old session ended and a phantom took its place. A listed id
// that no client knows must be matched to a distinct phantom whose range
// holds it.
package linearize
