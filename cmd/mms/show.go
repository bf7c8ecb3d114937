package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/spec"
)

// showView is the stable --json shape of `mms show`.
type showView struct {
	Format   string         `json:"format"`
	Serial   uint64         `json:"serial"`
	IssuedAt *time.Time     `json:"issued_at,omitempty"`
	Expires  *time.Time     `json:"expires,omitempty"`
	KeyIDs   []string       `json:"key_ids"`
	Digest   string         `json:"digest"`
	Machines []spec.Machine `json:"machines"`
}

func (a *app) newShowCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show SPEC",
		Short: "Decode a spec envelope for reading (without verifying it)",
		Long: `Decode a spec envelope for reading: format, serial, issue and expiry
times, the key ids that claim to have signed it, and its machines.

Nothing is verified: the key ids are claims. Use 'mms verify' to check
signatures. SPEC is a file or - for stdin. Passwords of v1 entries are
never printed.`,
		Example: `  mms show spec.json
  nats --context mms kv get MACHINES machines --raw | mms show - --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := a.readSpecArg(args[0])
			if err != nil {
				return err
			}
			o, err := packer.Inspect(data)
			if err != nil {
				return err
			}
			v := newShowView(o)
			if asJSON {
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(v)
			}
			return printShow(a, v, time.Now())
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON document instead of a table")
	return cmd
}

func newShowView(o *packer.Opened) showView {
	v := showView{
		Format:   o.Format.String(),
		Serial:   o.Spec.Serial,
		KeyIDs:   o.KeyIDs,
		Digest:   o.Digest,
		Machines: make([]spec.Machine, len(o.Spec.Machines)),
	}
	if v.KeyIDs == nil {
		v.KeyIDs = []string{}
	}
	if !o.Spec.IssuedAt.IsZero() {
		t := o.Spec.IssuedAt.UTC()
		v.IssuedAt = &t
	}
	if !o.Spec.Expires.IsZero() {
		t := o.Spec.Expires.UTC()
		v.Expires = &t
	}
	for i, m := range o.Spec.Machines {
		if m.Password != "" {
			m.Password = "REDACTED"
		}
		v.Machines[i] = m
	}
	return v
}

func printShow(a *app, v showView, now time.Time) error {
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "Format:\t%s\n", v.Format)
	if v.Format == packer.FormatV2.String() {
		fmt.Fprintf(tw, "Serial:\t%d\n", v.Serial)
	}
	if v.IssuedAt != nil {
		fmt.Fprintf(tw, "Issued:\t%s (%s ago)\n", v.IssuedAt.Format(time.RFC3339), now.Sub(*v.IssuedAt).Round(time.Second))
	}
	switch {
	case v.Expires == nil:
		fmt.Fprintf(tw, "Expires:\tnever\n")
	case v.Expires.Before(now):
		fmt.Fprintf(tw, "Expires:\t%s (EXPIRED %s ago)\n", v.Expires.Format(time.RFC3339), now.Sub(*v.Expires).Round(time.Second))
	default:
		fmt.Fprintf(tw, "Expires:\t%s (in %s)\n", v.Expires.Format(time.RFC3339), v.Expires.Sub(now).Round(time.Second))
	}
	keys := "none (unsigned)"
	if len(v.KeyIDs) > 0 {
		keys = strings.Join(v.KeyIDs, ", ") + " (claimed; run mms verify)"
	}
	fmt.Fprintf(tw, "Signed by:\t%s\n", keys)
	fmt.Fprintf(tw, "Digest:\tsha256:%s\n", v.Digest)
	fmt.Fprintf(tw, "Machines:\t%d\n", len(v.Machines))
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(v.Machines) == 0 {
		return nil
	}
	fmt.Fprintln(a.stdout)
	tw = tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSOURCE\tCHECKSUM\tMATCH")
	for _, m := range v.Machines {
		match := m.Match
		if match == "" {
			match = "(every node)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", m.Name, m.Source, short(m.Checksum), match)
	}
	return tw.Flush()
}

// short abbreviates a hex digest for tables.
func short(h string) string {
	if len(h) > 12 {
		return h[:12] + "…"
	}
	return h
}
