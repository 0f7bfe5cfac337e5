package daemon

import (
	"bytes"
	"context"
	"log/slog"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	gproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// A request whose bytes do not decode (a string field holding invalid UTF-8,
// which any JavaScript client that cuts a string inside a character sends;
// or bytes that are not protobuf at all) is the caller's mistake. grpc-go
// answers it INTERNAL ("grpc: failed to unmarshal the received message")
// before any sessiond code runs, whatever the codec says: so sessiond's codec
// does not fail. It decodes such a request as an empty message that carries
// what was wrong in an unknown field of its own, and the undecodable
// interceptors (after the metrics and the logging, so that the call is
// counted and logged) answer INVALID_ARGUMENT with that description. No
// handler ever sees such a message.

// undecodableField is the field number of the marker: the highest a field
// may have, which no sessiond message uses.
const undecodableField protowire.Number = protowire.MaxValidNumber

// undecodableTag starts the marker's bytes.
var undecodableTag = protowire.AppendTag(nil, undecodableField, protowire.BytesType)

// codec is gRPC's proto codec with undecodable requests marked rather than
// refused.
type codec struct{ encoding.CodecV2 }

func newCodec() codec { return codec{encoding.GetCodecV2(gproto.Name)} }

// Unmarshal implements encoding.CodecV2.
func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	err := c.CodecV2.Unmarshal(data, v)
	if err == nil {
		return nil
	}
	m, ok := v.(proto.Message)
	if !ok {
		return err
	}
	b := data.Materialize()
	problem := describeUndecodable(b, m.ProtoReflect().Descriptor(), "")
	if problem == "" {
		problem = "the request is not a valid " + string(m.ProtoReflect().Descriptor().FullName()) + " message: " + err.Error()
	}
	proto.Reset(m)
	m.ProtoReflect().SetUnknown(protowire.AppendBytes(bytes.Clone(undecodableTag), []byte(problem)))
	return nil
}

// undecodable returns the description of what was wrong with req, if the
// codec marked it.
func undecodable(req any) (string, bool) {
	m, ok := req.(proto.Message)
	if !ok {
		return "", false
	}
	rest, found := bytes.CutPrefix(m.ProtoReflect().GetUnknown(), undecodableTag)
	if !found {
		return "", false
	}
	v, n := protowire.ConsumeBytes(rest)
	if n < 0 {
		return "", false
	}
	return string(v), true
}

// describeUndecodable names the first string field of b (a message of
// descriptor md) that is not valid UTF-8, with its path ("user_id",
// "attributes"), or "" if there is none (the bytes are broken otherwise).
func describeUndecodable(b []byte, md protoreflect.MessageDescriptor, prefix string) string {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return ""
		}
		b = b[n:]
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return ""
		}
		value := b[:n]
		b = b[n:]
		fd := md.Fields().ByNumber(num)
		if fd == nil || typ != protowire.BytesType {
			continue
		}
		payload, _ := protowire.ConsumeBytes(value)
		name := prefix + string(fd.Name())
		switch {
		case fd.Kind() == protoreflect.StringKind && !utf8.Valid(payload):
			return "request field " + name + " is not valid UTF-8: send text as UTF-8, and do not cut a string inside a character"
		case fd.IsMap():
			// A map entry: key = 1, value = 2.
			entry := fd.MapKey().ContainingMessage()
			if p := describeUndecodable(payload, entry, name+": a "); p != "" {
				return p
			}
		case fd.Kind() == protoreflect.MessageKind:
			if p := describeUndecodable(payload, fd.Message(), name+"."); p != "" {
				return p
			}
		}
	}
	return ""
}

// undecodableMetric counts the requests answered INVALID_ARGUMENT because
// they did not decode, by method.
func newUndecodableMetric() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sessiond_undecodable_requests_total",
		Help: "Requests whose bytes did not decode (invalid UTF-8 in a string field, or not protobuf), answered INVALID_ARGUMENT, by method.",
	}, []string{"method"})
}

// undecodableInterceptors answer a request the codec marked undecodable
// with INVALID_ARGUMENT, counted in counter (when not nil) and logged at
// debug level: refuse, for unary calls (unaryChain), and the stream
// interceptor.
func undecodableInterceptors(counter *prometheus.CounterVec, log *slog.Logger) (refuse func(ctx context.Context, method, problem string) error, stream grpc.StreamServerInterceptor) {
	refuse = func(ctx context.Context, method, problem string) error {
		if counter != nil {
			counter.WithLabelValues(method).Inc()
		}
		log.DebugContext(ctx, "undecodable request", "grpc.method", method, "problem", problem)
		return status.Error(codes.InvalidArgument, problem)
	}
	stream = func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return handler(srv, &checkedStream{ServerStream: ss, refuse: func(problem string) error {
			return refuse(ss.Context(), info.FullMethod, problem)
		}})
	}
	return refuse, stream
}

// checkedStream refuses the undecodable messages a stream receives.
type checkedStream struct {
	grpc.ServerStream
	refuse func(problem string) error
}

func (s *checkedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if problem, bad := undecodable(m); bad {
		return s.refuse(problem)
	}
	return nil
}
