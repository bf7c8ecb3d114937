package main

import (
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mms-io/mms/manager"
	"github.com/mms-io/mms/packer"
)

func TestDefaultStateDir(t *testing.T) {
	home := func() (string, error) { return "/home/ann", nil }
	noHome := func() (string, error) { return "", errors.New("$HOME is not defined") }
	tests := []struct {
		name    string
		euid    int
		xdg     string
		home    func() (string, error)
		want    string
		wantErr string
	}{
		{"root", 0, "/x", home, "/var/lib/mms", ""},
		{"user with XDG_STATE_HOME", 1000, "/home/ann/.state", home, "/home/ann/.state/mms", ""},
		{"user", 1000, "", home, "/home/ann/.local/state/mms", ""},
		{"relative XDG_STATE_HOME is ignored", 1000, "state", home, "/home/ann/.local/state/mms", ""},
		{"no home", 1000, "", noHome, "", "give --state-dir"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := defaultStateDir(tt.euid, tt.xdg, tt.home)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("defaultStateDir() = %q, %v; want an error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("defaultStateDir() = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestParseListen(t *testing.T) {
	tests := []struct {
		in       string
		wantHost string
		wantPort int
		wantErr  bool
	}{
		{"127.0.0.1:4222", "127.0.0.1", 4222, false},
		{"127.0.0.1:0", "127.0.0.1", -1, false},
		{":4222", "0.0.0.0", 4222, false},
		{"[::1]:4333", "::1", 4333, false},
		{"localhost", "", 0, true},
		{"127.0.0.1:http", "", 0, true},
		{"127.0.0.1:70000", "", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			host, port, err := parseListen(tt.in)
			if (err != nil) != tt.wantErr || host != tt.wantHost || port != tt.wantPort {
				t.Errorf("parseListen(%q) = %q, %d, %v; want %q, %d, error %v", tt.in, host, port, err, tt.wantHost, tt.wantPort, tt.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), "--listen") {
				t.Errorf("parseListen(%q) error %q does not name --listen", tt.in, err)
			}
		})
	}
}

func TestResolveTrust(t *testing.T) {
	key := func() string {
		pub, _, err := packer.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return packer.FormatPublicKey(pub)
	}
	a, b, c := key(), key(), key()
	file := writeFile(t, t.TempDir(), "trusted.keys", "# team\n"+b+"\n"+a+"\n")
	tests := []struct {
		name          string
		hex           []string
		file          string
		compiled      string
		threshold     int
		insecure      bool
		wantKeys      []string
		wantThreshold int
		wantErr       string
	}{
		{"flag", []string{a}, "", "", 1, false, []string{a}, 1, ""},
		{"flags and file, deduplicated", []string{a, strings.ToUpper(a)}, file, "", 2, false, []string{a, b}, 2, ""},
		{"compiled-in defaults when no flag", nil, "", c, 1, false, []string{c}, 1, ""},
		{"flags replace the defaults", []string{a}, "", c, 1, false, []string{a}, 1, ""},
		{"a key file replaces the defaults", nil, file, c, 1, false, []string{b, a}, 1, ""},
		{"bad compiled-in default", nil, "", "zz", 1, false, nil, 0, "compiled-in public key 1"},
		{"insecure", nil, "", "", 1, true, nil, 1, ""},
		{"insecure with compiled-in defaults", nil, "", c, 1, true, nil, 0, "--insecure-unsigned with trusted keys"},
		{"nothing", nil, "", "", 1, false, nil, 0, "no trusted public key"},
		{"threshold too high", []string{a}, "", "", 2, false, nil, 0, "--threshold 2 exceeds the 1 distinct trusted key, so no spec could ever be accepted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old := manager.PublicKey
			manager.PublicKey = tt.compiled
			t.Cleanup(func() { manager.PublicKey = old })
			trust, err := resolveTrust(tt.hex, tt.file, tt.threshold, tt.insecure, false)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("resolveTrust() error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("resolveTrust() = %v", err)
			}
			var keys []string
			for _, k := range trust.Keys() {
				keys = append(keys, packer.FormatPublicKey(k))
			}
			if !cmp.Equal(keys, tt.wantKeys) || trust.Threshold() != tt.wantThreshold || trust.Unsigned() != tt.insecure {
				t.Errorf("resolveTrust() = %v, %d, unsigned %v; want %v, %d, %v", keys, trust.Threshold(), trust.Unsigned(), tt.wantKeys, tt.wantThreshold, tt.insecure)
			}
		})
	}
}

func TestAgentNetworkHelpers(t *testing.T) {
	for in, want := range map[string]string{"0.0.0.0": "127.0.0.1", "::": "::1", "10.1.2.3": "10.1.2.3", "node.example": "node.example"} {
		if got := connectHost(in); got != want {
			t.Errorf("connectHost(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]bool{"127.0.0.1": true, "::1": true, "localhost": true, "0.0.0.0": false, "10.0.0.1": false} {
		if got := isLoopback(in); got != want {
			t.Errorf("isLoopback(%q) = %v, want %v", in, got, want)
		}
	}
	if got, want := showServers([]string{"nats://u:secret@a:4222, nats://b:4222", ""}), "nats://a:4222,nats://b:4222"; got != want {
		t.Errorf("showServers() = %q, want %q", got, want)
	}
}
