package main

import (
	"context"
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/mms-io/mms/governor"
)

// newGovernorCmd is `mms governor`: manage the fleet-wide download limits
// that spec entries name in their governor field.
func (a *app) newGovernorCmd() *cobra.Command {
	var nf natsFlags
	cmd := &cobra.Command{
		Use:   "governor",
		Short: "Manage governors: fleet-wide limits on concurrent downloads",
		Long: `A governor limits how many nodes download an archive at the same time. A
spec entry names one in its governor field; agents take a slot before
downloading and free it after. A governor is the JetStream stream
` + governor.StreamPrefix + `NAME on subject ` + governor.SubjectPrefix + `NAME; agents never create one.

A node that crashes while holding a slot keeps it until the expiry passes,
so the expiry must be longer than the longest download.`,
		Example: `  mms governor add downloads 10 --expire 15m
  mms governor list
  mms governor reset downloads     # free every slot now
  mms governor rm downloads`,
	}
	nf.registerClient(cmd, cmd.PersistentFlags())
	cmd.AddCommand(a.newGovernorAddCmd(&nf), a.newGovernorListCmd(&nf), a.newGovernorRmCmd(&nf), a.newGovernorResetCmd(&nf))
	return cmd
}

// withJetStream connects for one governor command and runs f.
func (a *app) withJetStream(ctx context.Context, nf *natsFlags, f func(context.Context, jetstream.JetStream) error) error {
	return a.withConn(ctx, nf, func(ctx context.Context, _ natsConn, js jetstream.JetStream) error { return f(ctx, js) })
}

// withConn connects for one governor command and runs f with the
// connection too.
func (a *app) withConn(ctx context.Context, nf *natsFlags, f func(context.Context, natsConn, jetstream.JetStream) error) error {
	ctx, cancel := context.WithTimeout(ctx, nf.timeout)
	defer cancel()
	nc, err := nf.connect(ctx, a, "mms governor")
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := nc.JetStream()
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	if err := f(ctx, nc, js); err != nil {
		return nc.explain(err)
	}
	return nil
}

func (a *app) newGovernorAddCmd(nf *natsFlags) *cobra.Command {
	var (
		expire   time.Duration
		replicas int
	)
	cmd := &cobra.Command{
		Use:   "add NAME LIMIT",
		Short: "Create a governor, or change its limit, expiry or replicas",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			limit, err := strconv.ParseInt(args[1], 10, 64)
			if err != nil {
				return fmt.Errorf("limit %q: want a whole number of concurrent holders", args[1])
			}
			return a.withConn(cmd.Context(), nf, func(ctx context.Context, nc natsConn, js jetstream.JetStream) error {
				// The fleet's replicas unless told otherwise (mms init
				// gives every governor those too).
				f, err := fleetOf(ctx, nc, js, "", replicas)
				if err != nil {
					return fmt.Errorf("--replicas: %w", err)
				}
				info, err := governor.Add(ctx, js, args[0], limit, expire, f.Replicas)
				if err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "governor %s: limit %d, %d in use, expire %v, replicas %d\n", info.Name, info.Limit, info.InUse, info.Expire, info.Replicas)
				return nil
			})
		},
	}
	cmd.Flags().DurationVar(&expire, "expire", 5*time.Minute, "free a slot held longer than this (a crashed holder's)")
	cmd.Flags().IntVar(&replicas, "replicas", 0, "stream replicas (default: the spec bucket's, else 3 on a cluster and 1 on a single server)")
	return cmd
}

// governorJSON is one governor in `mms governor list --json`.
type governorJSON struct {
	Name     string `json:"name"`
	Limit    int64  `json:"limit"`
	InUse    uint64 `json:"in_use"`
	Expire   string `json:"expire"`
	Replicas int    `json:"replicas"`
}

func (a *app) newGovernorListCmd(nf *natsFlags) *cobra.Command {
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List governors with their limit, slots in use and expiry",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withJetStream(cmd.Context(), nf, func(ctx context.Context, js jetstream.JetStream) error {
				list, err := governor.List(ctx, js)
				if err != nil {
					return err
				}
				if jsonOut {
					out := make([]governorJSON, 0, len(list))
					for _, g := range list {
						out = append(out, governorJSON{Name: g.Name, Limit: g.Limit, InUse: g.InUse, Expire: g.Expire.String(), Replicas: g.Replicas})
					}
					return printJSON(a.stdout, out)
				}
				if len(list) == 0 {
					fmt.Fprintln(a.stderr, "no governors; create one with mms governor add NAME LIMIT")
					return nil
				}
				tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tLIMIT\tIN USE\tEXPIRE\tREPLICAS")
				for _, g := range list {
					fmt.Fprintf(tw, "%s\t%d\t%d\t%v\t%d\n", g.Name, g.Limit, g.InUse, g.Expire, g.Replicas)
				}
				return tw.Flush()
			})
		},
	}
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print JSON")
	return cmd
}

func (a *app) newGovernorRmCmd(nf *natsFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "rm NAME",
		Short: "Delete a governor; downloads that name it then fail until it is added again",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withJetStream(cmd.Context(), nf, func(ctx context.Context, js jetstream.JetStream) error {
				if err := governor.Remove(ctx, js, args[0]); err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "removed governor %s\n", args[0])
				return nil
			})
		},
	}
}

func (a *app) newGovernorResetCmd(nf *natsFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "reset NAME",
		Short: "Free every slot of a governor now (after holders crashed)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withJetStream(cmd.Context(), nf, func(ctx context.Context, js jetstream.JetStream) error {
				if err := governor.Reset(ctx, js, args[0]); err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "reset governor %s: every slot is free\n", args[0])
				return nil
			})
		},
	}
}
