package natsbox

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var parseServersTests = []struct {
	name    string
	in      string
	want    []string
	wantErr []string
}{
	{name: "empty", in: "", want: nil},
	{name: "blank entries dropped", in: " , ,", want: nil},
	{name: "one url", in: "nats://10.0.0.1:4222", want: []string{"nats://10.0.0.1:4222"}},
	{name: "list with spaces", in: "nats://a:4222, tls://b:4443 ,ws://c,wss://d:443", want: []string{"nats://a:4222", "tls://b:4443", "ws://c", "wss://d:443"}},
	{name: "bare host port", in: "nats1.example.net:4222", want: []string{"nats1.example.net:4222"}},
	{name: "bare host", in: "localhost", want: []string{"localhost"}},
	{name: "credentials kept", in: "nats://u:p@h:4222", want: []string{"nats://u:p@h:4222"}},
	{name: "ipv6", in: "nats://[::1]:4222", want: []string{"nats://[::1]:4222"}},
	{name: "bad scheme", in: "http://h:4222", wantErr: []string{`server 1 (http://h:4222): scheme "http"`}},
	{name: "no host", in: "nats://:4222", wantErr: []string{"server 1", "no host"}},
	{name: "port zero", in: "nats://h:0", wantErr: []string{`port "0"`}},
	{name: "port too big", in: "h:70000", wantErr: []string{`port "70000"`}},
	{name: "not a url", in: "nats://h:x", wantErr: []string{"server 1: not a URL"}},
	{name: "every bad entry reported", in: "ftp://a,nats://ok:1,nats://:2", wantErr: []string{"server 1", "server 3"}},
	{name: "secret not shown", in: "gopher://user:hunter2@h", wantErr: []string{"redacted@h"}},
}

func TestParseServers(t *testing.T) {
	for _, tt := range parseServersTests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseServers(tt.in)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("ParseServers(%q) = %q, nil; want error", tt.in, got)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("ParseServers(%q) error = %q, want it to contain %q", tt.in, err, w)
					}
				}
				if strings.Contains(err.Error(), "hunter2") {
					t.Errorf("ParseServers(%q) error = %q shows the password", tt.in, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseServers(%q) = %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseServers(%q) mismatch (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func FuzzParseServers(f *testing.F) {
	for _, tt := range parseServersTests {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := ParseServers(in)
		if err != nil {
			if got != nil {
				t.Errorf("ParseServers(%q) = %q with error %v, want nil list", in, got, err)
			}
			return
		}
		for _, s := range got {
			if s == "" || strings.Contains(s, ",") {
				t.Errorf("ParseServers(%q) entry %q: empty or contains a comma", in, s)
			}
			if _, err := checkServerURL(s); err != nil {
				t.Errorf("ParseServers(%q) accepted %q that fails its own check: %v", in, s, err)
			}
		}
	})
}

var parseContextTests = []struct {
	name    string
	in      string
	want    CLIContext
	wantErr []string
}{
	{
		name: "cli file",
		in: `{"description":"prod","url":"nats://a:4222,nats://b:4222","socks_proxy":"","token":"","user":"u","password":"p",
			"creds":"","nkey":"","cert":"","key":"","ca":"/etc/ca.pem","nsc":"","jetstream_domain":"hub",
			"jetstream_api_prefix":"","jetstream_event_prefix":"","inbox_prefix":"_INBOX_n1","user_jwt":"",
			"color_scheme":"","tls_first":true}`,
		want: CLIContext{Description: "prod", URL: "nats://a:4222,nats://b:4222", User: "u", Password: "p", CA: "/etc/ca.pem",
			JetStreamDomain: "hub", InboxPrefix: "_INBOX_n1", TLSFirst: true},
	},
	{name: "empty object", in: `{}`, want: CLIContext{}},
	{name: "unknown fields ignored", in: `{"url":"h:1","future":{"x":1}}`, want: CLIContext{URL: "h:1"}},
	{name: "creds and nkey", in: `{"creds":"~/a.creds","nkey":"/b.nk","cert":"c","key":"k"}`,
		want: CLIContext{Creds: "~/a.creds", NKey: "/b.nk", Cert: "c", Key: "k"}},
	{name: "not json", in: `url: x`, wantErr: []string{"decode"}},
	{name: "wrong type", in: `{"url": 4222}`, wantErr: []string{"decode"}},
	{name: "nsc", in: `{"nsc":"nsc://op/acct/user"}`, wantErr: []string{"field nsc is not supported"}},
	{name: "socks", in: `{"socks_proxy":"socks5://p:1080"}`, wantErr: []string{"field socks_proxy"}},
	{name: "user jwt", in: `{"user_jwt":"eyJ"}`, wantErr: []string{"field user_jwt"}},
	{name: "bad url", in: `{"url":"http://h"}`, wantErr: []string{"field url", "server 1"}},
	{name: "cert without key", in: `{"cert":"c.pem"}`, wantErr: []string{"fields cert and key"}},
	{name: "domain and prefix", in: `{"jetstream_domain":"d","jetstream_api_prefix":"p"}`, wantErr: []string{"jetstream_domain and jetstream_api_prefix"}},
	{name: "all problems reported", in: `{"nsc":"x","key":"k","url":"ftp://x"}`, wantErr: []string{"nsc", "cert and key", "field url"}},
}

func TestParseContext(t *testing.T) {
	for _, tt := range parseContextTests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseContext([]byte(tt.in))
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("ParseContext(%s) = %+v, nil; want error", tt.in, got)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("ParseContext(%s) error = %q, want it to contain %q", tt.in, err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseContext(%s) = %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseContext(%s) mismatch (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func FuzzParseContext(f *testing.F) {
	for _, tt := range parseContextTests {
		f.Add([]byte(tt.in))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseContext(data)
		if err != nil {
			if c != (CLIContext{}) {
				t.Errorf("ParseContext(%q) = %+v with error %v, want zero value", data, c, err)
			}
			return
		}
		if _, err := ParseServers(c.URL); err != nil {
			t.Errorf("ParseContext(%q) accepted url %q: %v", data, c.URL, err)
		}
		if (c.Cert == "") != (c.Key == "") || c.NSC != "" || c.SocksProxy != "" || c.UserJWT != "" {
			t.Errorf("ParseContext(%q) accepted an invalid context %+v", data, c)
		}
	})
}

func TestContextPath(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", "/xdg")
	tests := []struct {
		name    string
		in      string
		want    string
		wantErr bool
	}{
		{name: "plain", in: "prod", want: "/xdg/nats/context/prod.json"},
		{name: "dotted", in: "ngs.js", want: "/xdg/nats/context/ngs.js.json"},
		{name: "empty", in: "", wantErr: true},
		{name: "dot", in: ".", wantErr: true},
		{name: "parent", in: "..", wantErr: true},
		{name: "traversal", in: "../../etc/passwd", wantErr: true},
		{name: "slash", in: "a/b", wantErr: true},
		{name: "backslash", in: `a\b`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ContextPath(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("ContextPath(%q) = %q, %v; want %q, error %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestContextPathDefaultsToHome(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", "")
	t.Setenv("HOME", "/home/op")
	if got, err := ContextPath("prod"); err != nil || got != "/home/op/.config/nats/context/prod.json" {
		t.Errorf("ContextPath(prod) = %q, %v; want /home/op/.config/nats/context/prod.json", got, err)
	}
}

func TestLoadContext(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	path := writeContext(t, "prod", map[string]any{"url": "nats://h:4222", "creds": "~/keys/node.creds", "ca": "/abs/ca.pem"})
	got, err := LoadContext("prod")
	if err != nil {
		t.Fatalf("LoadContext(prod) = %v", err)
	}
	want := CLIContext{Path: path, URL: "nats://h:4222", Creds: filepath.Join(home, "keys/node.creds"), CA: "/abs/ca.pem"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("LoadContext(prod) mismatch (-want +got):\n%s", diff)
	}

	if err := os.WriteFile(path, []byte(`{"nsc":"nsc://x"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadContext("prod"); err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "nsc") {
		t.Errorf("LoadContext(prod with nsc) = %v, want an error naming %s and nsc", err, path)
	}
	_, err = LoadContext("other")
	if !errors.Is(err, ErrContextNotFound) || !strings.Contains(err.Error(), filepath.Join(filepath.Dir(path), "other.json")) {
		t.Errorf("LoadContext(other) = %v, want ErrContextNotFound naming the path", err)
	}
}
