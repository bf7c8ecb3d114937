package natsbox

import (
	"errors"
	"fmt"
	"os"

	"github.com/nats-io/nats.go"
)

// settings is a ConnectConfig merged with its context.
type settings struct {
	servers               []string
	user, password, token string
	creds, nkey           string
	cert, key, ca         string
	tlsFirst              bool
	name, inboxPrefix     string
	jsDomain, jsAPIPrefix string
}

// resolve merges cfg over its context and checks the result, reporting every
// problem.
func resolve(cfg ConnectConfig) (settings, error) {
	var set settings
	if cfg.Context != "" && cfg.ContextFile != "" {
		return settings{}, errors.New("nats connection config: context and context file: set one, not both")
	}
	if cfg.Context != "" || cfg.ContextFile != "" {
		var cc CLIContext
		var err error
		if cfg.Context != "" {
			cc, err = LoadContext(cfg.Context)
		} else {
			cc, err = LoadContextFile(cfg.ContextFile)
		}
		if err != nil {
			return settings{}, err
		}
		set = settings{
			user: cc.User, password: cc.Password, token: cc.Token,
			creds: cc.Creds, nkey: cc.NKey,
			cert: cc.Cert, key: cc.Key, ca: cc.CA, tlsFirst: cc.TLSFirst,
			inboxPrefix: cc.InboxPrefix, jsDomain: cc.JetStreamDomain, jsAPIPrefix: cc.JetStreamAPIPrefix,
		}
		set.servers, _ = ParseServers(cc.URL) // checked by LoadContext
	}
	var errs []error
	if len(cfg.Servers) > 0 {
		set.servers = nil
		for _, s := range cfg.Servers {
			list, err := ParseServers(s)
			if err != nil {
				errs = append(errs, fmt.Errorf("servers: %w", err))
			}
			set.servers = append(set.servers, list...)
		}
	}
	if len(set.servers) == 0 {
		set.servers = []string{nats.DefaultURL}
	}
	if cfg.Creds != "" && cfg.NKey != "" {
		errs = append(errs, errors.New("creds and nkey: set one, not both"))
	}
	if cfg.Creds != "" || cfg.NKey != "" {
		set.user, set.password, set.token = "", "", ""
		set.creds, set.nkey = cfg.Creds, cfg.NKey
	}
	override := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	override(&set.cert, cfg.TLSCert)
	override(&set.key, cfg.TLSKey)
	override(&set.ca, cfg.TLSCA)
	override(&set.inboxPrefix, cfg.InboxPrefix)
	set.name = cfg.Name
	if (set.cert == "") != (set.key == "") {
		errs = append(errs, errors.New("tls cert and tls key: set both or neither"))
	}
	for _, f := range []struct{ field, path string }{
		{"creds", set.creds}, {"nkey", set.nkey},
		{"tls cert", set.cert}, {"tls key", set.key}, {"tls ca", set.ca},
	} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			errs = append(errs, fmt.Errorf("%s file: %w", f.field, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return settings{}, fmt.Errorf("nats connection config: %w", err)
	}
	return set, nil
}

// options turns the settings into nats.go options. Credentials follow the
// CLI's precedence: user, then creds, then nkey; a token is always sent.
func (set settings) options() ([]nats.Option, error) {
	var opts []nats.Option
	switch {
	case set.user != "":
		opts = append(opts, nats.UserInfo(set.user, set.password))
	case set.creds != "":
		opts = append(opts, nats.UserCredentials(set.creds))
	case set.nkey != "":
		o, err := nats.NkeyOptionFromSeed(set.nkey)
		if err != nil {
			return nil, fmt.Errorf("load nkey seed %s: %w", set.nkey, err)
		}
		opts = append(opts, o)
	}
	if set.token != "" {
		opts = append(opts, nats.Token(set.token))
	}
	if set.cert != "" {
		opts = append(opts, nats.ClientCert(set.cert, set.key))
	}
	if set.ca != "" {
		opts = append(opts, nats.RootCAs(set.ca))
	}
	if set.tlsFirst {
		opts = append(opts, nats.TLSHandshakeFirst())
	}
	if set.inboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(set.inboxPrefix))
	}
	if set.name != "" {
		opts = append(opts, nats.Name(set.name))
	}
	return opts, nil
}
