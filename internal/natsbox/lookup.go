package natsbox

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// LocalContextFile is the file in an agent's state directory through which
// an agent that runs an embedded server tells the commands on its machine
// how to reach it: a `nats` CLI context (URL and credentials), mode 0600,
// so only who may read the state directory can use it.
const LocalContextFile = "nats-context.json"

// Environment variables Lookup reads, as the `nats` CLI does.
const (
	EnvURL     = "NATS_URL"
	EnvContext = "NATS_CONTEXT"
)

// Lookup says where an operator command may find NATS. Find takes the
// first source that is set, in the `nats` CLI's order, then the local
// agent's:
//
//  1. Server (--server)
//  2. Context (--context), then $NATS_CONTEXT
//  3. StateDir (--state-dir, or $MMS_STATE_DIR): the LocalContextFile of
//     that agent
//  4. $NATS_URL
//  5. the context the `nats` CLI has selected (SelectedContext)
//  6. the LocalContextFile in DefaultStateDir, if it exists
//
// With none of them, Find fails with [ErrNoNATS]: there is no default
// server to guess (a bare nats://127.0.0.1:4222 would be some other
// program's as often as an agent's).
type Lookup struct {
	Server  string
	Context string
	// StateDir is a state directory named explicitly; its agent wins over
	// the environment. StateDirSource names where it came from in
	// messages ("--state-dir" when empty).
	StateDir       string
	StateDirSource string
	// DefaultStateDir is where a local agent keeps its state by default;
	// empty skips it.
	DefaultStateDir string
	// Getenv reads the environment; nil means os.Getenv.
	Getenv func(string) string
}

// Found is where Lookup found NATS: one of Servers, Context and
// ContextFile is set.
type Found struct {
	Servers     []string
	Context     string
	ContextFile string
	// From names the source for messages, such as "$NATS_URL".
	From string
	// Tried lists the sources Find looked at, in order, each with what it
	// found; the last is the one used.
	Tried []string
}

// Find returns the first source of Lookup's order that is set. It fails
// only when a source that is set is malformed ($NATS_URL, the selection
// file); whether a named context or file exists is for Connect to say.
func (l Lookup) Find() (Found, error) {
	getenv := l.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	var f Found
	use := func(from string) (Found, error) {
		f.From = from
		f.Tried = append(f.Tried, from+": used")
		return f, nil
	}
	skip := func(source, why string) { f.Tried = append(f.Tried, source+": "+why) }

	if l.Server != "" {
		f.Servers = []string{l.Server}
		return use("--server " + redactServers([]string{l.Server}))
	}
	skip("--server", "not given")
	if l.Context != "" {
		f.Context = l.Context
		return use("--context " + l.Context)
	}
	skip("--context", "not given")
	if name := getenv(EnvContext); name != "" {
		f.Context = name
		return use("$" + EnvContext + " (" + name + ")")
	}
	skip("$"+EnvContext, "not set")
	stateDirSource := l.StateDirSource
	if stateDirSource == "" {
		stateDirSource = "--state-dir"
	}
	if l.StateDir != "" {
		f.ContextFile = filepath.Join(l.StateDir, LocalContextFile)
		return use("the mms agent of " + stateDirSource + " (" + f.ContextFile + ")")
	}
	skip(stateDirSource, "not given")
	if url := getenv(EnvURL); url != "" {
		servers, err := ParseServers(url)
		if err != nil {
			return Found{}, fmt.Errorf("$%s: %w", EnvURL, err)
		}
		f.Servers = servers
		return use("$" + EnvURL + " (" + redactServers(servers) + ")")
	}
	skip("$"+EnvURL, "not set")
	name, path, err := SelectedContext()
	switch {
	case err != nil:
		return Found{}, err
	case name != "":
		f.Context = name
		return use("the selected nats context " + name + " (" + path + ")")
	}
	skip("the selected nats context", "none in "+path)
	if l.DefaultStateDir != "" {
		file := filepath.Join(l.DefaultStateDir, LocalContextFile)
		_, err := os.Stat(file)
		switch {
		case err == nil:
			f.ContextFile = file
			return use("the local mms agent (" + file + ")")
		case errors.Is(err, fs.ErrNotExist):
			skip("the local mms agent", "no "+file)
		default:
			skip("the local mms agent", err.Error())
		}
	}
	return Found{}, &NoNATSError{Tried: f.Tried}
}

// ErrNoNATS is what [Lookup.Find] fails with (as a *NoNATSError) when no
// source is set.
var ErrNoNATS = errors.New("no NATS server to use")

// NoNATSError is [ErrNoNATS] with where Find looked.
type NoNATSError struct {
	// Tried lists the sources Find looked at, in order, each with why it
	// was not used.
	Tried []string
}

// Error says where Find looked.
func (e *NoNATSError) Error() string {
	return ErrNoNATS.Error() + ": looked for NATS in this order: " + strings.Join(e.Tried, "; ")
}

// Is makes errors.Is(err, ErrNoNATS) true.
func (e *NoNATSError) Is(target error) bool { return target == ErrNoNATS }
