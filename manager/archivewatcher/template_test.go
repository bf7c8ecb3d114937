package archivewatcher_test

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	archivewatcher "github.com/mms-io/mms/manager/archivewatcher"
	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/watchers"
	"github.com/mms-io/mms/watchers/watchertest"
)

// TestTemplatedProperties installs an archive whose source and checksums
// are templates, as Choria's archive watcher renders them (source,
// checksum, verify_checksum, username, password, governor): the download
// goes to the rendered URL, never to a URL-escaped template, and the event
// carries the rendered source.
func TestTemplatedProperties(t *testing.T) {
	a := payloadArchive(t, "1.0.0")
	var mu sync.Mutex
	var paths []string
	repo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.URL.Path)
		mu.Unlock()
		if r.URL.Path != "/linux/payload.tar.gz" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(a.data)
	}))
	t.Cleanup(repo.Close)
	d := watchertest.Deps(t)
	d.Facts = func() map[string]any { return map[string]any{"repo": repo.URL, "kernel": "linux"} }
	for k, v := range map[string]string{"sum": a.info.Checksum, "sums": a.info.VerifyChecksum} {
		if err := d.Data.Put(k, v); err != nil {
			t.Fatal(err)
		}
	}
	target := t.TempDir()
	w := watchertest.BuildWith(t, d, "archive", `{
		"source": "{{ lookup \"facts.repo\" \"\" }}/{{ lookup \"facts.kernel\" \"\" }}/payload.tar.gz",
		"checksum": "{{ lookup \"data.sum\" \"\" }}",
		"verify": "SHA256SUMS",
		"verify_checksum": "{{ lookup \"data.sums\" \"\" }}",
		"creates": "payload", "target": "`+target+`", "allow_http": true}`)
	res, err := w.Check(t.Context())
	if err != nil || res.Outcome != watchers.Success {
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("Check() = %+v, %v; want the archive installed (requests: %q)", res, err, paths)
	}
	if st := res.State.(archivewatcher.State); st.Source != repo.URL+"/linux/payload.tar.gz" || st.Checksum != a.info.Checksum {
		t.Errorf("state = %+v, want the rendered source and checksum", st)
	}
	if err := packer.VerifyTree(t.Context(), filepath.Join(target, "payload"), a.info.VerifyChecksum); err != nil {
		t.Errorf("installed payload does not verify: %v", err)
	}
}

// TestTemplatedPropertyErrors refuses at load, naming the property and its
// template, a template that does not parse or renders an invalid value;
// a rendered password is never repeated.
func TestTemplatedPropertyErrors(t *testing.T) {
	valid := map[string]string{
		"source": "https://repo.example.net/p.tar.gz", "checksum": strings.Repeat("a", 64),
		"verify_checksum": strings.Repeat("b", 64), "creates": "payload",
	}
	tests := []struct {
		name, key, value, want string
	}{
		{name: "source does not parse", key: "source", value: `{{ lookup "facts.repo" }`,
			want: `properties: source: template "{{ lookup \"facts.repo\" }": template: property:1: unexpected "}" in operand`},
		{name: "source renders http", key: "source", value: `http://{{ lookup "facts.host" "" }}/p.tar.gz`,
			want: `provision: source: template "http://{{ lookup \"facts.host\" \"\" }}/p.tar.gz" rendered "http://repo.example.net/p.tar.gz": plain http:// is not allowed; use https:// or nats://, or allow http with allow_http: true (the checksums still pin the bytes)`},
		{name: "checksum renders empty", key: "checksum", value: `{{ lookup "data.sum" "" }}`,
			want: `provision: checksum: template "{{ lookup \"data.sum\" \"\" }}" rendered "": required`},
		{name: "password without username", key: "password", value: `{{ lookup "facts.host" "" }}`,
			want: `provision: password: template "{{ lookup \"facts.host\" \"\" }}": set without username`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := watchertest.Deps(t)
			d.Facts = func() map[string]any { return map[string]any{"host": "repo.example.net"} }
			props := `{"target":"` + t.TempDir() + `"`
			for k, v := range valid {
				if k != tt.key {
					props += `,"` + k + `":"` + v + `"`
				}
			}
			props += `,"` + tt.key + `":` + quoteJSON(tt.value) + `}`
			_, err := watchertest.New(d, "archive", props)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("New(archive, %s) =\n%v\nwant\n%s", props, err, tt.want)
			}
		})
	}
}

func quoteJSON(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}
