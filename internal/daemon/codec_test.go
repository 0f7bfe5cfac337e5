package daemon_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"

	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
	"github.com/sessiond/sessiond/internal/redistest"
	"github.com/sessiond/sessiond/internal/sessiondtest"
	"github.com/sessiond/sessiond/internal/testutil"
)

// rawCodec sends and receives messages as the bytes they are: what a client
// in another language (or a broken one) puts on the wire.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.([]byte))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

func (rawCodec) Name() string { return "proto" }

// invalidUTF8 is a string cut inside a character ("é" without its second
// byte), then a byte that never starts one.
const invalidUTF8 = "caf\xc3 \xff"

// firstString returns the first string field of md.
func firstString(md protoreflect.MessageDescriptor) protoreflect.FieldDescriptor {
	for i := range md.Fields().Len() {
		if f := md.Fields().Get(i); f.Kind() == protoreflect.StringKind && !f.IsList() {
			return f
		}
	}
	return nil
}

// TestUndecodableRequestsAreInvalidArgument sends every RPC raw protobuf
// bytes with invalid UTF-8 in a string field, and bytes that are not
// protobuf at all: each is answered INVALID_ARGUMENT naming the problem
// (grpc-go alone answers INTERNAL, before any sessiond code runs), counted
// in the metrics and logged; sessiond serves on.
func TestUndecodableRequestsAreInvalidArgument(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	d := sessiondtest.Run(t, sessiondtest.Config(srv.Addr()))
	ctx := testutil.CallCtx(t)

	type rpc struct {
		method string
		input  protoreflect.MessageDescriptor
		stream bool
	}
	var rpcs []rpc
	sd := sessionauthv1.File_sessionauth_v1_session_authority_proto.Services().Get(0)
	for i := range sd.Methods().Len() {
		m := sd.Methods().Get(i)
		rpcs = append(rpcs, rpc{"/" + string(sd.FullName()) + "/" + string(m.Name()), m.Input(), m.IsStreamingServer()})
	}
	rpcs = append(rpcs,
		rpc{authv3.Authorization_Check_FullMethodName, (&authv3.CheckRequest{}).ProtoReflect().Descriptor(), false},
		rpc{healthpb.Health_Check_FullMethodName, (&healthpb.HealthCheckRequest{}).ProtoReflect().Descriptor(), false})

	call := func(r rpc, body []byte) error {
		if !r.stream {
			var out []byte
			return d.Conn.Invoke(ctx, r.method, body, &out, grpc.ForceCodecV2(rawCodec{}))
		}
		s, err := d.Conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, r.method, grpc.ForceCodecV2(rawCodec{}))
		if err != nil {
			return err
		}
		if err := s.SendMsg(body); err != nil && err != io.EOF {
			return err
		}
		_ = s.CloseSend()
		var out []byte
		return s.RecvMsg(&out)
	}
	for _, r := range rpcs {
		// Bytes that are not protobuf: a length that runs past the end.
		err := call(r, []byte{0x0a, 0xff, 0xff, 0x03})
		if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "is not a valid") {
			t.Errorf("%s with broken bytes: %v, want InvalidArgument saying the request is not a valid message", r.method, err)
		}
		f := firstString(r.input)
		if f == nil {
			continue // no string field: WatchRevocationsRequest
		}
		body := protowire.AppendTag(nil, f.Number(), protowire.BytesType)
		body = protowire.AppendString(body, invalidUTF8)
		err = call(r, body)
		st := status.Convert(err)
		if st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "request field "+string(f.Name())+" is not valid UTF-8") {
			t.Errorf("%s with invalid UTF-8 in %s: %v, want InvalidArgument naming the field", r.method, f.Name(), err)
		}
	}

	// A map key deep in a message: CreateSessionRequest.attributes.
	entry := protowire.AppendTag(nil, 1, protowire.BytesType)
	entry = protowire.AppendString(entry, invalidUTF8)
	entry = protowire.AppendTag(entry, 2, protowire.BytesType)
	entry = protowire.AppendString(entry, "v")
	body := protowire.AppendTag(nil, 1, protowire.BytesType)
	body = protowire.AppendString(body, "user-42")
	body = protowire.AppendTag(body, 5, protowire.BytesType)
	body = protowire.AppendBytes(body, entry)
	var out []byte
	err := d.Conn.Invoke(ctx, sessionauthv1.SessionAuthority_CreateSession_FullMethodName, body, &out, grpc.ForceCodecV2(rawCodec{}))
	if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "attributes: a key is not valid UTF-8") {
		t.Errorf("CreateSession with an invalid attribute key: %v, want InvalidArgument naming it", err)
	}
	if n, _ := srv.Client(t).DBSize(ctx).Result(); n != 0 {
		t.Errorf("%d keys in Redis after undecodable requests only", n)
	}

	// Counted, logged, and sessiond serves on.
	resp, err := http.Get("http://" + d.AdminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if !strings.Contains(string(metrics), `sessiond_undecodable_requests_total{method="/sessionauth.v1.SessionAuthority/CreateSession"} 3`) {
		t.Errorf("/metrics does not count the 3 undecodable CreateSession requests:\n%s", grep(string(metrics), "undecodable"))
	}
	if !strings.Contains(d.Logs.String(), "undecodable request") {
		t.Error("no undecodable request logged")
	}
	if _, err := sessionauthv1.NewSessionAuthorityClient(d.Conn).CreateSession(ctx, &sessionauthv1.CreateSessionRequest{UserId: "café"}); err != nil {
		t.Fatalf("a good request afterwards: %v", err)
	}
}

func grep(s, sub string) string {
	var out []string
	for line := range strings.Lines(s) {
		if strings.Contains(line, sub) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "")
}
