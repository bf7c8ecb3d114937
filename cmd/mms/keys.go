package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mms-io/mms/internal/atomicfile"
	"github.com/mms-io/mms/packer"
)

func (a *app) newKeysCmd() *cobra.Command {
	var out string
	var force bool
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Create an ed25519 key pair for signing specs",
		Long: `Create an ed25519 key pair for signing specs.

Without --out the pair is printed in the format of Choria's 'mms keys'
(hex; the private key is the 64-byte seed and public key). With --out PREFIX
the private key goes to PREFIX.key (mode 0600) and the public key to
PREFIX.pub, and only the public key and its key id are printed: keep the
private key off terminals and shell histories.

Give agents the public key (--public-key or --trusted-keys); sign with
'mms pack --key-file PREFIX.key'.`,
		Example: `  mms keys
  mms keys --out ops          # writes ops.key and ops.pub`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pub, priv, err := packer.GenerateKey(rand.Reader)
			if err != nil {
				return fmt.Errorf("generate key: %w", err)
			}
			if out == "" {
				fmt.Fprintf(a.stdout, " Public Key: %s\nPrivate Key: %s\n", packer.FormatPublicKey(pub), packer.FormatPrivateKey(priv))
				return nil
			}
			return a.writeKeyPair(out, pub, priv, force)
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "write PREFIX.key (0600) and PREFIX.pub instead of printing the private key")
	cmd.Flags().BoolVar(&force, "force", false, "replace existing key files (new files renamed over them; links are replaced, not followed)")
	return cmd
}

// writeKeyPair writes PREFIX.key (0600) and PREFIX.pub (0644). Without
// force an existing file (or link) is an error. With force each file is
// written as a new file next to it and renamed over it, so the old file's
// mode never carries over and a symbolic link is replaced, never written
// through.
func (a *app) writeKeyPair(prefix string, pub ed25519.PublicKey, priv ed25519.PrivateKey, force bool) error {
	write := func(path, content string, mode os.FileMode) error {
		if force {
			return atomicfile.WriteFile(path, []byte(content+"\n"), mode)
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("write %s: file exists (use --force to replace it)", path)
		}
		if err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
		if _, err := f.WriteString(content + "\n"); err != nil {
			f.Close()
			return fmt.Errorf("write %s: %w", path, err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return fmt.Errorf("write %s: %w", path, err)
		}
		return f.Close()
	}
	keyPath, pubPath := prefix+".key", prefix+".pub"
	if err := write(keyPath, packer.FormatPrivateKey(priv), 0o600); err != nil {
		return err
	}
	if err := write(pubPath, packer.FormatPublicKey(pub), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, " Public Key: %s\n     Key ID: %s\n    Written: %s (secret, 0600), %s\n",
		packer.FormatPublicKey(pub), packer.KeyID(pub), keyPath, pubPath)
	return nil
}

// readPublicKeys resolves each argument as a hex public key or, when it is
// not one, as a file holding hex public keys (one per line, '#' comments).
func readPublicKeys(args []string) ([]ed25519.PublicKey, error) {
	var keys []ed25519.PublicKey
	for _, arg := range args {
		k, err := packer.ParsePublicKey(arg)
		switch {
		case err == nil:
			keys = append(keys, k)
			continue
		case errors.Is(err, packer.ErrPrivateKeyGiven):
			return nil, fmt.Errorf("%w%s", err, privateKeyOnCommandLine) // never echo it
		}
		fromFile, err := readPublicKeyFile(arg)
		if err != nil {
			return nil, err
		}
		keys = append(keys, fromFile...)
	}
	return keys, nil
}

// privateKeyOnCommandLine is added to the error for a private key given on
// the command line where a public key belongs.
const privateKeyOnCommandLine = "; a command line is visible to every user of this machine (and kept in shell history): make a new pair with 'mms keys --out NAME' if others use it"

// readPublicKeyFile reads hex public keys, one per line; blank lines and
// lines starting with '#' are ignored.
func readPublicKeyFile(path string) ([]ed25519.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("public key %q: not a 64-character hex key and no such file", path)
		}
		return nil, fmt.Errorf("read public keys: %w", err)
	}
	var keys []ed25519.PublicKey
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, err := packer.ParsePublicKey(line)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, i+1, err)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s: no public keys in file", path)
	}
	return keys, nil
}

// readPrivateKeyFile reads one hex private key from path. The file should
// not be readable by others; a warning is printed when it is.
func (a *app) readPrivateKeyFile(path string) (ed25519.PrivateKey, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("read private key: %w", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read private key: %w", err)
	}
	if _, perr := packer.ParsePublicKey(strings.TrimSpace(string(data))); perr == nil {
		return nil, fmt.Errorf("%s holds a public key: --key-file wants the private key that signs (mms keys --out NAME writes NAME.key next to NAME.pub)", path)
	}
	if st.Mode().Perm()&0o077 != 0 {
		a.log.Warn("private key file is readable by group or others; chmod 600 it", "path", path, "mode", fmt.Sprintf("%#o", st.Mode().Perm()))
	}
	k, err := packer.ParsePrivateKey(string(data))
	if err != nil {
		return nil, fmt.Errorf("private key %s: %w", path, err)
	}
	return k, nil
}
