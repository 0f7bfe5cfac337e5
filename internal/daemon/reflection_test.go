package daemon

import (
	"strings"
	"testing"

	"google.golang.org/grpc"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
	"github.com/sessiond/sessiond/internal/testutil"
)

// userIDComment starts the comment on CreateSessionRequest.user_id in the
// proto.
const userIDComment = " Required. The user's stable identifier"

// TestReflectionServesComments: what `grpcurl describe` reads, the file
// that holds sessionauth.v1.SessionAuthority, carries the proto's comments,
// over v1 and v1alpha reflection; it is the compiled-in descriptor (the
// go_package of the generated code included); the other files still resolve.
func TestReflectionServesComments(t *testing.T) {
	t.Parallel()
	conn, logs := startWrapped(t, Config{Reflection: true, ExtAuthz: true}, nil)
	files := fileContainingSymbolV1(t, conn, "sessionauth.v1.SessionAuthority")
	fd, err := files.FindFileByPath(sessionauthv1.File_sessionauth_v1_session_authority_proto.Path())
	if err != nil {
		t.Fatal(err)
	}
	field := fd.Messages().ByName("CreateSessionRequest").Fields().ByName("user_id")
	if c := fd.SourceLocations().ByDescriptor(field).LeadingComments; !strings.HasPrefix(c, userIDComment) {
		t.Fatalf("CreateSessionRequest.user_id's leading comment over reflection = %q, want the proto's (%q...)", c, userIDComment)
	}
	method := fd.Services().ByName("SessionAuthority").Methods().ByName("RotateSession")
	if c := fd.SourceLocations().ByDescriptor(method).LeadingComments; !strings.Contains(c, "RotateSession replaces a session's token") {
		t.Fatalf("RotateSession's comment over reflection = %q", c)
	}
	if got, want := fd.Options().(*descriptorpb.FileOptions).GetGoPackage(), sessionauthv1.File_sessionauth_v1_session_authority_proto.Options().(*descriptorpb.FileOptions).GetGoPackage(); got != want {
		t.Fatalf("served go_package %q, want the compiled-in %q", got, want)
	}

	// v1alpha, for older tools, serves the same.
	alpha := fileContainingSymbolV1alpha(t, conn, "sessionauth.v1.CreateSessionRequest.user_id")
	if !strings.Contains(alpha.GetSourceCodeInfo().String(), strings.TrimSpace(userIDComment)) {
		t.Fatalf("v1alpha reflection serves no comments: %v", alpha.GetSourceCodeInfo())
	}

	// The files not embedded come from the compiled-in registry.
	for _, sym := range []string{"grpc.health.v1.Health", "envoy.service.auth.v3.Authorization", "grpc.reflection.v1.ServerReflection"} {
		if _, err := fileContainingSymbolV1(t, conn, sym).FindDescriptorByName(protoreflect.FullName(sym)); err != nil {
			t.Errorf("%s over reflection: %v", sym, err)
		}
	}
	if strings.Contains(logs.String(), "without its comments") {
		t.Fatalf("reflection fell back to the compiled-in descriptors:\n%s", logs)
	}
}

// TestCommentedFilesRefusesStaleDescriptors: embedded descriptors that are
// not those of the compiled-in proto (a proto edited without make generate)
// are refused, and reflection serves the compiled-in file instead.
func TestCommentedFilesRefusesStaleDescriptors(t *testing.T) {
	t.Parallel()
	if _, err := commentedFiles(sessionAuthorityDescriptors); err != nil {
		t.Fatalf("the embedded descriptors: %v", err)
	}
	var fds descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(sessionAuthorityDescriptors, &fds); err != nil {
		t.Fatal(err)
	}
	fds.GetFile()[0].GetMessageType()[0].GetField()[0].Name = proto.String("renamed")
	stale, err := proto.Marshal(&fds)
	if err != nil {
		t.Fatal(err)
	}
	for name, set := range map[string][]byte{"stale": stale, "garbage": []byte("not a descriptor set"), "empty": nil} {
		if _, err := commentedFiles(set); err == nil {
			t.Errorf("%s descriptors accepted", name)
		}
	}
	if _, err := commentedFiles(stale); err == nil || !strings.Contains(err.Error(), "make generate") {
		t.Errorf("stale descriptors: %v, want an error that says to run make generate", err)
	}
}

// fileContainingSymbolV1 asks v1 reflection for the file defining sym, and
// returns it with the dependencies sent along.
func fileContainingSymbolV1(t *testing.T, conn *grpc.ClientConn, sym string) *protoregistry.Files {
	t.Helper()
	stream, err := reflectionv1.NewServerReflectionClient(conn).ServerReflectionInfo(testutil.CallCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = stream.CloseSend() }()
	if err := stream.Send(&reflectionv1.ServerReflectionRequest{
		MessageRequest: &reflectionv1.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: sym},
	}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if e := resp.GetErrorResponse(); e != nil {
		t.Fatalf("reflection of %s: %v", sym, e)
	}
	return newFiles(t, resp.GetFileDescriptorResponse().GetFileDescriptorProto())
}

// fileContainingSymbolV1alpha is fileContainingSymbolV1 over v1alpha, and
// returns the first file sent: the one that defines sym.
func fileContainingSymbolV1alpha(t *testing.T, conn *grpc.ClientConn, sym string) *descriptorpb.FileDescriptorProto {
	t.Helper()
	stream, err := reflectionv1alpha.NewServerReflectionClient(conn).ServerReflectionInfo(testutil.CallCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = stream.CloseSend() }()
	if err := stream.Send(&reflectionv1alpha.ServerReflectionRequest{
		MessageRequest: &reflectionv1alpha.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: sym},
	}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	raw := resp.GetFileDescriptorResponse().GetFileDescriptorProto()
	if len(raw) == 0 {
		t.Fatalf("v1alpha reflection of %s: %v", sym, resp)
	}
	var fdp descriptorpb.FileDescriptorProto
	if err := proto.Unmarshal(raw[0], &fdp); err != nil {
		t.Fatal(err)
	}
	return &fdp
}

// newFiles links the serialized FileDescriptorProtos of a reflection answer
// (a file and its dependencies), as a reflection client does.
func newFiles(t *testing.T, raw [][]byte) *protoregistry.Files {
	t.Helper()
	var set descriptorpb.FileDescriptorSet
	for _, b := range raw {
		var fdp descriptorpb.FileDescriptorProto
		if err := proto.Unmarshal(b, &fdp); err != nil {
			t.Fatal(err)
		}
		set.File = append(set.File, &fdp)
	}
	files, err := protodesc.NewFiles(&set)
	if err != nil {
		t.Fatalf("linking the files reflection sent: %v", err)
	}
	return files
}
