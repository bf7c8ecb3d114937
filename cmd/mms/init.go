package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/mms-io/mms/governor"
	"github.com/mms-io/mms/provision"
)

// initOptions are the flags of `mms init`.
type initOptions struct {
	check     bool
	replicas  int
	bucket    string
	archives  []string
	governors []string
	sites     []string
	cluster   string
	tags      []string
	sizes     map[string]*string
	eventsAge time.Duration
}

// Size flags of `mms init`, each with its default.
var initSizeFlags = []struct {
	name, def, usage string
}{
	{"spec-max-bytes", provision.FormatSize(provision.DefaultSpecMaxBytes), "cap of the spec bucket"},
	{"status-max-bytes", provision.FormatSize(provision.DefaultStatusMaxBytes), "cap of the status bucket"},
	{"events-max-bytes", provision.FormatSize(provision.DefaultEventsMaxBytes), "cap of the events stream (the oldest events go first)"},
	{"archives-max-bytes", provision.FormatSize(provision.DefaultArchiveMaxBytes), "cap of each archive store"},
}

func (a *app) newInitCmd() *cobra.Command {
	o := initOptions{sizes: map[string]*string{}}
	var nf natsFlags
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create or update every bucket and stream a fleet uses, replicated",
		Long: `Create or update every JetStream resource an mms fleet uses, with the
same replicas everywhere, and print each with its settings:

  spec bucket     --bucket (MACHINES): the signed spec, 5 revisions
  status bucket   MACHINES_STATUS: one status document per agent
  events stream   CHORIA_MACHINE: machine events, for 'mms events --since'
  archives        --archive-bucket (ARCHIVES): object stores of archives
  governors       --governor NAME=LIMIT[/EXPIRE], and every governor that
                  exists already (its limit and expiry kept)

--replicas N keeps N copies of each on N servers of a cluster, so that any
one server may die; the default is 3 on a cluster and 1 on a single server,
where more than 1 is refused. Sizes and ages are printed and set with the
flags below; an existing resource with other settings is updated to these
(replicas too), one that matches is left alone, so running it again
changes nothing. Run it as the NATS admin, once and after every change of
flags; agents and the operator create nothing.

--check changes nothing: it compares what exists with what mms init would
make (replicas, sizes, ages, placement, mirrors and sources) and whether
every replica is online and current, and exits 2 naming every difference.

Edge sites: --site NAME (repeatable) is a site server in its own JetStream
domain NAME linked to this cluster (the hub) as a leafnode ('mms
nats-config --site'). mms init then also makes the site's resources, in
its domain through the hub's link: the spec bucket and the archive stores
as mirrors of the hub's, so the site's agents watch and download from
their own server; and its own status bucket, events stream and governors.
The hub's status bucket and events stream source the site's, so status and
events reach the hub when the link is up and wait at the site while it is
down. The hub's servers need a JetStream domain (mms nats-config --domain).`,
		Example: `  mms init --replicas 3 --governor downloads=10 --server nats://nats1:4222 --nkey admin.nk
  mms init --check --replicas 3 --governor downloads=10 ...   # exit 2 on drift
  mms init --replicas 3 --site paris --site berlin ...        # a hub with two edge sites
  mms init --events-max-age 72h --events-max-bytes 4GiB ...`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.runInit(cmd.Context(), &nf, o)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.check, "check", false, "change nothing: compare what exists with what init would make, exit 2 on any difference")
	f.IntVar(&o.replicas, "replicas", 0, "copies of each resource (default 3 on a cluster, 1 on a single server)")
	f.StringVar(&o.bucket, "bucket", provision.Defaults().SpecBucket, "KV bucket holding the signed spec")
	f.StringArrayVar(&o.archives, "archive-bucket", []string{provision.DefaultArchiveBucket}, "an object store of archives (repeatable)")
	f.StringArrayVar(&o.governors, "governor", nil, "a governor `NAME=LIMIT[/EXPIRE]` (repeatable; expiry default "+provision.DefaultGovernorExpire.String()+")")
	f.StringArrayVar(&o.sites, "site", nil, "an edge site's JetStream `DOMAIN` (repeatable): mirrors there, its status and events sourced here")
	f.StringVar(&o.cluster, "placement-cluster", "", "place every resource in the cluster `NAME`")
	f.StringArrayVar(&o.tags, "placement-tag", nil, "place every resource on servers with `TAG` (repeatable)")
	f.DurationVar(&o.eventsAge, "events-max-age", provision.DefaultEventsMaxAge, "how long events are kept (0: no limit)")
	for _, s := range initSizeFlags {
		o.sizes[s.name] = f.String(s.name, s.def, s.usage+" (KiB, MiB, GiB, …; -1: no limit)")
	}
	nf.registerClient(cmd, f)
	return cmd
}

// fleet turns the flags into the fleet to make, replicas not yet decided.
func (o initOptions) fleet() (provision.Fleet, error) {
	f := provision.Defaults()
	var errs []error
	f.SpecBucket, f.ArchiveBuckets, f.Sites, f.EventsMaxAge = o.bucket, o.archives, o.sites, o.eventsAge
	size := func(name string) int64 {
		n, err := provision.ParseSize(*o.sizes[name])
		if err != nil {
			errs = append(errs, fmt.Errorf("--%s: %w", name, err))
		}
		return n
	}
	f.SpecMaxBytes, f.StatusMaxBytes = size("spec-max-bytes"), size("status-max-bytes")
	f.EventsMaxBytes, f.ArchiveMaxBytes = size("events-max-bytes"), size("archives-max-bytes")
	for _, g := range o.governors {
		gov, err := parseGovernorFlag(g)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		f.Governors = append(f.Governors, gov)
	}
	if o.cluster != "" || len(o.tags) > 0 {
		f.Placement = &jetstream.Placement{Cluster: o.cluster, Tags: o.tags}
	}
	return f, errors.Join(errs...)
}

// parseGovernorFlag reads --governor NAME=LIMIT[/EXPIRE].
func parseGovernorFlag(s string) (provision.Governor, error) {
	name, rest, ok := strings.Cut(s, "=")
	if !ok {
		return provision.Governor{}, fmt.Errorf("--governor %q: want NAME=LIMIT or NAME=LIMIT/EXPIRE, such as downloads=10/15m", s)
	}
	limitText, expireText, hasExpire := strings.Cut(rest, "/")
	g := provision.Governor{Name: name, Expire: provision.DefaultGovernorExpire}
	limit, err := strconv.ParseInt(limitText, 10, 64)
	if err != nil {
		return g, fmt.Errorf("--governor %q: limit %q: want a whole number of concurrent holders", s, limitText)
	}
	g.Limit = limit
	if hasExpire {
		if g.Expire, err = time.ParseDuration(expireText); err != nil {
			return g, fmt.Errorf("--governor %q: expiry %q: want a duration such as 15m", s, expireText)
		}
	}
	return g, nil
}

// runInit applies (or, with --check, compares) the fleet the flags describe.
func (a *app) runInit(ctx context.Context, nf *natsFlags, o initOptions) error {
	f, err := o.fleet()
	if err != nil {
		return err
	}
	// Bad flags are refused before anything is asked of NATS; the
	// replicas are checked once the server says whether it is clustered.
	f.Replicas = 1
	if err := f.Validate(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, nf.timeout)
	defer cancel()
	nc, err := nf.connect(ctx, a, "mms init")
	if err != nil {
		return err
	}
	defer nc.Close()
	if f.Replicas, err = provision.Replicas(nc.Conn, o.replicas); err != nil {
		return fmt.Errorf("--replicas: %w", err)
	}
	js, err := nc.JetStream()
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	if err := keepGovernors(ctx, js, &f); err != nil {
		return nc.explain(err)
	}
	if err := f.Validate(); err != nil {
		return err
	}
	hubDomain := ""
	if len(f.Sites) > 0 {
		if hubDomain, err = provision.HubDomain(ctx, js); err != nil {
			return nc.explain(err)
		}
	}

	type section struct {
		title string
		js    jetstream.JetStream
		fleet provision.Fleet
	}
	sections := []section{{js: js, fleet: f}}
	for _, site := range f.Sites {
		sjs, err := jetstream.NewWithDomain(nc.Conn, site)
		if err != nil {
			return fmt.Errorf("jetstream domain %s: %w", site, err)
		}
		sections = append(sections, section{
			title: fmt.Sprintf("site %s (JetStream domain %s, through the hub's leafnode; mirrors of domain %s):", site, site, hubDomain),
			js:    sjs, fleet: f.Site(hubDomain),
		})
	}
	var all []provision.Outcome
	var errs []error
	for i, s := range sections {
		if s.title != "" {
			fmt.Fprintf(a.stdout, "\n%s\n", s.title)
		} else if i == 0 {
			fmt.Fprintf(a.stdout, "on %s (%s):\n", nc.ConnectedUrlRedacted(), replicasText(f.Replicas))
		}
		var outcomes []provision.Outcome
		var err error
		if o.check {
			outcomes, err = provision.Check(ctx, s.js, s.fleet)
		} else {
			outcomes, err = provision.Apply(ctx, s.js, s.fleet)
		}
		if len(outcomes) > 0 {
			printOutcomes(a.stdout, outcomes)
		}
		if err != nil {
			errs = append(errs, err)
		}
		all = append(all, outcomes...)
	}
	fmt.Fprintf(a.stdout, "%s\n", provision.Summary(all))
	if err := errors.Join(errs...); err != nil {
		return nc.explain(fmt.Errorf("init: %w", err))
	}
	if !o.check {
		return nil
	}
	var bad []string
	for _, o := range all {
		if o.Action != provision.OK {
			bad = append(bad, o.Resource.Stream)
		}
	}
	if len(bad) > 0 {
		return &exitError{code: 2, err: fmt.Errorf("%d of %d resources differ from what mms init would make (%s): run mms init with the same flags", len(bad), len(all), strings.Join(bad, ", "))}
	}
	return nil
}

// keepGovernors adds to f every governor that exists on js and f does not
// name, with its limit and expiry, so init gives it the fleet's replicas
// and check compares it.
func keepGovernors(ctx context.Context, js jetstream.JetStream, f *provision.Fleet) error {
	existing, err := governor.List(ctx, js)
	if err != nil {
		return err
	}
	for _, g := range existing {
		if slices.ContainsFunc(f.Governors, func(n provision.Governor) bool { return n.Name == g.Name }) {
			continue
		}
		f.Governors = append(f.Governors, provision.Governor{Name: g.Name, Limit: g.Limit, Expire: g.Expire})
	}
	return nil
}

// replicasText says how many copies: "3 replicas".
func replicasText(n int) string {
	if n == 1 {
		return "1 replica"
	}
	return fmt.Sprintf("%d replicas", n)
}

// printOutcomes writes one line per resource: what it is, its stream, its
// replicas and settings, and what init did or check found.
func printOutcomes(w io.Writer, outcomes []provision.Outcome) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RESOURCE\tNAME\tSTREAM\tREPLICAS\tSETTINGS\tRESULT")
	for _, o := range outcomes {
		r := o.Resource
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", r.Kind, r.Name, r.Stream, r.Want.Replicas, r.Want.String(), outcomeText(o))
	}
	_ = tw.Flush()
}

// outcomeText is the RESULT column: the action and what changed or
// differs.
func outcomeText(o provision.Outcome) string {
	var details []string
	for _, c := range o.Changes {
		details = append(details, c.String())
	}
	details = append(details, o.Replicas...)
	if o.Err != nil {
		return string(o.Action) + " (see below)"
	}
	if len(details) == 0 {
		return string(o.Action)
	}
	return string(o.Action) + ": " + strings.Join(details, "; ")
}

// fleetOf is the fleet a command that creates one resource on its own
// (put --create, status --create, archive create --upload, governor add)
// takes its settings from: mms init's defaults, with replicas as given
// (refused above 1 on a single server), else those of the spec bucket
// the fleet already has, else 3 on a cluster and 1 on a single server.
func fleetOf(ctx context.Context, nc natsConn, js jetstream.JetStream, specBucket string, replicas int) (provision.Fleet, error) {
	f := provision.Defaults()
	if specBucket != "" {
		f.SpecBucket = specBucket
	}
	var err error
	if replicas > 0 {
		f.Replicas, err = provision.Replicas(nc.Conn, replicas)
		return f, err
	}
	n, found, err := provision.FleetReplicas(ctx, js, f.SpecBucket)
	if err != nil {
		return f, nc.explain(err)
	}
	if found {
		f.Replicas = n
		return f, nil
	}
	f.Replicas, err = provision.Replicas(nc.Conn, 0)
	return f, err
}

// ensure creates the resource kind name of the fleet when it is missing,
// as mms init would, and says so on stderr.
func (a *app) ensure(ctx context.Context, nc natsConn, js jetstream.JetStream, f provision.Fleet, kind, name string) error {
	o, err := provision.Ensure(ctx, js, f, kind, name)
	if err != nil {
		return nc.explain(fmt.Errorf("%w; the NATS admin creates every resource with 'mms init'", err))
	}
	if o.Action == provision.Created {
		fmt.Fprintf(a.stderr, "created %s %s (stream %s, %s: %s); 'mms init' makes every resource of the fleet\n",
			kind, name, o.Resource.Stream, replicasText(o.Resource.Want.Replicas), o.Resource.Want)
	}
	return nil
}
