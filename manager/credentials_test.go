package manager

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// credentialSeeds are the table inputs, reused as fuzz seeds.
var credentialSeeds = []struct {
	name    string
	data    string
	want    string // the header line the credential sends, "" for an error
	wantErr string
}{
	{name: "basic", data: `{"type":"basic","username":"u","password":"s3cret"}`, want: "Authorization: Basic dTpzM2NyZXQ="},
	{name: "bearer", data: `{"type":"bearer","token":"t0k"}`, want: "Authorization: Bearer t0k"},
	{name: "header", data: `{"type":"header","header":"x-api-key","token":"k-1"}`, want: "X-Api-Key: k-1"},
	{name: "with whitespace", data: " {\"type\":\"bearer\",\"token\":\"t0k\"}\n", want: "Authorization: Bearer t0k"},
	{name: "unknown field", data: `{"type":"bearer","token":"t","tokn":"x"}`, wantErr: `unknown field "tokn"`},
	{name: "missing type", data: `{"token":"t"}`, wantErr: "type is required"},
	{name: "unknown type", data: `{"type":"kerberos","token":"t"}`, wantErr: "unknown type"},
	{name: "basic without password", data: `{"type":"basic","username":"u"}`, wantErr: `password is required for type "basic"`},
	{name: "basic with a token", data: `{"type":"basic","username":"u","password":"p","token":"t"}`, wantErr: `token is not used by type "basic"`},
	{name: "colon in username", data: `{"type":"basic","username":"a:b","password":"p"}`, wantErr: `username must not contain ":"`},
	{name: "header without name", data: `{"type":"header","token":"t"}`, wantErr: `header is required`},
	{name: "bad header name", data: `{"type":"header","header":"X Key","token":"t"}`, wantErr: "not a valid HTTP header name"},
	{name: "transport header", data: `{"type":"header","header":"Host","token":"t"}`, wantErr: `header "Host" cannot carry a credential`},
	{name: "newline in token", data: `{"type":"bearer","token":"t\r\nX-Evil: 1"}`, wantErr: "must not contain NUL, CR or LF"},
	{name: "syntax error hides the input", data: `{"type":"bearer","token":"s3cret"`, wantErr: "truncated or empty"},
	{name: "wrong JSON type", data: `{"type":"bearer","token":12}`, wantErr: `field "token" must be a string`},
	{name: "trailing data", data: `{"type":"bearer","token":"t"} {}`, wantErr: "data after the JSON object"},
	{name: "not an object", data: `"s3cret"`, wantErr: "not a JSON object"},
	{name: "empty", data: ``, wantErr: "truncated or empty"},
}

func TestParseCredential(t *testing.T) {
	for _, tt := range credentialSeeds {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseCredential([]byte(tt.data))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrBadCredential) {
					t.Fatalf("ParseCredential(%s) = %v, %v, want ErrBadCredential with %q", tt.data, c, err, tt.wantErr)
				}
				for _, secret := range []string{"s3cret", "X-Evil"} {
					if strings.Contains(err.Error(), secret) {
						t.Errorf("ParseCredential(%s) error %q repeats a value", tt.data, err)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseCredential(%s) = %v", tt.data, err)
			}
			if got := headerLine(c); got != tt.want {
				t.Errorf("ParseCredential(%s) sends %q, want %q", tt.data, got, tt.want)
			}
		})
	}
}

// headerLine renders the one header c adds.
func headerLine(c *Credential) string {
	h := http.Header{}
	c.apply(h)
	for k, v := range h {
		return k + ": " + strings.Join(v, ",")
	}
	return ""
}

func TestCredentialNeverPrintsSecrets(t *testing.T) {
	c, err := ParseCredential([]byte(`{"type":"basic","username":"admin","password":"s3cret"}`))
	if err != nil {
		t.Fatal(err)
	}
	js, _ := json.Marshal(c)
	for _, out := range []string{fmt.Sprint(c), fmt.Sprintf("%v %+v %#v %s", *c, *c, *c, c), string(js)} {
		if strings.Contains(out, "s3cret") || strings.Contains(out, "admin") {
			t.Errorf("formatted credential %q shows a secret", out)
		}
	}
	if c.Type() != CredentialBasic {
		t.Errorf("Type() = %q, want basic", c.Type())
	}
}

func TestLoadCredential(t *testing.T) {
	dir := t.TempDir()
	writeCredential(t, dir, "good", `{"type":"bearer","token":"t"}`)
	loose := writeCredential(t, dir, "loose", `{"type":"bearer","token":"t"}`)
	if err := os.Chmod(loose, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "adir"), 0o700); err != nil {
		t.Fatal(err)
	}
	writeCredential(t, dir, "broken", `{"type":"bearer"}`)
	tests := []struct {
		name    string
		dir     string
		ref     string
		wantIs  error
		wantErr string
	}{
		{name: "good", dir: dir, ref: "good"},
		{name: "missing", dir: dir, ref: "artifacts", wantIs: ErrAuthNotConfigured,
			wantErr: `auth ref "artifacts" not configured on this node (no file ` + filepath.Join(dir, "artifacts") + ")"},
		{name: "no directory configured", dir: "", ref: "artifacts", wantIs: ErrAuthNotConfigured,
			wantErr: `auth ref "artifacts" not configured on this node (no credentials directory)`},
		{name: "readable by group", dir: dir, ref: "loose", wantIs: ErrBadCredential,
			wantErr: "is accessible by group or others (mode 0640); chmod 600 it"},
		{name: "directory", dir: dir, ref: "adir", wantIs: ErrBadCredential, wantErr: "is not a regular file"},
		{name: "invalid content", dir: dir, ref: "broken", wantIs: ErrBadCredential, wantErr: `token is required for type "bearer"`},
		{name: "path in the ref", dir: dir, ref: "../good", wantIs: ErrBadCredential, wantErr: "invalid auth ref"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := LoadCredential(tt.dir, tt.ref)
			if tt.wantIs == nil {
				if err != nil || c.Type() != CredentialBearer {
					t.Fatalf("LoadCredential(%q) = %v, %v", tt.ref, c, err)
				}
				return
			}
			if !errors.Is(err, tt.wantIs) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("LoadCredential(%q) = %v, want %v with %q", tt.ref, err, tt.wantIs, tt.wantErr)
			}
		})
	}
}

func TestCredentialsNeverWrittenOrLogged(t *testing.T) {
	srv := newFileServer(t, true)
	env := newTestEnv(t, srv.Server, FetchConfig{})
	a := buildArchive(t, "web", "1", nil)
	e := a.entry(srv.put("/web.tgz", a.data))
	e.Username, e.Password = "fetch-user", "v1-pa55word"
	if _, _, err := env.inst.Install(t.Context(), e, 1); err != nil {
		t.Fatal(err)
	}
	if got := srv.authHeaders(); len(got) != 1 || got[0] != "Basic ZmV0Y2gtdXNlcjp2MS1wYTU1d29yZA==" {
		t.Errorf("server saw Authorization %q, want the v1 basic auth", got)
	}
	writeCredentialDir(t, env, "artifacts", `{"type":"bearer","token":"v2-t0ken"}`)
	b := buildArchive(t, "web", "2", nil)
	e2 := b.entry(srv.put("/web2.tgz", b.data))
	e2.Auth = "artifacts"
	if _, _, err := env.inst.Install(t.Context(), e2, 2); err != nil {
		t.Fatal(err)
	}
	if got := srv.authHeaders(); len(got) != 2 || got[1] != "Bearer v2-t0ken" {
		t.Errorf("server saw Authorization %q, want the bearer token second", got)
	}
	// Nothing the installer wrote holds a secret: the trees, the records.
	for _, root := range []string{env.machines, filepath.Join(env.state, "installed")} {
		filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			data, _ := os.ReadFile(p)
			for _, secret := range []string{"fetch-user", "v1-pa55word", "v2-t0ken", "ZmV0Y2gtdXNlcjp2MS1wYTU1d29yZA=="} {
				if strings.Contains(string(data), secret) {
					t.Errorf("%s contains %q", p, secret)
				}
			}
			return nil
		})
	}
	for _, secret := range []string{"fetch-user", "v1-pa55word", "v2-t0ken"} {
		if strings.Contains(env.logs.String(), secret) {
			t.Errorf("logs contain %q:\n%s", secret, env.logs)
		}
	}
}

func writeCredentialDir(t *testing.T, env *testEnv, name, content string) string {
	t.Helper()
	dir := filepath.Join(env.state, "credentials")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return writeCredential(t, dir, name, content)
}

func FuzzParseCredential(f *testing.F) {
	for _, s := range credentialSeeds {
		f.Add([]byte(s.data))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseCredential(data)
		if err != nil {
			if !errors.Is(err, ErrBadCredential) {
				t.Fatalf("ParseCredential error %v does not wrap ErrBadCredential", err)
			}
			return
		}
		switch c.Type() {
		case CredentialBasic, CredentialBearer, CredentialHeader:
		default:
			t.Fatalf("ParseCredential accepted type %q", c.Type())
		}
		h := http.Header{}
		c.apply(h)
		if len(h) != 1 {
			t.Fatalf("credential %v sets %d headers, want 1", c, len(h))
		}
		for k, vs := range h {
			for _, v := range vs {
				if strings.ContainsAny(v, "\r\n\x00") || strings.ContainsAny(k, "\r\n\x00 :") {
					t.Fatalf("credential sends an unsafe header %q: %q", k, v)
				}
			}
		}
		want := "credential(" + c.Type() + ")"
		if s := fmt.Sprintf("%v|%+v|%#v", *c, *c, *c); s != want+"|"+want+"|"+want {
			t.Fatalf("formatting a credential = %q, want only its type", s)
		}
	})
}
