package server

import "encoding/base64"

// Internals the external tests (package server_test) use.

// ForgedPageToken is a ListUserSessions page token of the right form for
// cursor, authenticated with a key sessiond does not have: what a caller
// who makes up a cursor can send.
func ForgedPageToken(cursor string) string {
	mac := base64.RawURLEncoding.EncodeToString(pageMAC(make([]byte, 32), pageTokenPrefix, "", cursor))
	return base64.RawURLEncoding.EncodeToString([]byte(pageTokenPrefix + cursor + "." + mac))
}
