package archivewatcher

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/spec"
)

// systemDirs are targets the watcher refuses: the root and the operating
// system's own directories, where a creates of "bin" or "lib" would swap
// out a directory the system needs. A target below them (/var/lib/app,
// /usr/local/share/app) is fine; the watcher also never replaces an
// existing directory it did not install.
var systemDirs = map[string]bool{
	"/": true, "/bin": true, "/boot": true, "/dev": true, "/etc": true, "/home": true,
	"/lib": true, "/lib32": true, "/lib64": true, "/libx32": true, "/proc": true, "/root": true,
	"/run": true, "/sbin": true, "/sys": true, "/usr": true, "/var": true,
	"/usr/bin": true, "/usr/lib": true, "/usr/lib64": true, "/usr/libexec": true, "/usr/local": true,
	"/usr/sbin": true, "/usr/share": true, "/var/lib": true, "/var/log": true, "/var/run": true,
}

// virtualFS are trees no archive belongs in at any depth.
var virtualFS = []string{"/dev", "/proc", "/sys"}

// Normalize drops a governor_timeout given without a governor, which
// Choria ignores.
func (w *Watcher) Normalize() []string {
	if w.GovernorTimeout == 0 || w.Governor != "" {
		return nil
	}
	w.GovernorTimeout = 0
	return []string{"governor_timeout: ignored without governor (as in Choria): remove it, or name the governor"}
}

// Validate checks the properties and builds the entry the installer gets.
// Problems are named by property.
func (w *Watcher) Validate() error {
	var errs []error
	add := func(field string, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", field, err))
		}
	}
	if w.Insecure {
		add("insecure", errors.New("not supported: TLS verification is never skipped. The checksum pins the archive's bytes, "+
			"but without TLS anyone on the path would see the credentials and could stall or flood the download. "+
			"Give the agent a CA that trusts the server, or use allow_http for a plain-http source that needs no credentials"))
	}
	add("target", checkTarget(w.Target))
	if w.Creates == "" {
		add("creates", errors.New("required"))
	}
	if w.StateDir != "" && !filepath.IsAbs(w.StateDir) {
		add("state_dir", fmt.Errorf("%q must be an absolute path", w.StateDir))
	}
	if w.Timeout.Std() > MaxTimeout {
		add("timeout", fmt.Errorf("%v is longer than the maximum %v", w.Timeout, MaxTimeout))
	}
	switch {
	case w.GovernorTimeout != 0 && w.Governor == "":
		add("governor_timeout", errors.New("set without governor"))
	case w.GovernorTimeout.Std() > MaxGovernorTimeout:
		add("governor_timeout", fmt.Errorf("%v is longer than the maximum %v", w.GovernorTimeout, MaxGovernorTimeout))
	}
	w.entry = spec.Machine{
		Name: w.Creates, Source: w.Source, Checksum: w.Checksum, VerifyChecksum: w.VerifyChecksum,
		Verify: w.Verify, Governor: w.Governor, Auth: w.Auth, Username: w.Username, Password: w.Password,
	}
	legacy := w.Username != "" || w.Password != ""
	if err := w.entry.Validate(spec.ValidateOptions{AllowHTTP: w.AllowHTTP, Legacy: legacy}); err != nil {
		errs = append(errs, propertyErrors(err, legacy)...)
	}
	return errors.Join(errs...)
}

// checkTarget accepts an absolute, clean directory that is not a system
// directory.
func checkTarget(t string) error {
	switch {
	case t == "":
		return errors.New("required")
	case !filepath.IsAbs(t):
		return fmt.Errorf("%q must be an absolute path", t)
	case filepath.Clean(t) != t:
		return fmt.Errorf("%q is not clean (want %q)", t, filepath.Clean(t))
	case systemDirs[t]:
		return fmt.Errorf("%q is a system directory; give a directory of its own, such as /var/lib/<something>", t)
	}
	for _, v := range virtualFS {
		if strings.HasPrefix(t, v+"/") {
			return fmt.Errorf("%q is inside %s, a virtual file system", t, v)
		}
	}
	return nil
}

// propertyErrors renames the spec entry's fields in validation errors to
// the watcher's property names (the entry's name is creates) and drops the
// entry prefix, which would only repeat creates.
func propertyErrors(err error, legacy bool) []error {
	var out []error
	list := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		list = j.Unwrap()
	}
	for _, e := range list {
		fe, ok := errors.AsType[*spec.FieldError](e)
		if !ok {
			out = append(out, e)
			continue
		}
		field := fe.Field
		switch {
		case field == "name":
			field = "creates"
		case field == "auth" && legacy:
			out = append(out, errors.New("auth: cannot be combined with username and password"))
			continue
		}
		out = append(out, fmt.Errorf("%s: %w", field, fe.Err))
	}
	return out
}

// tamperedEntry names what verification found modified: the file, when
// the error says which, else the error itself.
func tamperedEntry(err error) string {
	if ee, ok := errors.AsType[*packer.EntryError](err); ok {
		return ee.Entry
	}
	return err.Error()
}
