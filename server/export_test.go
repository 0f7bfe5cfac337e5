package server

// Internals the external tests (package server_test) use.
var EncodePageToken = encodePageToken
