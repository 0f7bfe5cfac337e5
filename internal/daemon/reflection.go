package daemon

import (
	_ "embed"
	"errors"
	"fmt"
	"log/slog"

	"google.golang.org/grpc"
	"google.golang.org/grpc/reflection"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	sessionauthv1 "github.com/sessiond/sessiond/gen/sessionauth/v1"
)

// sessionAuthorityDescriptors is proto/sessionauth/v1/session_authority.proto
// as buf builds it: a FileDescriptorSet with the file's source info (its
// comments, which protoc-gen-go leaves out of the compiled-in descriptor) and
// without its imports. make generate writes it; make checkgenerate fails when
// it is stale.
//
//go:embed session_authority.binpb
var sessionAuthorityDescriptors []byte

// registerReflection registers server reflection on gs, v1 and v1alpha (as
// reflection.Register does), serving the SessionAuthority's file with its
// comments, so that `grpcurl describe` shows the API reference, and every
// other file (health, ext_authz, the well-known types) from the compiled-in
// registry. Should the embedded descriptors not match the compiled-in ones,
// it logs why and serves the file without comments.
func registerReflection(gs *grpc.Server, log *slog.Logger) {
	opts := reflection.ServerOptions{Services: gs}
	if files, err := commentedFiles(sessionAuthorityDescriptors); err != nil {
		log.Warn("reflection: serving the API without its comments", "error", err)
	} else {
		opts.DescriptorResolver = files
	}
	reflectionv1alpha.RegisterServerReflectionServer(gs, reflection.NewServer(opts))
	reflectionv1.RegisterServerReflectionServer(gs, reflection.NewServerV1(opts))
}

// commentedFiles returns a resolver of the compiled-in files in which the
// SessionAuthority's file carries the source info found in set (a
// FileDescriptorSet holding that file). The descriptor served is the
// compiled-in one, so reflection describes exactly the types sessiond
// serves; set must describe the same file, but for file options (buf's
// managed mode sets go_package only when generating code).
func commentedFiles(set []byte) (protodesc.Resolver, error) {
	var fds descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(set, &fds); err != nil {
		return nil, fmt.Errorf("embedded descriptors: %w", err)
	}
	compiled := sessionauthv1.File_sessionauth_v1_session_authority_proto
	var built *descriptorpb.FileDescriptorProto
	for _, f := range fds.GetFile() {
		if f.GetName() == compiled.Path() {
			built = f
		}
	}
	if built == nil {
		return nil, fmt.Errorf("embedded descriptors lack %s", compiled.Path())
	}
	fdp := protodesc.ToFileDescriptorProto(compiled)
	if !proto.Equal(withoutSourceAndOptions(built), withoutSourceAndOptions(fdp)) {
		return nil, fmt.Errorf("embedded descriptors of %s differ from the compiled-in ones: run make generate", compiled.Path())
	}
	if built.GetSourceCodeInfo() == nil {
		return nil, errors.New("embedded descriptors carry no source info")
	}
	fdp.SourceCodeInfo = built.GetSourceCodeInfo()
	fd, err := protodesc.NewFile(fdp, protoregistry.GlobalFiles)
	if err != nil {
		return nil, fmt.Errorf("embedded descriptors: %w", err)
	}
	files := new(protoregistry.Files)
	if err := files.RegisterFile(fd); err != nil {
		return nil, fmt.Errorf("embedded descriptors: %w", err)
	}
	return overlayFiles{files}, nil
}

func withoutSourceAndOptions(f *descriptorpb.FileDescriptorProto) *descriptorpb.FileDescriptorProto {
	f = proto.CloneOf(f)
	f.SourceCodeInfo, f.Options = nil, nil
	return f
}

// overlayFiles resolves from its files first, then from the compiled-in
// registry.
type overlayFiles struct{ files *protoregistry.Files }

func (o overlayFiles) FindFileByPath(path string) (protoreflect.FileDescriptor, error) {
	if fd, err := o.files.FindFileByPath(path); err == nil {
		return fd, nil
	}
	return protoregistry.GlobalFiles.FindFileByPath(path)
}

func (o overlayFiles) FindDescriptorByName(name protoreflect.FullName) (protoreflect.Descriptor, error) {
	if d, err := o.files.FindDescriptorByName(name); err == nil {
		return d, nil
	}
	return protoregistry.GlobalFiles.FindDescriptorByName(name)
}
