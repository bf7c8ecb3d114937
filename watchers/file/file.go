// Package filewatcher is the "file" watcher. Without contents it observes a
// file: a Success ("changed") when the file's modification time or size
// changes or it reappears, a Failure ("error") when it goes missing. With
// contents it enforces the file: whenever the file is missing or its
// content, mode or ownership differ, it is rewritten atomically and the
// check is a Success ("changed").
//
// Changes are noticed at once through file-system notifications on the
// file's directory ([Watcher.Stream]); the interval (default 5s) remains as
// a fallback, for example for a symlink whose target changes elsewhere.
//
// contents, owner, group and mode may be templates, as in Choria (see
// github.com/mms-io/mms/watchers/render). They are rendered when the
// machine loads, where a template that does not parse, or a mode that
// renders as no octal mode, fails the load naming the property; and again
// before every check, as Choria renders them before every write, so the
// file follows the machine data and facts they read. A render that fails
// at a check is a Failure naming the property and leaves the file as it
// is.
package filewatcher

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/mms-io/mms/watchers"
	"github.com/mms-io/mms/watchers/render"
)

func init() {
	watchers.Register(watchers.Info{
		Type:            "file",
		Version:         "v1",
		New:             func() watchers.Watcher { return new(Watcher) },
		DefaultInterval: watchers.Duration(5 * time.Second),
		MinInterval:     watchers.Duration(500 * time.Millisecond),
	})
}

// Watcher is the file watcher's configuration (its machine.yaml properties)
// and runtime state.
type Watcher struct {
	// Path is the file; a relative path is relative to the machine
	// directory. Required.
	Path string `json:"path"`
	// GatherInitialState records the file as it is when the machine
	// starts, so only later changes count. Without it the first check of
	// an existing file is a change (Choria's behaviour). It has no effect
	// with Contents.
	GatherInitialState bool `json:"gather_initial_state,omitempty"`
	// Contents, when set (even to ""), is what the file must hold; it may
	// be a template. A symlink at Path is replaced by a regular file.
	Contents *string `json:"contents,omitempty"`
	// Owner is the user (name or numeric id) that must own the managed
	// file; it may be a template. When unset the file belongs to whoever
	// the agent runs as and ownership is not enforced. Only with Contents.
	Owner string `json:"owner,omitempty"`
	// Group is the group (name or numeric id) of the managed file; it may
	// be a template. Unset works as for Owner. Only with Contents.
	Group string `json:"group,omitempty"`
	// Mode is the managed file's permission bits as an octal string such
	// as "0644", at most "0777"; it may be a template. Required with
	// Contents.
	Mode string `json:"mode,omitempty"`

	// The managed file as last rendered (as given when nothing is a
	// template).
	contents     []byte
	owner, group string
	mode         os.FileMode // Mode parsed by Validate, or rendered by Provision
	sum          [sha256.Size]byte

	// deps are the watcher's dependencies, for rendering its templates
	// again at each check; templated says one of them holds a template.
	deps      watchers.Deps
	templated bool

	path string // absolute Path, set by Provision
	log  *slog.Logger
	last observation
}

// observation is what the previous check saw of the file in stat mode.
type observation struct {
	state   fileState
	modTime time.Time
	size    int64
}

type fileState int

const (
	unseen fileState = iota
	present
	missing
)

// Outcome names in the state event (Choria's).
const (
	outcomeChanged   = "changed"
	outcomeUnchanged = "unchanged"
	outcomeError     = "error"
)

// State is the type-specific part of the file watcher's state event.
type State struct {
	// Path is the absolute path of the file.
	Path string `json:"path"`
	// PreviousOutcome is "changed", "unchanged" or "error".
	PreviousOutcome string `json:"previous_outcome"`
	// Reason says why: "modified", "created", "does not exist", an error,
	// or what differed before a managed file was rewritten: "missing", or
	// a list of "content", "mode", "owner" and "group".
	Reason string `json:"reason,omitempty"`
}

// Validate checks the properties and parses the mode once.
func (w *Watcher) Validate() error {
	var errs []error
	switch {
	case strings.TrimSpace(w.Path) == "":
		errs = append(errs, errors.New("path: required"))
	case strings.ContainsRune(w.Path, 0):
		errs = append(errs, errors.New("path: contains a NUL byte"))
	}
	for _, f := range []struct{ name, v string }{{"owner", w.Owner}, {"group", w.Group}, {"mode", w.Mode}, {"contents", w.contentsText()}} {
		if render.Has(f.v) {
			if err := render.Check(f.v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", f.name, err))
			}
		}
	}
	if w.Mode != "" && !render.Has(w.Mode) {
		m, err := parseMode(w.Mode)
		if err != nil {
			errs = append(errs, fmt.Errorf("mode: %w", err))
		}
		w.mode = m
	}
	if w.Contents == nil {
		for _, f := range []struct{ name, v string }{{"owner", w.Owner}, {"group", w.Group}, {"mode", w.Mode}} {
			if f.v != "" {
				errs = append(errs, fmt.Errorf("%s: only used together with contents", f.name))
			}
		}
	} else {
		if w.Mode == "" {
			errs = append(errs, errors.New("mode: required when contents is set"))
		}
	}
	return errors.Join(errs...)
}

// contentsText returns Contents, "" when unset.
func (w *Watcher) contentsText() string {
	if w.Contents == nil {
		return ""
	}
	return *w.Contents
}

// renderManaged renders the managed file's templated properties with r;
// on an error it changes nothing.
func (w *Watcher) renderManaged(r *render.Renderer) error {
	contents, err := r.String(*w.Contents)
	if err != nil {
		return fmt.Errorf("contents: %w", err)
	}
	owner, err := r.String(w.Owner)
	if err != nil {
		return fmt.Errorf("owner: %w", err)
	}
	group, err := r.String(w.Group)
	if err != nil {
		return fmt.Errorf("group: %w", err)
	}
	mode := w.mode
	if render.Has(w.Mode) {
		text, err := r.String(w.Mode)
		if err != nil {
			return fmt.Errorf("mode: %w", err)
		}
		if mode, err = parseMode(strings.TrimSpace(text)); err != nil {
			return fmt.Errorf("mode: template %q: %w", w.Mode, err)
		}
	}
	w.contents, w.owner, w.group, w.mode = []byte(contents), owner, group, mode
	w.sum = sha256.Sum256(w.contents)
	return nil
}

// parseMode parses an octal permission string: "0644", "644" or "0o644".
func parseMode(s string) (os.FileMode, error) {
	digits := strings.TrimPrefix(strings.TrimPrefix(s, "0o"), "0O")
	n, err := strconv.ParseUint(digits, 8, 32)
	if err != nil {
		return 0, fmt.Errorf("%q is not an octal mode like \"0644\"", s)
	}
	if n > 0o777 {
		return 0, fmt.Errorf("%q is above 0777: setuid, setgid and sticky bits are not managed", s)
	}
	return os.FileMode(n), nil
}

// Provision resolves the path against the machine directory, renders the
// managed file's templates and, with gather_initial_state, records the
// file as it is now.
func (w *Watcher) Provision(d watchers.Deps) error {
	w.log = d.Log
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	p := w.Path
	if !filepath.IsAbs(p) {
		p = filepath.Join(d.Dir, p)
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return fmt.Errorf("resolve path %q: %w", w.Path, err)
	}
	w.path = abs
	if w.Contents != nil {
		w.deps = d
		w.templated = render.Has(*w.Contents) || render.Has(w.Owner) || render.Has(w.Group) || render.Has(w.Mode)
		if err := w.renderManaged(render.NewRenderer(d)); err != nil {
			return err
		}
	}
	if w.GatherInitialState && w.Contents == nil {
		if _, err := w.observe(); err != nil {
			return fmt.Errorf("gather initial state: %w", err)
		}
	}
	return nil
}

// Check observes or enforces the file once.
func (w *Watcher) Check(ctx context.Context) (watchers.Result, error) {
	if w.Contents != nil {
		return w.enforce()
	}
	prev := w.last
	reason, err := w.observe()
	switch {
	case err != nil:
		return w.result(watchers.Failure, outcomeError, err.Error()), err
	case w.last.state == missing && prev.state != missing:
		return w.result(watchers.Failure, outcomeError, reason), nil
	case w.last.state == missing:
		// Still missing: said so already.
		return w.result(watchers.Unchanged, outcomeError, reason), nil
	case prev.state == present && (!prev.modTime.Equal(w.last.modTime) || prev.size != w.last.size):
		return w.result(watchers.Success, outcomeChanged, "modified"), nil
	case prev.state != present:
		// First sight (without gather_initial_state) or back again.
		return w.result(watchers.Success, outcomeChanged, "created"), nil
	}
	return w.result(watchers.Unchanged, outcomeUnchanged, ""), nil
}

// observe stats the file into w.last. A missing file is not an error; its
// reason is returned.
func (w *Watcher) observe() (string, error) {
	fi, err := os.Stat(w.path)
	if errors.Is(err, os.ErrNotExist) {
		w.last = observation{state: missing}
		return "does not exist", nil
	}
	if err != nil {
		return "", fmt.Errorf("stat %s: %w", w.path, err)
	}
	w.last = observation{state: present, modTime: fi.ModTime(), size: fi.Size()}
	return "", nil
}

func (w *Watcher) result(o watchers.Outcome, outcome, reason string) watchers.Result {
	return watchers.Result{Outcome: o, State: State{Path: w.path, PreviousOutcome: outcome, Reason: reason}}
}

var (
	_ watchers.Watcher     = (*Watcher)(nil)
	_ watchers.Validator   = (*Watcher)(nil)
	_ watchers.Provisioner = (*Watcher)(nil)
	_ watchers.Streamer    = (*Watcher)(nil)
)
