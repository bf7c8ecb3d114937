package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/spec"
)

// result is what one `mms` invocation produced.
type result struct {
	code   int
	stdout string
	stderr string
}

// mms runs the CLI in-process with stdin and returns its exit code and output.
func mms(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(t.Context(), args, strings.NewReader(stdin), &out, &errOut)
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

// mmsOK runs the CLI and fails the test unless it exits 0.
func mmsOK(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	r := mms(t, stdin, args...)
	if r.code != 0 {
		t.Fatalf("mms %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

const (
	sumA = "f11ea2005de97bf309bafac46e77c01925307a26675f44f388d4502d2b9d00bf"
	sumB = "1e85719c6959eb0f2c8f2166e30ae952ccaef2c286f31868ea1d311d3738a339"
)

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func machinesJSON(names ...string) string {
	var entries []string
	for _, n := range names {
		entries = append(entries, `{"name":"`+n+`","source":"https://repo.example.net/`+n+`-1.0.0.tar.gz","checksum":"`+sumA+`","verify_checksum":"`+sumB+`","match":"identity('^web')"}`)
	}
	return "[" + strings.Join(entries, ",") + "]"
}

// newKeyPair writes ops.key/ops.pub in dir with `mms keys --out`.
func newKeyPair(t *testing.T, dir, name string) (keyFile, pubFile string) {
	t.Helper()
	prefix := filepath.Join(dir, name)
	r := mmsOK(t, "", "keys", "--out", prefix)
	if strings.Contains(r.stdout, "Private Key") {
		t.Fatalf("keys --out printed the private key:\n%s", r.stdout)
	}
	st, err := os.Stat(prefix + ".key")
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("%s.key mode = %v, want 0600", prefix, st.Mode().Perm())
	}
	return prefix + ".key", prefix + ".pub"
}

func TestKeysPrintsChoriaFormat(t *testing.T) {
	r := mmsOK(t, "", "keys")
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], " Public Key: ") || !strings.HasPrefix(lines[1], "Private Key: ") {
		t.Fatalf("keys output = %q, want Choria's two lines", r.stdout)
	}
	pub := strings.TrimPrefix(lines[0], " Public Key: ")
	priv := strings.TrimPrefix(lines[1], "Private Key: ")
	if len(pub) != 64 || len(priv) != 128 {
		t.Fatalf("key lengths = %d/%d hex chars, want 64/128", len(pub), len(priv))
	}
	if _, err := packer.ParsePrivateKey(priv); err != nil {
		t.Fatalf("ParsePrivateKey(printed key) = %v", err)
	}
}

func TestKeysOutRefusesToOverwrite(t *testing.T) {
	dir := t.TempDir()
	newKeyPair(t, dir, "ops")
	r := mms(t, "", "keys", "--out", filepath.Join(dir, "ops"))
	if r.code == 0 || !strings.Contains(r.stderr, "file exists (use --force to replace it)") {
		t.Fatalf("second keys --out: exit %d, stderr %q; want a refusal", r.code, r.stderr)
	}
}

// TestKeysForceReplacesFiles is issue 18.8: --force over a 0644 key file
// leaves a 0600 one, and over a symbolic link replaces the link instead of
// writing the secret key through it.
func TestKeysForceReplacesFiles(t *testing.T) {
	dir := t.TempDir()
	// An existing world-readable key file.
	open := writeFile(t, dir, "open.key", "old secret\n")
	if err := os.Chmod(open, 0o644); err != nil {
		t.Fatal(err)
	}
	// A key path that is a link to a file someone else reads.
	target := writeFile(t, dir, "shared.txt", "not a key\n")
	if err := os.Chmod(target, 0o644); err != nil {
		t.Fatal(err)
	}
	linked := filepath.Join(dir, "linked.key")
	if err := os.Symlink(target, linked); err != nil {
		t.Fatal(err)
	}
	if r := mms(t, "", "keys", "--out", filepath.Join(dir, "linked")); r.code == 0 || !strings.Contains(r.stderr, "file exists") {
		t.Errorf("keys --out over a link without --force: exit %d, stderr %q; want refused", r.code, r.stderr)
	}
	for _, prefix := range []string{"open", "linked"} {
		r := mmsOK(t, "", "keys", "--out", filepath.Join(dir, prefix), "--force")
		if !strings.Contains(r.stdout, "(secret, 0600)") {
			t.Errorf("keys --force stdout = %q", r.stdout)
		}
		path := filepath.Join(dir, prefix+".key")
		st, err := os.Lstat(path)
		if err != nil {
			t.Fatal(err)
		}
		if !st.Mode().IsRegular() || st.Mode().Perm() != 0o600 {
			t.Errorf("%s after keys --force: mode %v, want a regular 0600 file", path, st.Mode())
		}
		if _, err := packer.ParsePrivateKey(readFile(t, path)); err != nil {
			t.Errorf("%s does not hold the new key: %v", path, err)
		}
	}
	if got := readFile(t, target); got != "not a key\n" {
		t.Errorf("the link's target now holds %q: the key was written through the link", got)
	}
	if st, _ := os.Stat(target); st.Mode().Perm() != 0o644 {
		t.Errorf("the link's target mode = %v, want it untouched", st.Mode().Perm())
	}
}

func TestPackVerifyShowRoundTrip(t *testing.T) {
	for _, format := range []string{"v2", "v1"} {
		t.Run(format, func(t *testing.T) {
			dir := t.TempDir()
			key, pub := newKeyPair(t, dir, "ops")
			machines := writeFile(t, dir, "machines.json", machinesJSON("facts", "web"))

			env := mmsOK(t, "", "pack", machines, "--key-file", key, "--format", format).stdout
			if strings.Count(env, "\n") != 1 || !json.Valid([]byte(env)) {
				t.Fatalf("pack stdout is not one JSON document:\n%s", env)
			}
			specFile := writeFile(t, dir, "spec.json", env)

			v := mmsOK(t, "", "verify", specFile, pub)
			if !strings.HasPrefix(v.stdout, "ok: "+format+" spec") || !strings.Contains(v.stdout, "2 machines") {
				t.Errorf("verify stdout = %q", v.stdout)
			}
			// stdin works as well
			mmsOK(t, env, "verify", "-", pub)

			s := mmsOK(t, "", "show", specFile, "--json")
			var view showView
			if err := json.Unmarshal([]byte(s.stdout), &view); err != nil {
				t.Fatalf("show --json: %v\n%s", err, s.stdout)
			}
			if view.Format != format || len(view.Machines) != 2 || view.Machines[1].Name != "web" {
				t.Errorf("show --json = %+v", view)
			}
			table := mmsOK(t, "", "show", specFile).stdout
			if !strings.Contains(table, "facts") || !strings.Contains(table, "identity('^web')") {
				t.Errorf("show table missing machines:\n%s", table)
			}
		})
	}
}

func TestVerifyRejections(t *testing.T) {
	dir := t.TempDir()
	key, pub := newKeyPair(t, dir, "ops")
	_, otherPub := newKeyPair(t, dir, "other")
	machines := writeFile(t, dir, "machines.json", machinesJSON("facts"))
	signed := writeFile(t, dir, "spec.json", mmsOK(t, "", "pack", machines, "--key-file", key).stdout)
	unsigned := writeFile(t, dir, "unsigned.json", mmsOK(t, "", "pack", machines, "--unsigned").stdout)

	tests := []struct {
		name string
		args []string
		want string
	}{
		{"wrong key", []string{"verify", signed, otherPub}, "not trusted"},
		{"unsigned", []string{"verify", unsigned, pub}, "unsigned"},
		{"threshold", []string{"verify", signed, pub, otherPub, "--threshold", "2"}, "1/2 valid signatures"},
		{"not a key", []string{"verify", signed, "nonsense"}, `public key "nonsense": not a 64-character hex key and no such file`},
		{"not an envelope", []string{"verify", machines, pub}, "malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := mms(t, "", tt.args...)
			if r.code == 0 {
				t.Fatalf("exit 0, want failure; stdout %q", r.stdout)
			}
			if !strings.Contains(r.stderr, tt.want) {
				t.Errorf("stderr = %q, want it to contain %q", r.stderr, tt.want)
			}
		})
	}
}

func TestPackRejectsInvalidEntryBeforeSigning(t *testing.T) {
	dir := t.TempDir()
	key, _ := newKeyPair(t, dir, "ops")
	bad := `[{"name":"web","source":"ftp://x/y.tgz","checksum":"abc","verify_checksum":"` + sumB + `"}]`
	machines := writeFile(t, dir, "machines.json", bad)
	r := mms(t, "", "pack", machines, "--key-file", key)
	if r.code == 0 {
		t.Fatalf("pack of an invalid entry exited 0:\n%s", r.stdout)
	}
	if r.stdout != "" {
		t.Errorf("pack printed on stdout despite failing: %q", r.stdout)
	}
	for _, want := range []string{`"web"`, "checksum", "source", "nothing signed"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr = %q, want it to name %q", r.stderr, want)
		}
	}
}

func TestPackKeySources(t *testing.T) {
	dir := t.TempDir()
	key, pub := newKeyPair(t, dir, "ops")
	machines := writeFile(t, dir, "machines.json", machinesJSON("facts"))
	keyHex, err := os.ReadFile(key)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("no key", func(t *testing.T) {
		t.Setenv("KEY", "")
		r := mms(t, "", "pack", machines)
		if r.code == 0 || !strings.Contains(r.stderr, "no signing key") {
			t.Fatalf("exit %d stderr %q, want a refusal naming the missing key", r.code, r.stderr)
		}
	})
	t.Run("env KEY", func(t *testing.T) {
		t.Setenv("KEY", strings.TrimSpace(string(keyHex)))
		env := mmsOK(t, "", "pack", machines).stdout
		mmsOK(t, env, "verify", "-", pub)
	})
	t.Run("positional key warns", func(t *testing.T) {
		t.Setenv("KEY", "")
		r := mmsOK(t, "", "pack", machines, strings.TrimSpace(string(keyHex)))
		if !strings.Contains(r.stderr, "command line") {
			t.Errorf("stderr = %q, want a warning about argv", r.stderr)
		}
		mmsOK(t, r.stdout, "verify", "-", pub)
	})
	t.Run("multi signature", func(t *testing.T) {
		key2, pub2 := newKeyPair(t, dir, "second")
		env := mmsOK(t, "", "pack", machines, "--key-file", key, "--key-file", key2).stdout
		r := mmsOK(t, env, "verify", "-", pub, pub2, "--threshold", "2")
		if !strings.Contains(r.stdout, "signed by 2/2") {
			t.Errorf("verify stdout = %q", r.stdout)
		}
	})
}

func TestPackYAMLAndExpiry(t *testing.T) {
	dir := t.TempDir()
	key, pub := newKeyPair(t, dir, "ops")
	machines := writeFile(t, dir, "machines.yaml", `
- name: facts
  source: https://repo.example.net/facts-1.0.0.tar.gz
  checksum: `+sumA+`
  verify_checksum: `+sumB+`
`)
	env := mmsOK(t, "", "pack", machines, "--key-file", key, "--expires", "24h", "--serial", "42").stdout
	r := mmsOK(t, env, "verify", "-", pub)
	if !strings.Contains(r.stdout, "serial 42") || !strings.Contains(r.stdout, "expires") {
		t.Errorf("verify stdout = %q, want serial 42 and an expiry", r.stdout)
	}
}

func TestRunUnknownCommand(t *testing.T) {
	r := mms(t, "", "frobnicate")
	if r.code == 0 || !strings.Contains(r.stderr, "unknown command") {
		t.Fatalf("exit %d stderr %q", r.code, r.stderr)
	}
}

func TestPut(t *testing.T) {
	srv := natstest.RunJetStream(t)
	url := srv.ClientURL()
	dir := t.TempDir()
	key, _ := newKeyPair(t, dir, "ops")
	machines := writeFile(t, dir, "machines.json", machinesJSON("facts"))
	pack := func(serial string) string {
		return mmsOK(t, "", "pack", machines, "--key-file", key, "--serial", serial).stdout
	}
	first, second, older := pack("100"), pack("200"), pack("50")

	r := mms(t, first, "put", "--server", url)
	if r.code == 0 || !strings.Contains(r.stderr, "bucket MACHINES does not exist") {
		t.Fatalf("put without bucket: exit %d stderr %q", r.code, r.stderr)
	}
	r = mmsOK(t, first, "put", "--server", url, "--create")
	if !strings.Contains(r.stdout, "revision 1") || !strings.Contains(r.stdout, "serial 100") {
		t.Errorf("put stdout = %q", r.stdout)
	}
	if r := mmsOK(t, first, "put", "--server", url); !strings.Contains(r.stdout, "nothing to do") {
		t.Errorf("re-put of the same spec: stdout %q", r.stdout)
	}
	if r := mms(t, older, "put", "--server", url); r.code == 0 || !strings.Contains(r.stderr, "refusing to put serial 50") {
		t.Errorf("put of an older serial: exit %d stderr %q", r.code, r.stderr)
	}
	if r := mms(t, "not json\n", "put", "--server", url); r.code == 0 || !strings.Contains(r.stderr, "refusing to put") {
		t.Errorf("put of garbage: exit %d stderr %q", r.code, r.stderr)
	}
	if r := mms(t, second, "put", "--server", url, "--revision", "7"); r.code == 0 || !strings.Contains(r.stderr, "is at revision 1, not 7") {
		t.Errorf("put --revision 7: exit %d stderr %q", r.code, r.stderr)
	}

	// The value lands trimmed, exactly as packed.
	nc := natstest.Connect(t, srv)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(t.Context(), "MACHINES")
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(t.Context(), "machines")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(e.Value()), strings.TrimSpace(first); got != want {
		t.Errorf("stored value = %q, want %q", got, want)
	}

	// Another operator writes between our read and our write: compare-and-set refuses.
	a := &app{stdin: strings.NewReader(""), stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}, log: slog.New(slog.DiscardHandler)}
	next, err := packer.Inspect([]byte(strings.TrimSpace(second)))
	if err != nil {
		t.Fatal(err)
	}
	nf := natsFlags{server: url, timeout: 5 * time.Second}
	conn, err := nf.connect(t.Context(), a, "test")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	o := putOptions{bucket: "MACHINES", key: "machines", beforeWrite: func() {
		if _, err := kv.Put(t.Context(), "machines", []byte(strings.TrimSpace(pack("150")))); err != nil {
			t.Fatal(err)
		}
	}}
	err = a.put(t.Context(), conn, []byte(strings.TrimSpace(second)), next, o)
	if err == nil || !strings.Contains(err.Error(), "changed while publishing") {
		t.Fatalf("racing put = %v, want a compare-and-set refusal", err)
	}
}

// TestPackPutSerialBounds checks issue 18.1 from the operator's side:
// pack and put refuse a serial agents would refuse (above the current Unix
// time plus a day), put never prints an overflowed hint, and over a bad
// serial already in the bucket put points to --reset-history and lets a
// reset spec through.
func TestPackPutSerialBounds(t *testing.T) {
	srv := natstest.RunJetStream(t)
	url := srv.ClientURL()
	dir := t.TempDir()
	keyFile, _ := newKeyPair(t, dir, "ops")
	machines := writeFile(t, dir, "machines.json", machinesJSON("facts"))
	now := time.Now()
	for _, serial := range []string{"18446744073709551615", strconv.FormatInt(now.UnixMilli(), 10)} {
		r := mms(t, "", "pack", machines, "--key-file", keyFile, "--serial", serial)
		if r.code == 0 || !strings.Contains(r.stderr, "--serial: too far ahead: "+serial+" is above") || r.stdout != "" {
			t.Errorf("pack --serial %s: exit %d, stdout %q, stderr %q; want refused, nothing signed", serial, r.code, r.stdout, r.stderr)
		}
	}
	if r := mms(t, "", "pack", machines, "--key-file", keyFile, "--format", "v1", "--reset-history"); r.code == 0 || !strings.Contains(r.stderr, "--reset-history needs --format v2") {
		t.Errorf("pack --format v1 --reset-history: exit %d, stderr %q", r.code, r.stderr)
	}

	// A spec sealed with 2^64-1 by another tool: put refuses it.
	key, err := packer.ParsePrivateKey(readFile(t, keyFile))
	if err != nil {
		t.Fatal(err)
	}
	ms, err := spec.ParseMachines([]byte(machinesJSON("facts")))
	if err != nil {
		t.Fatal(err)
	}
	bad, err := packer.Seal(packer.FormatV2, &spec.Spec{Serial: math.MaxUint64, IssuedAt: now.UTC(), Machines: ms}, key)
	if err != nil {
		t.Fatal(err)
	}
	if r := mms(t, string(bad), "put", "--server", url, "--create", "--force"); r.code == 0 || !strings.Contains(r.stderr, "refusing to put: serial: too far ahead: 18446744073709551615") {
		t.Errorf("put of serial 2^64-1 --force: exit %d, stderr %q; want refused", r.code, r.stderr)
	}

	// The bucket already holds it (put there before the check existed).
	nc := natstest.Connect(t, srv)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: "MACHINES"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(t.Context(), "machines", bad); err != nil {
		t.Fatal(err)
	}
	normal := mmsOK(t, "", "pack", machines, "--key-file", keyFile).stdout
	r := mms(t, normal, "put", "--server", url)
	if r.code == 0 || !strings.Contains(r.stderr, "holds serial 18446744073709551615, above the current Unix time plus 24h0m0s") ||
		!strings.Contains(r.stderr, "re-pack with --reset-history") || strings.Contains(r.stderr, "--serial 0") {
		t.Errorf("put over serial 2^64-1: exit %d, stderr %q; want a --reset-history hint and no --serial 0", r.code, r.stderr)
	}
	reset := mmsOK(t, "", "pack", machines, "--key-file", keyFile, "--reset-history").stdout
	if r := mms(t, reset, "put", "--server", url); r.code != 0 || !strings.Contains(r.stdout, "revision 2") {
		t.Errorf("put of a reset spec over serial 2^64-1: exit %d, stdout %q, stderr %q; want written", r.code, r.stdout, r.stderr)
	}

	// Over a plausible serial the hint is the next serial.
	in, err := packer.Inspect([]byte(strings.TrimSpace(reset)))
	if err != nil {
		t.Fatal(err)
	}
	older := mmsOK(t, "", "pack", machines, "--key-file", keyFile, "--serial", "5").stdout
	if r := mms(t, older, "put", "--server", url); r.code == 0 || !strings.Contains(r.stderr, fmt.Sprintf("pass --serial %d", in.Spec.Serial+1)) {
		t.Errorf("put of serial 5 over %d: exit %d, stderr %q", in.Spec.Serial, r.code, r.stderr)
	}
}

// TestPackV1RefusesMatchersChoriaCannotCompile: `mms pack --format v1`
// signs nothing when an entry's matcher uses get_fact() or facts, which
// Choria's machines watcher (matcher.go, go-choria v0.30.2) cannot compile
// (it skips such an entry at debug level), as it refuses size, auth,
// health and rollout; the same list signs as v2.
func TestPackV1RefusesMatchersChoriaCannotCompile(t *testing.T) {
	dir := t.TempDir()
	keyFile, _ := newKeyPair(t, dir, "ops")
	entry := func(name, match string) string {
		return `{"name":"` + name + `","source":"https://repo.example.net/x.tar.gz","checksum":"` + sumA + `","verify_checksum":"` + sumB + `","match":` + strconv.Quote(match) + `}`
	}
	machines := writeFile(t, dir, "machines.json", "["+entry("debian", `identity('^web') && get_fact('os.family') == 'debian'`)+","+
		entry("big", `facts.memory.total > 1000`)+","+entry("plain", `has_command('apt')`)+"]")
	r := mms(t, "", "pack", machines, "--key-file", keyFile, "--format", "v1")
	want := "mms: " + machines + ": nothing signed:\n" +
		`machine[0] "debian": match: uses get_fact(), which Choria's machines watcher cannot compile: it knows only identity(), has_file(), has_directory() and has_command(), and skips the entry without a word; drop it from the v1 spec, or sign a v2 spec (mms agents evaluate it)` + "\n" +
		`machine[1] "big": match: uses facts, which Choria's machines watcher cannot compile: it knows only identity(), has_file(), has_directory() and has_command(), and skips the entry without a word; drop it from the v1 spec, or sign a v2 spec (mms agents evaluate it)` + "\n"
	if r.code == 0 || r.stdout != "" || r.stderr != want {
		t.Errorf("pack --format v1: exit %d, stdout %q, stderr\n%s\nwant\n%s", r.code, r.stdout, r.stderr, want)
	}
	mmsOK(t, "", "pack", machines, "--key-file", keyFile)
}
