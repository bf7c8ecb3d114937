package archivewatcher

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mms-io/mms/spec"
	"github.com/mms-io/mms/watchers"
)

// FuzzArchiveProperties feeds arbitrary properties through the registry's
// strict decoding and Validate: nothing may panic, and accepted properties
// must be safe to act on (an absolute, clean, non-system target, a valid
// machine name to create, TLS never skipped).
func FuzzArchiveProperties(f *testing.F) {
	for _, seed := range []string{
		props(f, "/var/lib/mms/data"),
		props(f, "/opt/app", "auth", "repo", "timeout", "2m", "governor", "downloads", "governor_timeout", "10m", "state_dir", "/var/lib/mms/archive"),
		props(f, "/opt/app", "username", "bob", "password", "secret"),
		props(f, "/opt/app", "insecure", true),
		props(f, "/", "creates", "etc"),
		props(f, "/opt/../etc"),
		props(f, "/opt/app", "creates", "../x"),
		props(f, "/proc/1"),
		`{}`, `null`, `{"target":7}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		w, err := watchers.Build("archive", json.RawMessage(p))
		if err != nil {
			return
		}
		a := w.(*Watcher)
		if a.Insecure {
			t.Fatalf("accepted insecure: %s", p)
		}
		if !filepath.IsAbs(a.Target) || filepath.Clean(a.Target) != a.Target || systemDirs[a.Target] ||
			strings.HasPrefix(a.Target, "/proc/") || strings.HasPrefix(a.Target, "/sys/") || strings.HasPrefix(a.Target, "/dev/") {
			t.Fatalf("accepted target %q", a.Target)
		}
		if err := spec.ValidName(a.Creates); err != nil {
			t.Fatalf("accepted creates %q: %v", a.Creates, err)
		}
		if a.entry.Name != a.Creates || a.entry.Checksum != a.Checksum {
			t.Fatalf("entry %+v does not match the properties", a.entry)
		}
	})
}
