package server

// Internals the external tests (package server_test) use.

// EncodePageToken is a ListUserSessions page token for a store cursor.
func EncodePageToken(cursor string) string { return encodePageToken(pageTokenPrefix, cursor) }
