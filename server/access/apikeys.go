package access

import (
	"bufio"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"io"
	"regexp"
	"strings"
)

// APIKeys are the API keys sessiond accepts, read from a keys file by
// ParseAPIKeys. They hold only the SHA-256 of each key.
type APIKeys struct {
	keys []apiKey
}

type apiKey struct {
	name  string
	hash  [sha256.Size]byte
	roles []string
}

var (
	// callerNameRE is what an API key's name may look like: it is a caller
	// name, matched by the policy and written to logs.
	callerNameRE = regexp.MustCompile(`^[A-Za-z0-9._:/@+-]{1,256}$`)
	// roleRE is what a role may look like; roles also name metadata keys
	// (see authz.go), so they are lowercase.
	roleRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)
)

// ParseAPIKeys reads a keys file: one key per line,
//
//	name sha256hex [role,role...]
//
// separated by spaces or tabs, where sha256hex is the hex SHA-256 of the key
// (`printf %s "$KEY" | sha256sum`), never the key itself. Blank lines and
// lines starting with # are ignored. Names and hashes must be unique; a name
// is 1 to 256 characters of A-Z a-z 0-9 . _ : / @ + -, a role starts with a
// lowercase letter followed by up to 62 of a-z 0-9 _ -. The roles may be left
// out: the policy can still grant the key's name RPCs. Every malformed line
// is reported, with its number.
func ParseAPIKeys(r io.Reader) (*APIKeys, error) {
	k := &APIKeys{}
	names := map[string]int{}
	hashes := map[[sha256.Size]byte]int{}
	var problems []string
	bad := func(line int, format string, args ...any) {
		problems = append(problems, fmt.Sprintf("line %d: ", line)+fmt.Sprintf(format, args...))
	}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 2 || len(fields) > 3 {
			bad(n, `want "name sha256hex [role,role...]" (%d fields)`, len(fields))
			continue
		}
		key := apiKey{name: fields[0]}
		if !callerNameRE.MatchString(key.name) {
			bad(n, "name %q: want 1 to 256 characters of A-Z a-z 0-9 . _ : / @ + -", key.name)
		} else if key.name == Anonymous {
			bad(n, "name %q is reserved for callers without an identity", key.name)
		} else if first, dup := names[key.name]; dup {
			bad(n, "name %q is already used on line %d", key.name, first)
		}
		names[key.name] = n
		if raw, err := hex.DecodeString(fields[1]); err != nil || len(raw) != sha256.Size {
			// Never echo the field: it may be a key pasted by mistake.
			bad(n, "the second field must be the SHA-256 of the key in hex (64 hex digits), not the key itself")
		} else {
			copy(key.hash[:], raw)
			if first, dup := hashes[key.hash]; dup {
				bad(n, "the same key hash is already on line %d", first)
			}
			hashes[key.hash] = n
		}
		if len(fields) == 3 {
			for role := range strings.SplitSeq(fields[2], ",") {
				if !roleRE.MatchString(role) {
					bad(n, "role %q: want a lowercase letter, then up to 62 of a-z 0-9 _ -", role)
					continue
				}
				key.roles = append(key.roles, role)
			}
		}
		k.keys = append(k.keys, key)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(problems, "; "))
	}
	return k, nil
}

// Len is the number of keys.
func (k *APIKeys) Len() int {
	if k == nil {
		return 0
	}
	return len(k.keys)
}

// lookup finds the entry of key. It compares the key's hash with every
// entry's in constant time and without stopping at a match, so the time it
// takes tells nothing about which entry, if any, matched.
func (k *APIKeys) lookup(key string) (apiKey, bool) {
	if k == nil {
		return apiKey{}, false
	}
	h := sha256.Sum256([]byte(key))
	found := -1
	for i := range k.keys {
		if subtle.ConstantTimeCompare(h[:], k.keys[i].hash[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return apiKey{}, false
	}
	return k.keys[found], true
}

// byHash finds the entry with this hash (of a key that was presented before).
func (k *APIKeys) byHash(h [sha256.Size]byte) (apiKey, bool) {
	if k == nil {
		return apiKey{}, false
	}
	for _, key := range k.keys {
		if key.hash == h {
			return key, true
		}
	}
	return apiKey{}, false
}
