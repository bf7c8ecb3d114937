package main

import (
	"cmp"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/mms-io/mms/agent"
	"github.com/mms-io/mms/internal/kvname"
	"github.com/mms-io/mms/internal/natsbox"
	"github.com/mms-io/mms/manager"
	machineswatcher "github.com/mms-io/mms/manager/machineswatcher"
	"github.com/mms-io/mms/nodestatus"
	"github.com/mms-io/mms/packer"
)

// agentOptions are the flags of `mms agent`.
type agentOptions struct {
	nats            natsFlags
	stateDir        string
	machinesDir     string
	dataDir         string
	identity        string
	factsFile       string
	publicKeys      []string
	trustedKeysFile string
	threshold       int
	bucket          string
	key             string
	allowLegacy     bool
	resetHistory    string
	allowHTTP       bool
	verifyInterval  time.Duration
	insecure        bool
	listen          string
	statusInterval  time.Duration
	logJSON         bool
	logLevel        string
	metricsListen   string
	fsNotify        bool
}

// agentConfig is what the agent runs with, resolved and checked.
type agentConfig struct {
	node agent.Node
	// manager is attached to node (with the status recorder) when the
	// agent runs, for the compiled-in manager machine.
	manager   manager.Settings
	factsFile string
	// embedded is true when the agent runs its own NATS server on
	// listenHost:listenPort (port -1: any free port).
	embedded   bool
	listenHost string
	listenPort int
	connect    natsbox.ConnectConfig
	timeout    time.Duration
	heartbeat  time.Duration
	logLevel   slog.Level
	logJSON    bool
	// metricsListen is where Prometheus metrics and /healthz are served;
	// empty serves none.
	metricsListen string
	// noNotify turns the host's file-system notifications off.
	noNotify bool
}

// storeDir is the embedded server's JetStream store.
func (c agentConfig) storeDir() string { return filepath.Join(c.node.StateDir, "nats") }

// minHeartbeat is the smallest --status-interval.
const minHeartbeat = 100 * time.Millisecond

// resolve checks every flag and returns the configuration, reporting every
// problem at once. The keys compiled into the binary are trusted when no
// key flag is given. It reads the key and facts files but writes nothing.
func (o *agentOptions) resolve(a *app) (agentConfig, error) {
	var errs []error
	cfg := agentConfig{factsFile: o.factsFile, timeout: o.nats.timeout, heartbeat: o.statusInterval, logJSON: o.logJSON, metricsListen: o.metricsListen, noNotify: !o.fsNotify}
	if o.metricsListen != "" {
		if _, _, err := net.SplitHostPort(o.metricsListen); err != nil {
			errs = append(errs, fmt.Errorf("--metrics-listen %q: want HOST:PORT, e.g. 127.0.0.1:9180: %w", o.metricsListen, err))
		}
	}
	if err := cfg.logLevel.UnmarshalText([]byte(o.logLevel)); err != nil {
		errs = append(errs, fmt.Errorf("--log-level %q: want debug, info, warn or error", o.logLevel))
	}
	identity := strings.TrimSpace(o.identity)
	if identity == "" {
		errs = append(errs, errors.New("--identity is empty (and the host name is unknown): give the node a name"))
	} else if err := nodestatus.CheckIdentity(identity); err != nil {
		errs = append(errs, fmt.Errorf("--identity: %w", err))
	}

	trust, err := resolveTrust(o.publicKeys, o.trustedKeysFile, o.threshold, o.insecure, o.allowLegacy)
	if err != nil {
		errs = append(errs, err)
	}

	stateDir, err := agentStateDir(o.stateDir)
	if err != nil {
		errs = append(errs, err)
	}
	machinesDir := cmp.Or(o.machinesDir, filepath.Join(stateDir, "machines"))
	dataDir := cmp.Or(o.dataDir, filepath.Join(stateDir, "data"))
	for _, d := range []*string{&stateDir, &machinesDir, &dataDir} {
		if abs, err := filepath.Abs(*d); err == nil {
			*d = abs
		}
	}

	if kvname.Bucket(o.bucket) != nil {
		errs = append(errs, fmt.Errorf("--bucket %q: a bucket name is letters, digits, '-' and '_'", o.bucket))
	}
	if kvname.Key(o.key) != nil {
		errs = append(errs, fmt.Errorf("--key %q: a key is letters, digits and -/_= separated by single dots", o.key))
	}
	if o.statusInterval < minHeartbeat {
		errs = append(errs, fmt.Errorf("--status-interval %v: want at least %v", o.statusInterval, minHeartbeat))
	}
	if o.verifyInterval < machineswatcher.MinVerifyInterval {
		errs = append(errs, fmt.Errorf("--verify-interval %v: want at least %v (every check also re-hashes files whose size, time or inode changed)", o.verifyInterval, machineswatcher.MinVerifyInterval))
	}
	if o.nats.timeout <= 0 {
		errs = append(errs, fmt.Errorf("--timeout %v: want a positive duration", o.nats.timeout))
	}
	var resetHistory *uint64
	if o.resetHistory != "" {
		n, err := strconv.ParseUint(strings.TrimSpace(o.resetHistory), 10, 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("--reset-spec-history %q: want the serial of the last accepted spec (mms status shows it; 0 for a v1 spec)", o.resetHistory))
		}
		resetHistory = &n
	}
	if o.factsFile != "" {
		if _, err := agent.LoadFacts(o.factsFile); err != nil {
			errs = append(errs, fmt.Errorf("--facts: %w", err))
		}
	}

	cfg.connect = o.nats.config(a, "mms agent "+identity)
	cfg.embedded = strings.TrimSpace(o.nats.server) == "" && o.nats.context == ""
	if cfg.embedded {
		for flag, v := range map[string]string{"--creds": o.nats.creds, "--nkey": o.nats.nkey, "--tls-cert": o.nats.tlsCert, "--tls-key": o.nats.tlsKey, "--tls-ca": o.nats.tlsCA} {
			if v != "" {
				errs = append(errs, fmt.Errorf("%s is for connecting to a NATS server: give --server (or --context) too; without one the agent runs its own server", flag))
			}
		}
		host, port, err := parseListen(o.listen)
		if err != nil {
			errs = append(errs, err)
		}
		cfg.listenHost, cfg.listenPort = host, port
	} else if _, err := natsbox.ParseServers(o.nats.server); err != nil {
		errs = append(errs, fmt.Errorf("--server: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return agentConfig{}, err
	}

	cfg.node = agent.Node{
		Identity:    identity,
		MachinesDir: machinesDir,
		DataDir:     dataDir,
		StateDir:    stateDir,
	}
	cfg.manager = manager.Settings{
		Trust:          trust,
		Bucket:         o.bucket,
		Key:            o.key,
		AllowHTTP:      o.allowHTTP,
		VerifyInterval: o.verifyInterval,

		ResetSpecHistory: resetHistory,
	}
	return cfg, nil
}

// resolveTrust parses the key flags and resolves the node's trust with
// manager.NewTrust: keys come from --public-key and --trusted-keys; when
// neither is given, from the keys compiled into the binary. Without any
// key the agent refuses to start unless insecure (--insecure-unsigned) is
// set. Errors name the flags.
func resolveTrust(hexKeys []string, file string, threshold int, insecure, allowV1 bool) (manager.Trust, error) {
	var keys []ed25519.PublicKey
	var errs []error
	for i, h := range hexKeys {
		k, err := packer.ParsePublicKey(strings.TrimSpace(h))
		if err != nil {
			hint := ""
			if _, serr := os.Stat(h); serr == nil {
				hint = " (it names a file: use --trusted-keys FILE)"
			} else if strings.TrimSpace(h) == "" {
				hint = ` (did a substitution such as --public-key "$(cat ops.pub)" fail? check that the file exists)`
			} else if errors.Is(err, packer.ErrPrivateKeyGiven) {
				hint = privateKeyOnCommandLine
			}
			errs = append(errs, fmt.Errorf("--public-key #%d: %w%s", i+1, err, hint))
			continue
		}
		keys = append(keys, k)
	}
	if file != "" {
		fromFile, err := readPublicKeyFile(file)
		if err != nil {
			errs = append(errs, fmt.Errorf("--trusted-keys: %w", err))
		}
		keys = append(keys, fromFile...)
	}
	if threshold == 0 {
		// The library reads 0 as its default; a flag set to 0 is a mistake.
		errs = append(errs, errors.New("--threshold 0: want at least 1"))
	}
	if err := errors.Join(errs...); err != nil {
		return manager.Trust{}, err
	}
	trust, err := manager.NewTrust(manager.TrustConfig{Keys: keys, Threshold: threshold, AllowV1: allowV1, Unsigned: insecure})
	switch {
	case errors.Is(err, manager.ErrUnsignedWithKeys):
		return trust, errors.New("--insecure-unsigned with trusted keys: either verify signatures (drop --insecure-unsigned) or do not (drop the keys)")
	case errors.Is(err, manager.ErrNoTrustedKeys):
		return trust, errors.New("no trusted public key: give --public-key HEX or --trusted-keys FILE (make a pair with 'mms keys --out ops' and pass \"$(cat ops.pub)\"), or --insecure-unsigned to run specs nobody signed (unsafe)")
	case errors.Is(err, manager.ErrThreshold):
		return trust, fmt.Errorf("--%w, so no spec could ever be accepted", err)
	}
	return trust, err
}

// stateDirEnv names the environment variable that replaces the default
// state directory, for the agent and for the commands that look for it.
const stateDirEnv = "MMS_STATE_DIR"

// agentStateDir returns dir, or the default state directory: $MMS_STATE_DIR,
// else /var/lib/mms for root, else $XDG_STATE_HOME/mms, else
// ~/.local/state/mms.
func agentStateDir(dir string) (string, error) {
	if dir != "" {
		return dir, nil
	}
	if env := os.Getenv(stateDirEnv); env != "" {
		return filepath.Abs(env)
	}
	return defaultStateDir(os.Geteuid(), os.Getenv("XDG_STATE_HOME"), os.UserHomeDir)
}

func defaultStateDir(euid int, xdgState string, home func() (string, error)) (string, error) {
	if euid == 0 {
		return "/var/lib/mms", nil
	}
	if filepath.IsAbs(xdgState) {
		return filepath.Join(xdgState, "mms"), nil
	}
	h, err := home()
	if err != nil || h == "" {
		return "", fmt.Errorf("no default state directory (home directory unknown: %v): give --state-dir", err)
	}
	return filepath.Join(h, ".local", "state", "mms"), nil
}

// parseListen splits --listen HOST:PORT; port 0 means any free port.
func parseListen(listen string) (string, int, error) {
	host, portText, err := net.SplitHostPort(listen)
	if err != nil {
		return "", 0, fmt.Errorf("--listen %q: want HOST:PORT, e.g. 127.0.0.1:4222: %w", listen, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("--listen %q: port %q is not a number from 0 to 65535", listen, portText)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	if port == 0 {
		port = -1 // natsbox: a random free port
	}
	return host, port, nil
}
