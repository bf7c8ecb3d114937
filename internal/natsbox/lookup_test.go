package natsbox

import (
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestLookupOrder sets every source at once, then removes the winner one
// by one: each time the next source in the nats CLI's order is used, and
// Tried lists what came before it.
func TestLookupOrder(t *testing.T) {
	config := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", config)
	selection := filepath.Join(config, "nats", "context.txt")
	if err := os.MkdirAll(filepath.Dir(selection), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(selection, []byte("picked\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	agentState, explicitState := t.TempDir(), t.TempDir()
	agentFile := filepath.Join(agentState, LocalContextFile)
	if err := WriteContextFile(agentFile, CLIContext{URL: "nats://127.0.0.1:4999"}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{EnvContext: "fromenv", EnvURL: "nats://u:secret@envhost:4222"}
	l := Lookup{Server: "nats://flag:1", Context: "flagctx", StateDir: explicitState, DefaultStateDir: agentState,
		Getenv: func(k string) string { return env[k] }}

	steps := []struct {
		want  Found
		strip func()
	}{
		{Found{Servers: []string{"nats://flag:1"}, From: "--server nats://flag:1"}, func() { l.Server = "" }},
		{Found{Context: "flagctx", From: "--context flagctx"}, func() { l.Context = "" }},
		{Found{Context: "fromenv", From: "$NATS_CONTEXT (fromenv)"}, func() { delete(env, EnvContext) }},
		{Found{ContextFile: filepath.Join(explicitState, LocalContextFile), From: "the mms agent of --state-dir (" + filepath.Join(explicitState, LocalContextFile) + ")"}, func() { l.StateDir = "" }},
		{Found{Servers: []string{"nats://u:secret@envhost:4222"}, From: "$NATS_URL (nats://redacted@envhost:4222)"}, func() { delete(env, EnvURL) }},
		{Found{Context: "picked", From: "the selected nats context picked (" + selection + ")"}, func() { os.Remove(selection) }},
		{Found{ContextFile: agentFile, From: "the local mms agent (" + agentFile + ")"}, nil},
	}
	skipped := []string{"--server: not given", "--context: not given", "$NATS_CONTEXT: not set", "--state-dir: not given",
		"$NATS_URL: not set", "the selected nats context: none in " + selection, "the local mms agent: no " + agentFile}
	for i, step := range steps {
		got, err := l.Find()
		if err != nil {
			t.Fatalf("step %d: Find() = %v", i, err)
		}
		want := step.want
		want.Tried = append(append([]string{}, skipped[:i]...), want.From+": used")
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("step %d: Find() mismatch (-want +got):\n%s", i, diff)
		}
		if strings.Contains(strings.Join(got.Tried, " "), "secret") {
			t.Errorf("step %d: Tried shows a password: %q", i, got.Tried)
		}
		if step.strip != nil {
			step.strip()
		}
	}

	// Nothing left: no default server is guessed.
	os.Remove(agentFile)
	_, err := l.Find()
	want := "no NATS server to use: looked for NATS in this order: " + strings.Join(skipped, "; ")
	if !errors.Is(err, ErrNoNATS) || err.Error() != want {
		t.Errorf("Find() with nothing set = %v, want %s", err, want)
	}

	// A state directory from elsewhere than --state-dir is named so.
	l.StateDir, l.StateDirSource = explicitState, "$MMS_STATE_DIR"
	got, err := l.Find()
	if from := "the mms agent of $MMS_STATE_DIR (" + filepath.Join(explicitState, LocalContextFile) + ")"; err != nil || got.From != from || got.Tried[2] != "$NATS_CONTEXT: not set" {
		t.Errorf("Find() with StateDirSource = %+v, %v; want it from %s", got, err, from)
	}
}

func TestLookupErrors(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	_, err := Lookup{Getenv: func(k string) string {
		if k == EnvURL {
			return "http://x"
		}
		return ""
	}}.Find()
	if err == nil || !strings.Contains(err.Error(), "$NATS_URL") || !strings.Contains(err.Error(), `scheme "http"`) {
		t.Errorf("Find() with a bad NATS_URL = %v, want it named", err)
	}
}

func TestSelectedContext(t *testing.T) {
	config := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", config)
	want := filepath.Join(config, "nats", "context.txt")
	if name, path, err := SelectedContext(); name != "" || path != want || err != nil {
		t.Errorf("SelectedContext() without a file = %q, %q, %v; want none, %s", name, path, err, want)
	}
	if err := os.MkdirAll(filepath.Dir(want), 0o700); err != nil {
		t.Fatal(err)
	}
	for content, name := range map[string]string{"edge\n": "edge", "  \n": "", "": ""} {
		if err := os.WriteFile(want, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if got, _, err := SelectedContext(); got != name || err != nil {
			t.Errorf("SelectedContext() with %q = %q, %v; want %q", content, got, err, name)
		}
	}
}

func TestWriteContextFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ctx.json")
	c := CLIContext{Description: "local", URL: "nats://127.0.0.1:4222", User: "mms", Password: "pw"}
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteContextFile(path, c); err != nil {
		t.Fatalf("WriteContextFile = %v", err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("context file mode = %v, want 0600", st.Mode().Perm())
	}
	got, err := LoadContextFile(path)
	if err != nil {
		t.Fatalf("LoadContextFile = %v", err)
	}
	c.Path = path
	if diff := cmp.Diff(c, got); diff != "" {
		t.Errorf("LoadContextFile mismatch (-want +got):\n%s", diff)
	}
	if _, err := LoadContextFile(path + ".missing"); !errors.Is(err, ErrContextNotFound) || !strings.Contains(err.Error(), path+".missing") {
		t.Errorf("LoadContextFile(missing) = %v, want ErrContextNotFound naming it", err)
	}
}

// TestConnectContextFile connects through a context file, as commands do
// through a local agent's.
func TestConnectContextFile(t *testing.T) {
	s := startServer(t, ServerConfig{})
	path := filepath.Join(t.TempDir(), LocalContextFile)
	if err := WriteContextFile(path, CLIContext{URL: s.ClientURL()}); err != nil {
		t.Fatal(err)
	}
	roundTrip(t, connect(t, ConnectConfig{ContextFile: path, FailFast: true}))
	if _, err := Connect(t.Context(), ConnectConfig{ContextFile: path, Context: "x"}); err == nil {
		t.Errorf("Connect with a context and a context file = nil error, want one")
	}
}

// slowServer is a NATS server reached through a proxy that holds the
// server's first bytes back for delay.
func slowServer(t *testing.T, delay time.Duration) string {
	t.Helper()
	s := startServer(t, ServerConfig{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			client, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer client.Close()
				upstream, err := net.Dial("tcp", s.Addr().String())
				if err != nil {
					return
				}
				defer upstream.Close()
				go io.Copy(upstream, client)
				timer := time.NewTimer(delay)
				defer timer.Stop()
				select {
				case <-timer.C:
				case <-t.Context().Done():
					return
				}
				io.Copy(client, upstream)
			}()
		}
	}()
	return "nats://" + l.Addr().String()
}

// TestConnectTimeout: ConnectTimeout, not nats.go's 2 s default, bounds
// the handshake: a server that answers after 2.5 s is reached with 20 s,
// and not with 200 ms.
func TestConnectTimeout(t *testing.T) {
	url := slowServer(t, 2500*time.Millisecond)
	roundTrip(t, connect(t, ConnectConfig{Servers: []string{url}, FailFast: true, ConnectTimeout: 20 * time.Second}))
	if _, err := Connect(t.Context(), ConnectConfig{Servers: []string{url}, FailFast: true, ConnectTimeout: 200 * time.Millisecond}); err == nil {
		t.Errorf("Connect with ConnectTimeout 200ms to a server answering after 2.5s = nil error, want a timeout")
	}
}
