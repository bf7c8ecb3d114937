package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/spec"
)

func (a *app) newVerifyCmd() *cobra.Command {
	var threshold int
	var allowHTTP bool
	cmd := &cobra.Command{
		Use:   "verify SPEC KEY...",
		Short: "Check a spec's signatures and entries the way an agent does",
		Long: `Check a spec's signatures and entries the way an agent does.

SPEC is an envelope file, or - for stdin. Each KEY is a hex public key or a
file of hex public keys (one per line). The spec passes when at least
--threshold distinct trusted keys signed it and every entry is valid; v1
(Choria) specs are accepted here, though agents need --allow-legacy-spec.

Exit status 0 prints a one-line summary; anything else prints the exact
reason. Replay rules (serials) are the agent's business and are not checked.`,
		Example: `  mms verify spec.json ops.pub
  mms pack machines.json --key-file ops.key | mms verify - ops.pub`,
		Args: func(_ *cobra.Command, args []string) error {
			switch len(args) {
			case 0:
				return errors.New("missing SPEC and KEY: give the spec and the public key(s) that should have signed it, e.g. mms verify spec.json ops.pub")
			case 1:
				return fmt.Errorf("missing KEY: give the public key(s) that should have signed %s (a file or 64 hex characters), e.g. mms verify %s ops.pub", args[0], args[0])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := a.readSpecArg(args[0])
			if err != nil {
				return err
			}
			keys, err := readPublicKeys(args[1:])
			if err != nil {
				return err
			}
			opened, err := packer.Open(data, packer.OpenOptions{Trusted: keys, Threshold: threshold, AllowV1: true})
			if err != nil {
				return err
			}
			s := opened.Spec
			legacy := opened.Format == packer.FormatV1
			if err := s.Validate(spec.ValidateOptions{AllowHTTP: allowHTTP, Legacy: legacy}); err != nil {
				return fmt.Errorf("signature ok, but the spec is invalid:\n%w", err)
			}
			fmt.Fprintln(a.stdout, verifySummary(opened, threshold, time.Now()))
			return nil
		},
	}
	cmd.Flags().IntVar(&threshold, "threshold", 1, "distinct trusted keys that must have signed")
	cmd.Flags().BoolVar(&allowHTTP, "allow-http", false, "accept http:// sources")
	return cmd
}

func verifySummary(o *packer.Opened, threshold int, now time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "ok: %s spec", o.Format)
	if o.Format == packer.FormatV2 {
		fmt.Fprintf(&b, " serial %d", o.Spec.Serial)
	}
	fmt.Fprintf(&b, ", %d machine%s, signed by %d/%d required key%s (%s)",
		len(o.Spec.Machines), plural(len(o.Spec.Machines)),
		len(o.KeyIDs), max(threshold, 1), plural(max(threshold, 1)), strings.Join(o.KeyIDs, ", "))
	if !o.Spec.Expires.IsZero() {
		fmt.Fprintf(&b, ", expires %s (in %s)", o.Spec.Expires.UTC().Format(time.RFC3339), o.Spec.Expires.Sub(now).Round(time.Second))
	}
	return b.String()
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// readSpecArg reads an envelope from a file or, for "-", from stdin, capped
// at packer.MaxEnvelopeSize.
func (a *app) readSpecArg(path string) ([]byte, error) {
	var r io.Reader
	name := path
	if path == "-" || path == "" {
		r, name = a.stdin, "stdin"
	} else {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("read spec: %w", err)
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, packer.MaxEnvelopeSize+1))
	if err != nil {
		return nil, fmt.Errorf("read spec from %s: %w", name, err)
	}
	if len(data) > packer.MaxEnvelopeSize {
		return nil, fmt.Errorf("read spec from %s: larger than %d bytes", name, packer.MaxEnvelopeSize)
	}
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return nil, errors.New("read spec from " + name + ": empty")
	}
	return data, nil
}
