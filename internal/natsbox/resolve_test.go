package natsbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
)

func TestResolve(t *testing.T) {
	dir := t.TempDir()
	file := func(name string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	creds, seed, cert, key, ca, ca2 := file("a.creds"), file("a.nk"), file("c.pem"), file("k.pem"), file("ca.pem"), file("ca2.pem")
	writeContext(t, "ctx", map[string]any{
		"url": "nats://a:1, nats://b:2", "user": "u", "password": "p", "token": "t", "ca": ca,
		"inbox_prefix": "_INBOX_ctx", "jetstream_domain": "hub",
	})

	tests := []struct {
		name    string
		cfg     ConnectConfig
		want    settings
		wantErr []string
	}{
		{name: "nothing", cfg: ConnectConfig{}, want: settings{servers: []string{nats.DefaultURL}}},
		{name: "servers split", cfg: ConnectConfig{Servers: []string{"a:1,b:2", "c:3"}, Name: "n"},
			want: settings{servers: []string{"a:1", "b:2", "c:3"}, name: "n"}},
		{name: "context", cfg: ConnectConfig{Context: "ctx"}, want: settings{
			servers: []string{"nats://a:1", "nats://b:2"}, user: "u", password: "p", token: "t", ca: ca,
			inboxPrefix: "_INBOX_ctx", jsDomain: "hub",
		}},
		{name: "flags win", cfg: ConnectConfig{Context: "ctx", Servers: []string{"z:9"}, TLSCA: ca2, InboxPrefix: "_INBOX_n1"},
			want: settings{
				servers: []string{"z:9"}, user: "u", password: "p", token: "t", ca: ca2,
				inboxPrefix: "_INBOX_n1", jsDomain: "hub",
			}},
		{name: "creds replace context credentials", cfg: ConnectConfig{Context: "ctx", Creds: creds},
			want: settings{servers: []string{"nats://a:1", "nats://b:2"}, creds: creds, ca: ca, inboxPrefix: "_INBOX_ctx", jsDomain: "hub"}},
		{name: "nkey and mtls", cfg: ConnectConfig{NKey: seed, TLSCert: cert, TLSKey: key},
			want: settings{servers: []string{nats.DefaultURL}, nkey: seed, cert: cert, key: key}},
		{name: "creds and nkey", cfg: ConnectConfig{Creds: creds, NKey: seed}, wantErr: []string{"creds and nkey"}},
		{name: "cert without key", cfg: ConnectConfig{TLSCert: cert}, wantErr: []string{"tls cert and tls key"}},
		{name: "missing files", cfg: ConnectConfig{Creds: filepath.Join(dir, "nope.creds"), TLSCA: filepath.Join(dir, "nope.pem")},
			wantErr: []string{"creds file", "nope.creds", "tls ca file", "nope.pem"}},
		{name: "bad server", cfg: ConnectConfig{Servers: []string{"ok:1", "http://x"}}, wantErr: []string{"servers", `scheme "http"`}},
		{name: "missing context", cfg: ConnectConfig{Context: "absent"}, wantErr: []string{"absent.json"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := resolve(tt.cfg)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("resolve(%+v) = %+v, nil; want error", tt.cfg, got)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("resolve(%+v) error = %q, want it to contain %q", tt.cfg, err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("resolve(%+v) = %v", tt.cfg, err)
			}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(settings{})); diff != "" {
				t.Errorf("resolve(%+v) mismatch (-want +got):\n%s", tt.cfg, diff)
			}
		})
	}
}

func TestReconnectDelay(t *testing.T) {
	tests := []struct {
		attempt  int
		min, max time.Duration
	}{
		{0, 125 * time.Millisecond, 250 * time.Millisecond}, // nats.go counts from 1; below counts as the first
		{1, 125 * time.Millisecond, 250 * time.Millisecond},
		{2, 250 * time.Millisecond, 500 * time.Millisecond},
		{3, 500 * time.Millisecond, time.Second},
		{6, 4 * time.Second, 8 * time.Second},
		{7, 5 * time.Second, 10 * time.Second},
		{1000, 5 * time.Second, 10 * time.Second},
	}
	for _, tt := range tests {
		for range 100 {
			if got := reconnectDelay(tt.attempt); got < tt.min || got > tt.max {
				t.Fatalf("reconnectDelay(%d) = %v, want within [%v, %v]", tt.attempt, got, tt.min, tt.max)
			}
		}
	}
}

func TestStatusViolations(t *testing.T) {
	violation := func(subject string) error {
		// As nats.go reports it.
		return fmt.Errorf("%w: Permissions Violation for Publish to %q", nats.ErrPermissionViolation, subject)
	}
	st := newStatus()
	st.recordError(errors.New("nats: slow consumer, messages dropped"))
	if got := st.Snapshot(); got.LastError == "" || len(got.PermissionViolations) != 0 {
		t.Fatalf("Snapshot() after slow consumer = %+v, want LastError and no violations", got)
	}
	st.recordError(violation("a"))
	st.recordError(violation("b"))
	st.recordError(violation("a"))
	got := st.Snapshot()
	var msgs []string
	for _, v := range got.PermissionViolations {
		msgs = append(msgs, v.Message)
	}
	wantMsgs := []string{
		`Permissions Violation for Publish to "b"`,
		`Permissions Violation for Publish to "a"`,
	}
	if diff := cmp.Diff(wantMsgs, msgs); diff != "" {
		t.Errorf("violations mismatch (-want +got):\n%s", diff)
	}
	if a := got.PermissionViolations[1]; a.Count != 2 || a.First.After(a.Last) {
		t.Errorf("violation a = %+v, want Count 2 and First <= Last", a)
	}

	for i := range MaxViolations + 5 {
		st.recordError(violation(string(rune('c' + i))))
	}
	if n := len(st.Snapshot().PermissionViolations); n != MaxViolations {
		t.Errorf("len(PermissionViolations) = %d after many, want %d", n, MaxViolations)
	}
	// Snapshots are copies.
	snap := st.Snapshot()
	snap.PermissionViolations[0].Message = "changed"
	if st.Snapshot().PermissionViolations[0].Message == "changed" {
		t.Errorf("Snapshot() shares its violations slice with the Status")
	}
}

func TestViolationText(t *testing.T) {
	err := errors.New("nats: permissions violation: Permissions Violation for Publish to \"x\"")
	if got, want := violationText(err), `Permissions Violation for Publish to "x"`; got != want {
		t.Errorf("violationText(%q) = %q, want %q", err, got, want)
	}
}

func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"nats://u:p@h:4222", "nats://redacted@h:4222"},
		{"tls://token@h", "tls://redacted@h"},
		{"h:4222", "nats://h:4222"},
		{"nats://h:x", "(unparsable URL)"},
	}
	for _, tt := range tests {
		if got := redactURL(tt.in); got != tt.want {
			t.Errorf("redactURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
