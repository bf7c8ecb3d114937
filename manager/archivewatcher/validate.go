package archivewatcher

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/spec"
	"github.com/mms-io/mms/watchers/render"
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
	templated := map[string]bool{}
	for _, p := range w.templated() {
		templated[p.name] = true
		if err := render.Check(*p.value); err != nil {
			add(p.name, err)
		}
	}
	w.entry = w.newEntry()
	// A templated property is checked once rendered, by Provision.
	errs = append(errs, w.entryErrors(func(field string) bool { return !templated[field] })...)
	return errors.Join(errs...)
}

// templatedProperty is a property Choria renders as a template.
type templatedProperty struct {
	name  string
	value *string
}

// templated returns the properties that hold a template, of those Choria
// renders: source, checksum, verify_checksum, username, password and
// governor.
func (w *Watcher) templated() []templatedProperty {
	var out []templatedProperty
	for _, p := range []templatedProperty{
		{"source", &w.Source}, {"checksum", &w.Checksum}, {"verify_checksum", &w.VerifyChecksum},
		{"username", &w.Username}, {"password", &w.Password}, {"governor", &w.Governor},
	} {
		if render.Has(*p.value) {
			out = append(out, p)
		}
	}
	return out
}

// newEntry returns the spec entry the properties describe.
func (w *Watcher) newEntry() spec.Machine {
	return spec.Machine{
		Name: w.Creates, Source: w.Source, Checksum: w.Checksum, VerifyChecksum: w.VerifyChecksum,
		Verify: w.Verify, Governor: w.Governor, Auth: w.Auth, Username: w.Username, Password: w.Password,
	}
}

// entryErrors validates w.entry and returns its problems named by
// property, of the properties keep accepts.
func (w *Watcher) entryErrors(keep func(field string) bool) []error {
	legacy := w.entry.Username != "" || w.entry.Password != ""
	err := w.entry.Validate(spec.ValidateOptions{AllowHTTP: w.AllowHTTP, HTTPFix: "allow_http: true", Legacy: legacy})
	if err == nil {
		return nil
	}
	var out []error
	for _, e := range propertyErrors(err, legacy) {
		field, _, _ := strings.Cut(e.Error(), ":")
		if keep(field) {
			out = append(out, e)
		}
	}
	return out
}

// renderEntry renders the templated properties with r and checks the
// entry they make, naming each property that renders an invalid value with
// its template (never a rendered username or password).
func (w *Watcher) renderEntry(r *render.Renderer) error {
	props := w.templated()
	if len(props) == 0 {
		return nil
	}
	w.entry = w.newEntry()
	fields := map[string]*string{
		"source": &w.entry.Source, "checksum": &w.entry.Checksum, "verify_checksum": &w.entry.VerifyChecksum,
		"username": &w.entry.Username, "password": &w.entry.Password, "governor": &w.entry.Governor,
	}
	templates := map[string]string{}
	for _, p := range props {
		out, err := r.String(*p.value)
		if err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		*fields[p.name] = strings.TrimSpace(out)
		templates[p.name] = *p.value
	}
	var errs []error
	for _, e := range w.entryErrors(func(field string) bool { _, ok := templates[field]; return ok }) {
		field, why, _ := strings.Cut(e.Error(), ": ")
		rendered := ""
		if field != "username" && field != "password" {
			rendered = fmt.Sprintf(" rendered %q", *fields[field])
		}
		errs = append(errs, fmt.Errorf("%s: template %q%s: %s", field, templates[field], rendered, why))
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
