package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mms-io/mms/governor"
	"github.com/mms-io/mms/internal/natstest"
)

// governorCLI runs `mms governor ARGS` in-process. (It builds the command
// itself because root.go, which lists the commands, belongs to another
// branch; once governor is listed there this is mms(t, "", "governor", …).)
func governorCLI(t *testing.T, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	a := &app{stdin: strings.NewReader(""), stdout: &out, stderr: &errOut, log: slog.New(slog.NewTextHandler(&errOut, nil))}
	cmd := a.newGovernorCmd()
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	code := 0
	if err := cmd.ExecuteContext(t.Context()); err != nil {
		fmt.Fprintf(&errOut, "mms: %v\n", err)
		code = 1
	}
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

func TestGovernorCommands(t *testing.T) {
	s := natstest.RunJetStream(t)
	srv := "--server=" + s.ClientURL()
	ok := func(args ...string) result {
		t.Helper()
		r := governorCLI(t, append(args, srv)...)
		if r.code != 0 {
			t.Fatalf("mms governor %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
		}
		return r
	}

	r := ok("add", "downloads", "2", "--expire", "10m")
	if want := "governor downloads: limit 2, 0 in use, expire 10m0s, replicas 1\n"; r.stdout != want {
		t.Errorf("add: stdout = %q, want %q", r.stdout, want)
	}
	ok("add", "db", "1")

	// An agent takes a slot of downloads.
	g, err := governor.New(natstest.Connect(t, s), "test@node1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Acquire(t.Context(), "downloads"); err != nil {
		t.Fatal(err)
	}

	r = ok("list")
	want := "NAME       LIMIT  IN USE  EXPIRE  REPLICAS\ndb         1      0       5m0s    1\ndownloads  2      1       10m0s   1\n"
	if r.stdout != want {
		t.Errorf("list: stdout =\n%s\nwant\n%s", r.stdout, want)
	}
	r = ok("list", "--json")
	var got []governorJSON
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("list --json: %v\n%s", err, r.stdout)
	}
	wantJSON := []governorJSON{{Name: "db", Limit: 1, Expire: "5m0s", Replicas: 1}, {Name: "downloads", Limit: 2, InUse: 1, Expire: "10m0s", Replicas: 1}}
	if diff := cmp.Diff(wantJSON, got); diff != "" {
		t.Errorf("list --json (-want +got):\n%s", diff)
	}

	ok("reset", "downloads")
	if r := ok("list", "--json"); !strings.Contains(r.stdout, `"in_use": 0,`) || strings.Contains(r.stdout, `"in_use": 1,`) {
		t.Errorf("list after reset = %s, want nothing in use", r.stdout)
	}
	if r := ok("rm", "db"); r.stdout != "removed governor db\n" {
		t.Errorf("rm: stdout = %q", r.stdout)
	}

	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{name: "rm missing", args: []string{"rm", "db"}, wantErr: `governor "db" does not exist: create it with mms governor add db LIMIT`},
		{name: "reset missing", args: []string{"reset", "nope"}, wantErr: `governor "nope" does not exist`},
		{name: "bad limit", args: []string{"add", "x", "many"}, wantErr: `limit "many": want a whole number`},
		{name: "zero limit", args: []string{"add", "x", "0"}, wantErr: "limit 0 must be at least 1"},
		{name: "bad name", args: []string{"add", "a.b", "1"}, wantErr: "governor name"},
		{name: "no expiry", args: []string{"add", "x", "1", "--expire", "0s"}, wantErr: "must be positive"},
		{name: "missing args", args: []string{"add", "x"}, wantErr: "accepts 2 arg(s)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := governorCLI(t, append(tt.args, srv)...)
			if r.code == 0 || !strings.Contains(r.stderr, tt.wantErr) {
				t.Errorf("mms governor %s = exit %d, stderr %q; want an error containing %q", strings.Join(tt.args, " "), r.code, r.stderr, tt.wantErr)
			}
		})
	}
}
