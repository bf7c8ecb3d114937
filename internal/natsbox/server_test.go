package natsbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mms-io/mms/internal/syncbuf"
)

func TestServerConfigOptions(t *testing.T) {
	type want struct {
		Host         string
		Port         int
		StoreDir     string
		MaxConsumers int
		MaxPayload   int32
		JetStream    bool
		NoSigs       bool
		ServerName   string
	}
	tests := []struct {
		name    string
		cfg     ServerConfig
		want    want
		wantErr string
	}{
		{
			name: "defaults",
			cfg:  ServerConfig{StoreDir: "/var/lib/mms/nats"},
			want: want{Host: "127.0.0.1", Port: 4222, StoreDir: "/var/lib/mms/nats", MaxConsumers: -1, JetStream: true, NoSigs: true},
		},
		{
			name: "explicit",
			cfg:  ServerConfig{Host: "0.0.0.0", Port: -1, StoreDir: "s", MaxConsumers: 5000, MaxPayload: 2 << 20},
			want: want{Host: "0.0.0.0", Port: -1, StoreDir: "s", MaxConsumers: 5000, MaxPayload: 2 << 20, JetStream: true, NoSigs: true},
		},
		{
			name: "unlimited consumers",
			cfg:  ServerConfig{StoreDir: "s", MaxConsumers: -1},
			want: want{Host: "127.0.0.1", Port: 4222, StoreDir: "s", MaxConsumers: -1, JetStream: true, NoSigs: true},
		},
		{
			name: "configure runs last",
			cfg: ServerConfig{StoreDir: "s", Configure: func(o *server.Options) {
				o.ServerName = "hub"
				o.Port = 4333
			}},
			want: want{Host: "127.0.0.1", Port: 4333, StoreDir: "s", MaxConsumers: -1, JetStream: true, NoSigs: true, ServerName: "hub"},
		},
		{name: "no store dir", cfg: ServerConfig{}, wantErr: "store dir is required"},
		{name: "bad max consumers", cfg: ServerConfig{StoreDir: "s", MaxConsumers: -2}, wantErr: "max consumers -2"},
		{name: "bad max payload", cfg: ServerConfig{StoreDir: "s", MaxPayload: -1}, wantErr: "max payload -1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts, err := tt.cfg.Options()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Options() error = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Options() = %v", err)
			}
			got := want{
				Host: opts.Host, Port: opts.Port, StoreDir: opts.StoreDir,
				MaxConsumers: opts.JetStreamLimits.DefaultMaxConsumers, MaxPayload: opts.MaxPayload,
				JetStream: opts.JetStream, NoSigs: opts.NoSigs, ServerName: opts.ServerName,
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Options() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestStartServerJetStreamKV(t *testing.T) {
	var logs syncbuf.Buffer
	s := startServer(t, ServerConfig{Log: logs.Logger(slog.LevelInfo)})
	if !s.JetStreamEnabled() {
		t.Fatalf("JetStreamEnabled() = false, want true")
	}
	if host, _, _ := net.SplitHostPort(s.Addr().String()); host != "127.0.0.1" {
		t.Errorf("listen host = %s, want 127.0.0.1", host)
	}
	c := connect(t, ConnectConfig{Servers: []string{s.ClientURL()}, FailFast: true})
	js, err := c.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "MACHINES"})
	if err != nil {
		t.Fatalf("CreateKeyValue(MACHINES) = %v", err)
	}
	if _, err := kv.Put(ctx, "spec", []byte("v1")); err != nil {
		t.Fatalf("Put(spec) = %v", err)
	}
	e, err := kv.Get(ctx, "spec")
	if err != nil || string(e.Value()) != "v1" {
		t.Fatalf("Get(spec) = %v, %v, want v1", e, err)
	}
	// Streams created without a consumer cap inherit the server's: unlimited.
	info, err := js.Stream(ctx, "KV_MACHINES")
	if err != nil {
		t.Fatal(err)
	}
	if got := info.CachedInfo().Config.MaxConsumers; got != -1 {
		t.Errorf("KV_MACHINES MaxConsumers = %d, want -1", got)
	}
	out := logs.String()
	if !strings.Contains(out, "level=INFO") || !strings.Contains(out, "component=nats-server") || !strings.Contains(out, "Server is ready") {
		t.Errorf("server log = %q, want INFO lines from component=nats-server including %q", out, "Server is ready")
	}
}

func TestStartServerShutsDownOnContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	s, err := StartServer(ctx, ServerConfig{Port: -1, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatalf("StartServer() = %v", err)
	}
	if !s.Running() {
		t.Fatalf("Running() = false right after StartServer")
	}
	cancel()
	s.WaitForShutdown()
	if s.Running() {
		t.Errorf("Running() = true after ctx was cancelled and WaitForShutdown returned")
	}
}

func TestStartServerPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	p := l.Addr().(*net.TCPAddr).Port
	var logs syncbuf.Buffer
	s, err := StartServer(t.Context(), ServerConfig{Port: p, StoreDir: t.TempDir(), Log: logs.Logger(slog.LevelInfo)})
	if err == nil {
		s.Shutdown()
		t.Fatalf("StartServer(port %d in use) = nil error", p)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", p)
	if !errors.Is(err, ErrServerStart) || !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("StartServer(port %d in use) = %v, want ErrServerStart naming %s and \"address already in use\"", p, err, addr)
	}
	if !strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("server log = %q, want the fatal error at level ERROR", logs.String())
	}
}

func TestStartServerCancelledContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := StartServer(ctx, ServerConfig{Port: -1, StoreDir: t.TempDir(), StartTimeout: time.Second})
	if !errors.Is(err, ErrServerStart) || !errors.Is(err, context.Canceled) {
		t.Errorf("StartServer(cancelled ctx) = %v, want ErrServerStart and context.Canceled", err)
	}
}

func TestServerLoggerLevels(t *testing.T) {
	tests := []struct {
		name string
		log  func(l *serverLogger)
		want string
	}{
		{"notice", func(l *serverLogger) { l.Noticef("n %d", 1) }, `level=INFO msg="n 1"`},
		{"warn", func(l *serverLogger) { l.Warnf("w %d", 2) }, `level=WARN msg="w 2"`},
		{"error", func(l *serverLogger) { l.Errorf("e %d", 3) }, `level=ERROR msg="e 3"`},
		{"fatal", func(l *serverLogger) { l.Fatalf("f %d", 4) }, `level=ERROR msg="f 4"`},
		{"debug", func(l *serverLogger) { l.Debugf("d %d", 5) }, `level=DEBUG msg="d 5"`},
		{"trace", func(l *serverLogger) { l.Tracef("t %d", 6) }, `level=DEBUG-4 msg="t 6"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf syncbuf.Buffer
			l := newServerLogger(buf.Logger(LevelTrace))
			tt.log(l)
			if got := buf.String(); !strings.Contains(got, tt.want) || !strings.Contains(got, "component=nats-server") {
				t.Errorf("%s log = %q, want it to contain %q and component=nats-server", tt.name, got, tt.want)
			}
		})
	}
}

func TestServerLoggerRemembersFailures(t *testing.T) {
	l := newServerLogger(slog.New(slog.DiscardHandler))
	l.Debugf("not an error")
	if got := l.lastError(); got != "" {
		t.Errorf("lastError() after Debugf = %q, want empty", got)
	}
	l.Errorf("disk %s", "full")
	if got := l.lastError(); got != "disk full" {
		t.Errorf("lastError() = %q, want %q (errors are kept even when the logger discards them)", got, "disk full")
	}
	l.Fatalf("first")
	l.Fatalf("second")
	if got := <-l.fatal; got != "first" {
		t.Errorf("first fatal = %q, want %q", got, "first")
	}
}

// TestStartServerAuthAndLimits: a server with Users lets in only them, and
// MaxStore caps what JetStream stores.
func TestStartServerAuthAndLimits(t *testing.T) {
	s := startServer(t, ServerConfig{Users: []*server.User{{Username: "mms", Password: "s3cret-s3cret"}}, MaxStore: 1 << 20, MaxMemory: 1 << 20})
	for name, opts := range map[string][]nats.Option{
		"no credentials": nil,
		"wrong password": {nats.UserInfo("mms", "guess")},
		"other user":     {nats.UserInfo("nobody", "s3cret-s3cret")},
	} {
		if nc, err := nats.Connect(s.ClientURL(), opts...); err == nil || !strings.Contains(err.Error(), "Authorization Violation") {
			if nc != nil {
				nc.Close()
			}
			t.Errorf("connect with %s = %v, want an Authorization Violation", name, err)
		}
	}
	nc, err := nats.Connect(s.ClientURL(), nats.UserInfo("mms", "s3cret-s3cret"))
	if err != nil {
		t.Fatalf("connect with the credentials: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "BIG", Subjects: []string{"big"}, MaxBytes: 2 << 20}); err == nil {
		t.Errorf("create a 2 MiB stream on a server with 1 MiB of store = nil error, want a refusal")
	}
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "FILL", Subjects: []string{"fill"}}); err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 64<<10)
	var putErr error
	for i := 0; i < 32 && putErr == nil; i++ {
		_, putErr = js.Publish(t.Context(), "fill", chunk)
	}
	if putErr == nil {
		t.Errorf("published 2 MiB into a server with 1 MiB of store without an error")
	}
}

func TestServerConfigRejectsBadAuthAndLimits(t *testing.T) {
	for name, cfg := range map[string]ServerConfig{
		"user without password": {StoreDir: "s", Users: []*server.User{{Username: "mms"}}},
		"negative max store":    {StoreDir: "s", MaxStore: -1},
	} {
		if _, err := cfg.Options(); err == nil {
			t.Errorf("%s: Options() = nil error, want one", name)
		}
	}
}
