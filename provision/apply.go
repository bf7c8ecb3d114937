package provision

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Action is what Apply did to a resource, or what Check found.
type Action string

// Actions.
const (
	// Created: the resource did not exist and was created (Apply).
	Created Action = "created"
	// Updated: it existed with other settings and was changed (Apply).
	Updated Action = "updated"
	// Unchanged: it existed with the fleet's settings (Apply).
	Unchanged Action = "unchanged"
	// OK: it exists with the fleet's settings and every replica is
	// current (Check).
	OK Action = "ok"
	// Missing: it does not exist (Check).
	Missing Action = "missing"
	// Differs: it exists with other settings, or some of its replicas
	// are offline or behind (Check).
	Differs Action = "differs"
	// Failed: it could not be created, changed or read; Err says why.
	Failed Action = "failed"
)

// Outcome is what Apply or Check did or found for one resource.
type Outcome struct {
	Resource Resource
	Action   Action
	// Changes are the settings Apply changed or Check found different.
	Changes []Change
	// Replicas are the problems of the resource's replicas Check found:
	// a server offline, a replica behind, no leader.
	Replicas []string
	// Err is why the resource failed.
	Err error
}

// JetStream's error codes for a stream that does not fit.
const (
	errCodeNoPeers               jetstream.ErrorCode = 10005
	errCodeInsufficientResources jetstream.ErrorCode = 10023
	errCodeInsufficientStorage   jetstream.ErrorCode = 10047
	errCodeReplicasNotClustered  jetstream.ErrorCode = 10074
)

// ErrNotClustered means more than one replica was asked of a server that
// is not part of a JetStream cluster.
var ErrNotClustered = errors.New("the NATS server is not part of a JetStream cluster")

// Replicas returns the replica count for resources created through nc:
// requested when it is at least 1, else 1 on a single server and 3 on a
// cluster. More than one replica on a server without a cluster is refused
// with [ErrNotClustered], naming the server.
func Replicas(nc *nats.Conn, requested int) (int, error) {
	clustered := nc.ConnectedClusterName() != ""
	switch {
	case requested < 0 || requested > MaxReplicas:
		return 0, fmt.Errorf("replicas %d: want 1 to %d", requested, MaxReplicas)
	case requested == 0 && clustered:
		return 3, nil
	case requested == 0:
		return 1, nil
	case requested > 1 && !clustered:
		return 0, fmt.Errorf("%d replicas: %w: %s (%s) keeps one copy of each stream; use --replicas 1, or run %d or more servers in a cluster (README, A fleet)",
			requested, ErrNotClustered, nc.ConnectedServerName(), nc.ConnectedUrlRedacted(), requested)
	}
	return requested, nil
}

// FleetReplicas is the replica count of the spec bucket the fleet already
// has on js, for a resource created on its own (an archive store, a
// governor, the status bucket) so it gets the same; found is false when
// there is no such bucket yet.
func FleetReplicas(ctx context.Context, js jetstream.JetStream, specBucket string) (replicas int, found bool, err error) {
	s, err := js.Stream(ctx, "KV_"+specBucket)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("read the replicas of bucket %s: %w", specBucket, err)
	}
	return max(s.CachedInfo().Config.Replicas, 1), true, nil
}

// HubDomain returns the JetStream domain of the servers js talks to, which
// a fleet with sites needs: the sites mirror the hub's domain.
func HubDomain(ctx context.Context, js jetstream.JetStream) (string, error) {
	info, err := js.AccountInfo(ctx)
	if err != nil {
		return "", fmt.Errorf("read the hub's jetstream domain: %w", err)
	}
	if info.Domain == "" {
		return "", errors.New("the hub's servers have no jetstream domain, which sites need to mirror the spec and archives from: set `jetstream { domain: hub }` in their configuration (mms nats-config --domain hub)")
	}
	return info.Domain, nil
}

// Apply creates every resource of f that js lacks and updates those whose
// settings differ, and says what it did with each. It goes on past a
// resource that fails; the error joins every failure. Running it again
// changes nothing.
func Apply(ctx context.Context, js jetstream.JetStream, f Fleet) ([]Outcome, error) {
	rs, err := f.Resources()
	if err != nil {
		return nil, err
	}
	out := make([]Outcome, 0, len(rs))
	var errs []error
	for _, r := range rs {
		o := apply(ctx, js, r)
		if o.Err != nil {
			errs = append(errs, o.Err)
		}
		out = append(out, o)
	}
	return out, errors.Join(errs...)
}

// Ensure creates the one resource of f of kind and name when js lacks it,
// and leaves an existing one as it is: for a command that needs it now
// (`mms archive create --upload`, `mms status --create`).
func Ensure(ctx context.Context, js jetstream.JetStream, f Fleet, kind, name string) (Outcome, error) {
	rs, err := f.Resources()
	if err != nil {
		return Outcome{}, err
	}
	for _, r := range rs {
		if r.Kind != kind || r.Name != name {
			continue
		}
		if _, err := js.Stream(ctx, r.Stream); err == nil {
			return Outcome{Resource: r, Action: Unchanged}, nil
		} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
			return Outcome{Resource: r, Action: Failed, Err: err}, fmt.Errorf("%s %s: %w", r.Kind, r.Name, err)
		}
		o := apply(ctx, js, r)
		return o, o.Err
	}
	return Outcome{}, fmt.Errorf("the fleet has no %s %s", kind, name)
}

// apply creates or updates one resource.
func apply(ctx context.Context, js jetstream.JetStream, r Resource) Outcome {
	o := Outcome{Resource: r}
	s, err := js.Stream(ctx, r.Stream)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		o.Action = Created
	case err != nil:
		return failed(o, "read", err)
	default:
		o.Changes = diff(r.Want, settingsOf(s.CachedInfo().Config))
		if len(o.Changes) == 0 {
			o.Action = Unchanged
			return o
		}
		o.Action = Updated
		for _, c := range o.Changes {
			if c.Setting == "mirror" {
				return failed(o, "update", fmt.Errorf("JetStream cannot change a stream's mirror (%s): delete the stream and run mms init again", c))
			}
		}
	}
	if err := put(ctx, js, r); err != nil {
		verb := "create"
		if o.Action == Updated {
			verb = "update"
		}
		return failed(o, verb, err)
	}
	return o
}

// put creates or updates r with its nats.go configuration.
func put(ctx context.Context, js jetstream.JetStream, r Resource) error {
	var err error
	switch {
	case r.kv != nil:
		_, err = js.CreateOrUpdateKeyValue(ctx, *r.kv)
	case r.obj != nil:
		_, err = js.CreateOrUpdateObjectStore(ctx, *r.obj)
	default:
		_, err = js.CreateOrUpdateStream(ctx, *r.stream)
	}
	return err
}

// failed marks o failed by err while doing verb, with a hint for the
// errors people meet.
func failed(o Outcome, verb string, err error) Outcome {
	o.Action = Failed
	r := o.Resource
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case errCodeInsufficientResources, errCodeInsufficientStorage, errCodeNoPeers:
			err = fmt.Errorf("%w: the cluster has fewer than %d JetStream servers with room for it, or its size limit (%s) does not fit their store", err, r.Want.Replicas, sizeOrNone(r.Want.MaxBytes))
		case errCodeReplicasNotClustered:
			err = fmt.Errorf("%w: %w", err, ErrNotClustered)
		}
	}
	if errors.Is(err, nats.ErrNoResponders) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) {
		err = fmt.Errorf("%w: no JetStream server answered (a site's server not linked to the hub, or a permission this user lacks)", err)
	}
	o.Err = fmt.Errorf("%s %s %s (stream %s): %w", verb, r.Kind, r.Name, r.Stream, err)
	return o
}

// Check compares every resource of f with what js has, and reports the
// replicas that are offline or behind; it changes nothing. A resource
// whose Action is not OK differs from what Apply would make.
func Check(ctx context.Context, js jetstream.JetStream, f Fleet) ([]Outcome, error) {
	rs, err := f.Resources()
	if err != nil {
		return nil, err
	}
	out := make([]Outcome, 0, len(rs))
	for _, r := range rs {
		out = append(out, check(ctx, js, r))
	}
	return out, nil
}

func check(ctx context.Context, js jetstream.JetStream, r Resource) Outcome {
	o := Outcome{Resource: r, Action: OK}
	s, err := js.Stream(ctx, r.Stream)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		o.Action = Missing
		return o
	case err != nil:
		return failed(o, "read", err)
	}
	si := s.CachedInfo()
	o.Changes = diff(r.Want, settingsOf(si.Config))
	o.Replicas = replicaProblems(si)
	if len(o.Changes) > 0 || len(o.Replicas) > 0 {
		o.Action = Differs
	}
	return o
}

// replicaProblems lists what is wrong with a stream's replicas: no
// leader, fewer peers than replicas, a peer offline or behind.
func replicaProblems(si *jetstream.StreamInfo) []string {
	want := max(si.Config.Replicas, 1)
	c := si.Cluster
	if c == nil {
		return nil
	}
	if want == 1 && c.Leader == "" && len(c.Replicas) == 0 {
		return nil // a single server's stream
	}
	var out []string
	if c.Leader == "" {
		out = append(out, "no leader")
	}
	if have := len(c.Replicas) + 1; c.Leader != "" && have < want {
		out = append(out, fmt.Sprintf("%d of %d replicas placed", have, want))
	}
	for _, p := range c.Replicas {
		switch {
		case p.Offline:
			out = append(out, "replica on "+p.Name+" offline")
		case !p.Current:
			out = append(out, fmt.Sprintf("replica on %s behind by %d operations", p.Name, p.Lag))
		}
	}
	return out
}

// Summary says in one line what outcomes hold: "5 resources: 2 created,
// 3 unchanged".
func Summary(outcomes []Outcome) string {
	counts := map[Action]int{}
	var order []Action
	for _, o := range outcomes {
		if counts[o.Action] == 0 {
			order = append(order, o.Action)
		}
		counts[o.Action]++
	}
	parts := make([]string, len(order))
	for i, a := range order {
		parts[i] = fmt.Sprintf("%d %s", counts[a], a)
	}
	n := len(outcomes)
	noun := "resources"
	if n == 1 {
		noun = "resource"
	}
	return fmt.Sprintf("%d %s: %s", n, noun, strings.Join(parts, ", "))
}
