package daemon

import (
	"strings"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
)

// FuzzCodec: whatever bytes a request holds, sessiond's codec never fails
// (which grpc-go would answer INTERNAL) and never panics: it decodes what
// protobuf decodes, exactly, and marks the rest undecodable with a
// description a person can act on, leaving nothing else in the message.
func FuzzCodec(f *testing.F) {
	f.Add([]byte("\x0a\x07user-42"))
	f.Add([]byte("\x0a\x05caf\xc3 "))
	f.Add([]byte("\x2a\x08\x0a\x03\xff\xfe\x01\x12\x01v"))
	f.Add([]byte("\x0a\xff\xff\x03"))
	c := newCodec()
	f.Fuzz(func(t *testing.T, b []byte) {
		got := &sessionauthv1.CreateSessionRequest{}
		if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, got); err != nil {
			t.Fatalf("the codec failed: %v", err)
		}
		want := &sessionauthv1.CreateSessionRequest{}
		if err := proto.Unmarshal(b, want); err == nil {
			if !proto.Equal(got, want) {
				t.Fatalf("decoded %v, protobuf decodes %v", got, want)
			}
			return
		}
		problem, bad := undecodable(got)
		if !bad || problem == "" || !strings.HasPrefix(problem, "request field ") && !strings.HasPrefix(problem, "the request is not a valid ") {
			t.Fatalf("bytes protobuf refuses: marked %v with %q", bad, problem)
		}
		got.ProtoReflect().SetUnknown(nil)
		if !proto.Equal(got, &sessionauthv1.CreateSessionRequest{}) {
			t.Fatalf("an undecodable request kept fields: %v", got)
		}
	})
}
