package store

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"strings"

	"github.com/google/uuid"
)

// A token is the bearer credential handed to the user agent. Its 54 bytes are
//
//	[0]      format version (1)
//	[1:5]    routing tag: the first 4 bytes of SHA-256(user_id)
//	[5:21]   the session's UUID
//	[21:54]  33 bytes (264 bits) from crypto/rand: the secret
//
// encoded as unpadded base64url: exactly 72 characters, with no padding bits,
// and decoded strictly so that every token has one accepted spelling. The tag
// and UUID (together the session id) locate the session's Redis keys without a
// scan; the whole token is the credential, and Redis holds only its SHA-256,
// which validation compares in constant time. A token is never logged.
const (
	tokenVersion   = 1
	tagLen         = 4
	secretLen      = 33
	tokenLen       = 1 + tagLen + 16 + secretLen
	tokenStringLen = tokenLen / 3 * 4
)

var tokenEncoding = base64.RawURLEncoding.Strict()

// tag is the routing tag of a user: every key of the user's sessions carries
// it as a Redis Cluster hash tag, so one transaction never spans two slots.
type tag [tagLen]byte

func userTag(userID string) tag {
	sum := sha256.Sum256([]byte(userID))
	return tag(sum[:tagLen])
}

func (t tag) String() string { return hex.EncodeToString(t[:]) }

// sessionID is the public identity of a session: the user's tag and a UUID.
type sessionID struct {
	tag  tag
	uuid uuid.UUID
}

const sessionIDLen = 2*tagLen + 1 + 36

// String is the public form: "<8 lowercase hex digits>_<canonical UUID>",
// in one allocation (the string's).
func (id sessionID) String() string {
	var buf [sessionIDLen]byte
	b := hex.AppendEncode(buf[:0], id.tag[:])
	b = append(b, '_')
	return string(appendUUID(b, id.uuid))
}

// appendUUID appends the canonical form of u (as uuid.UUID.String) to b.
func appendUUID(b []byte, u uuid.UUID) []byte {
	var buf [36]byte
	hex.Encode(buf[0:8], u[0:4])
	buf[8] = '-'
	hex.Encode(buf[9:13], u[4:6])
	buf[13] = '-'
	hex.Encode(buf[14:18], u[6:8])
	buf[18] = '-'
	hex.Encode(buf[19:23], u[8:10])
	buf[23] = '-'
	hex.Encode(buf[24:], u[10:])
	return append(b, buf[:]...)
}

// parseSessionID accepts exactly the form String produces.
func parseSessionID(s string) (sessionID, error) {
	var id sessionID
	if len(s) != sessionIDLen || s[2*tagLen] != '_' {
		return id, ErrMalformedSessionID
	}
	if _, err := hex.Decode(id.tag[:], []byte(s[:2*tagLen])); err != nil || strings.ToLower(s[:2*tagLen]) != s[:2*tagLen] {
		return id, ErrMalformedSessionID
	}
	u, err := uuid.Parse(s[2*tagLen+1:])
	if err != nil || u.String() != s[2*tagLen+1:] {
		return id, ErrMalformedSessionID
	}
	id.uuid = u
	return id, nil
}

// parsedToken is a token that is well formed; whether it is valid is for
// Redis to say.
type parsedToken struct {
	id   sessionID
	hash [sha256.Size]byte
}

// newToken returns a fresh token for the session id and its parsed form.
func newToken(id sessionID) (string, parsedToken, error) {
	var raw [tokenLen]byte
	raw[0] = tokenVersion
	copy(raw[1:], id.tag[:])
	copy(raw[1+tagLen:], id.uuid[:])
	if _, err := rand.Read(raw[1+tagLen+16:]); err != nil {
		return "", parsedToken{}, err
	}
	return tokenEncoding.EncodeToString(raw[:]), parsedToken{id: id, hash: sha256.Sum256(raw[:])}, nil
}

// parseToken checks the form of a token without any I/O. It reports false for
// anything sessiond cannot have issued.
func parseToken(s string) (parsedToken, bool) {
	var p parsedToken
	if len(s) != tokenStringLen {
		return p, false
	}
	var raw [tokenLen]byte
	n, err := tokenEncoding.Decode(raw[:], []byte(s))
	if err != nil || n != tokenLen || raw[0] != tokenVersion {
		return p, false
	}
	copy(p.id.tag[:], raw[1:1+tagLen])
	copy(p.id.uuid[:], raw[1+tagLen:1+tagLen+16])
	p.hash = sha256.Sum256(raw[:])
	return p, true
}

// matches reports, in constant time, whether stored is this token's hash.
func (p parsedToken) matches(stored string) bool {
	return subtle.ConstantTimeCompare([]byte(stored), p.hash[:]) == 1
}
