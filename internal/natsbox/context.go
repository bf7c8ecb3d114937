package natsbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/mms-io/mms/internal/atomicfile"
)

// ErrContextNotFound is returned (wrapped, naming the path) when a named
// `nats` CLI context has no file.
var ErrContextNotFound = errors.New("nats context not found")

// CLIContext is the part of an official `nats` CLI context that affects
// connecting. The CLI stores one JSON file per context at
// $XDG_CONFIG_HOME/nats/context/<name>.json (default ~/.config/nats/context).
// Fields that only matter to the CLI (description, color_scheme,
// jetstream_event_prefix, …) and fields added by newer CLIs are ignored;
// fields that change how to connect but that natsbox cannot honour (nsc,
// socks_proxy, user_jwt) are an error rather than silently dropped.
type CLIContext struct {
	// Path is the file the context was read from.
	Path string `json:"-"`

	// Description says what the context is for.
	Description string `json:"description"`

	// URL is a comma-separated list of server URLs.
	URL string `json:"url"`
	// User and Password authenticate with a user name; they win over Creds
	// and NKey when several are set, as in the CLI.
	User     string `json:"user"`
	Password string `json:"password"`
	// Token is an authentication token.
	Token string `json:"token"`
	// Creds is the path of a JWT credentials file; it wins over NKey.
	Creds string `json:"creds"`
	// NKey is the path of an nkey seed file.
	NKey string `json:"nkey"`
	// Cert and Key are the paths of a TLS client certificate and its key.
	Cert string `json:"cert"`
	Key  string `json:"key"`
	// CA is the path of the PEM CA bundle that verifies the server.
	CA string `json:"ca"`
	// TLSFirst makes the client start TLS before the server's INFO.
	TLSFirst bool `json:"tls_first"`
	// InboxPrefix replaces _INBOX for request replies.
	InboxPrefix string `json:"inbox_prefix"`
	// JetStreamDomain and JetStreamAPIPrefix select a JetStream domain or
	// API prefix; at most one is set.
	JetStreamDomain    string `json:"jetstream_domain"`
	JetStreamAPIPrefix string `json:"jetstream_api_prefix"`
	// NSC, SocksProxy and UserJWT are not supported; non-empty is an error.
	NSC        string `json:"nsc"`
	SocksProxy string `json:"socks_proxy"`
	UserJWT    string `json:"user_jwt"`
}

// ContextPath returns the file of the `nats` CLI context called name:
// $XDG_CONFIG_HOME/nats/context/<name>.json, or ~/.config/nats/context when
// XDG_CONFIG_HOME is unset.
func ContextPath(name string) (string, error) {
	if name == "" || name == "." || strings.Contains(name, "..") || strings.ContainsAny(name, `/\`) {
		return "", fmt.Errorf("nats context name %q: want a plain name without path separators or dot-dot", name)
	}
	base, err := configDir()
	if err != nil {
		return "", fmt.Errorf("find nats context %q: %w", name, err)
	}
	return filepath.Join(base, "context", name+".json"), nil
}

// configDir is the `nats` CLI's configuration directory:
// $XDG_CONFIG_HOME/nats, or ~/.config/nats.
func configDir() (string, error) {
	base := os.Getenv("XDG_CONFIG_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", err
		}
		base = filepath.Join(home, ".config")
	}
	return filepath.Join(base, "nats"), nil
}

// SelectionPath is the file in which the `nats` CLI records the selected
// context (`nats context select NAME`): context.txt in its configuration
// directory, holding the name.
func SelectionPath() (string, error) {
	base, err := configDir()
	if err != nil {
		return "", fmt.Errorf("find the selected nats context: %w", err)
	}
	return filepath.Join(base, "context.txt"), nil
}

// SelectedContext returns the name of the context the `nats` CLI has
// selected and the file that says so; name is empty when none is selected
// (no file, or an empty one).
func SelectedContext() (name, path string, err error) {
	path, err = SelectionPath()
	if err != nil {
		return "", "", err
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", path, nil
	}
	if err != nil {
		return "", path, fmt.Errorf("read the selected nats context: %w", err)
	}
	return strings.TrimSpace(string(data)), path, nil
}

// LoadContext reads the `nats` CLI context called name. A missing file is
// ErrContextNotFound naming the path. A leading ~/ in file fields (creds,
// nkey, cert, key, ca) is expanded to the home directory.
func LoadContext(name string) (CLIContext, error) {
	path, err := ContextPath(name)
	if err != nil {
		return CLIContext{}, err
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return CLIContext{}, fmt.Errorf("%w: %q has no file %s", ErrContextNotFound, name, path)
	}
	if err != nil {
		return CLIContext{}, fmt.Errorf("read nats context %q: %w", name, err)
	}
	return parseContextFile(path, data)
}

// LoadContextFile reads the `nats` CLI context in the file path, such as
// the one a local agent writes for its embedded server. A missing file is
// ErrContextNotFound naming the path.
func LoadContextFile(path string) (CLIContext, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return CLIContext{}, fmt.Errorf("%w: no file %s", ErrContextNotFound, path)
	}
	if err != nil {
		return CLIContext{}, fmt.Errorf("read nats context: %w", err)
	}
	return parseContextFile(path, data)
}

// parseContextFile parses the context data read from path and expands ~/
// in its file fields.
func parseContextFile(path string, data []byte) (CLIContext, error) {
	c, err := ParseContext(data)
	if err != nil {
		return CLIContext{}, fmt.Errorf("nats context %s: %w", path, err)
	}
	c.Path = path
	for _, p := range []*string{&c.Creds, &c.NKey, &c.Cert, &c.Key, &c.CA} {
		if *p, err = expandHome(*p); err != nil {
			return CLIContext{}, fmt.Errorf("nats context %s: %w", path, err)
		}
	}
	return c, nil
}

// ParseContext decodes and checks the JSON of a `nats` CLI context. Every
// problem is reported, each naming its field.
func ParseContext(data []byte) (CLIContext, error) {
	var c CLIContext
	if err := json.Unmarshal(data, &c); err != nil {
		return CLIContext{}, fmt.Errorf("decode: %w", err)
	}
	var errs []error
	unsupported := func(field string, set bool, why string) {
		if set {
			errs = append(errs, fmt.Errorf("field %s is not supported: %s", field, why))
		}
	}
	unsupported("nsc", c.NSC != "", "put the creds file path in creds instead")
	unsupported("socks_proxy", c.SocksProxy != "", "connect directly")
	unsupported("user_jwt", c.UserJWT != "", "use a creds file")
	if _, err := ParseServers(c.URL); err != nil {
		errs = append(errs, fmt.Errorf("field url: %w", err))
	}
	if (c.Cert == "") != (c.Key == "") {
		errs = append(errs, errors.New("fields cert and key: set both or neither"))
	}
	if c.JetStreamDomain != "" && c.JetStreamAPIPrefix != "" {
		errs = append(errs, errors.New("fields jetstream_domain and jetstream_api_prefix: set one, not both"))
	}
	if err := errors.Join(errs...); err != nil {
		return CLIContext{}, err
	}
	return c, nil
}

// expandHome replaces a leading ~/ in path with the home directory.
func expandHome(path string) (string, error) {
	rest, ok := strings.CutPrefix(path, "~/")
	if !ok {
		return path, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("expand %q: %w", path, err)
	}
	return filepath.Join(home, rest), nil
}

// contextFile is the JSON WriteContextFile writes: the connection fields
// that are set, nothing else.
type contextFile struct {
	Description string `json:"description,omitempty"`
	URL         string `json:"url"`
	User        string `json:"user,omitempty"`
	Password    string `json:"password,omitempty"`
	Token       string `json:"token,omitempty"`
	Creds       string `json:"creds,omitempty"`
	NKey        string `json:"nkey,omitempty"`
	Cert        string `json:"cert,omitempty"`
	Key         string `json:"key,omitempty"`
	CA          string `json:"ca,omitempty"`
}

// WriteContextFile writes c as a `nats` CLI context file at path: mode
// 0600 (it may hold a password), replacing any file there atomically. The
// directory must exist.
func WriteContextFile(path string, c CLIContext) error {
	data, err := json.MarshalIndent(contextFile{
		Description: c.Description, URL: c.URL, User: c.User, Password: c.Password, Token: c.Token,
		Creds: c.Creds, NKey: c.NKey, Cert: c.Cert, Key: c.Key, CA: c.CA,
	}, "", "  ")
	if err != nil {
		return fmt.Errorf("encode nats context %s: %w", path, err)
	}
	if err := atomicfile.WriteFile(path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("write nats context: %w", err)
	}
	return nil
}
