package bench

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"time"

	"github.com/mms-io/mms/agent"
	"github.com/mms-io/mms/manager"
	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/spec"
	"github.com/mms-io/mms/watchers"
)

// specSizes are the entries of the specs the spec rows open and plan.
func specSizes() []int { return []int{1000, 10000} }

// specRows measures what an agent does with a new spec before it installs
// anything: open it (signature, decode, replay ledger) and plan it
// (validate every entry, compile and evaluate every matcher), through the
// manager's Reconciler on a node no entry selects.
func (b *bench) specRows(ctx context.Context) []Row {
	reps := 10
	if b.cfg.Quick {
		reps = 3
	}
	var rows []Row
	var tooBig []int
	for _, n := range specSizes() {
		id, name := fmt.Sprintf("spec-%d", n), fmt.Sprintf("open + plan, %s-entry spec", thousands(n))
		target := ""
		if n == 10000 {
			target = "≤ 100 ms"
		}
		b.prog.stepf("%s", name)
		r, err := b.specRow(ctx, n, reps, id, name, target)
		switch {
		case err == nil:
		case isTooBig(err):
			tooBig = append(tooBig, n)
			r = Row{ID: id, Group: GroupSpec, Name: name, Target: target, Result: "cannot be sent", Note: err.Error()}
		default:
			r = failed(id, GroupSpec, name, target, err)
		}
		rows = append(rows, r)
	}
	if len(tooBig) == 0 {
		return rows
	}
	b.prog.stepf("open + plan of the largest spec that fits")
	n, err := largestSpec()
	if err != nil {
		return append(rows, failed("spec-max", GroupSpec, "open + plan, largest spec", "", err))
	}
	r, err := b.specRow(ctx, n, reps, "spec-max", fmt.Sprintf("open + plan, %s entries (the most that fit)", thousands(n)), "")
	if err != nil {
		return append(rows, failed("spec-max", GroupSpec, "open + plan, largest spec", "", err))
	}
	rows = append(rows, r)
	perEntry := r.Values["p50_ms"] / float64(n)
	for i := range rows {
		for _, big := range tooBig {
			if rows[i].ID == fmt.Sprintf("spec-%d", big) {
				est := perEntry * float64(big)
				rows[i].Values = map[string]float64{"entries": float64(big), "estimate_ms": est}
				rows[i].Result = fmt.Sprintf("cannot be sent; ≈ %.0f ms at the largest spec's cost per entry", est)
			}
		}
	}
	return rows
}

// tooBigError says a spec does not fit in an envelope agents read.
type tooBigError struct {
	entries, size int
}

func (e *tooBigError) Error() string {
	return fmt.Sprintf("a signed spec of %s entries (each with a source, both checksums and a matcher) is %.1f MB, and agents read envelopes of at most %d bytes (packer.MaxEnvelopeSize; the spec bucket's values are capped to match), so it cannot be sent",
		thousands(e.entries), float64(e.size)/1e6, packer.MaxEnvelopeSize)
}

func isTooBig(err error) bool {
	_, ok := err.(*tooBigError)
	return ok
}

// specRow measures opening and planning reps specs of n entries, each a
// new serial (so each is planned from scratch, as an agent does with every
// new spec).
func (b *bench) specRow(ctx context.Context, n, reps int, id, name, target string) (Row, error) {
	entries := specEntries(n)
	envs := make([][]byte, reps)
	for i := range envs {
		env, err := b.keys.seal(uint64(i+1), entries)
		if err != nil {
			return Row{}, err
		}
		if len(env) > packer.MaxEnvelopeSize {
			return Row{}, &tooBigError{entries: n, size: len(env)}
		}
		envs[i] = env
	}
	r, err := b.newPlanner(id)
	if err != nil {
		return Row{}, err
	}
	times := make([]time.Duration, 0, reps)
	for i, env := range envs {
		b.prog.countf("%d of %d", i+1, reps)
		start := time.Now()
		rep := r.Reconcile(ctx, env, manager.ReconcileOptions{})
		d := time.Since(start)
		if rep.Rejected != "" {
			return Row{}, fmt.Errorf("reconcile a %d-entry spec: rejected (%s): %v", n, rep.Rejected, rep.Err)
		}
		if len(rep.Machines) != n {
			return Row{}, fmt.Errorf("reconcile a %d-entry spec: %d results", n, len(rep.Machines))
		}
		for _, m := range rep.Machines {
			if m.Outcome != manager.EntrySkipped {
				return Row{}, fmt.Errorf("reconcile a %d-entry spec: entry %s: %s %s, want skipped (no entry selects the bench node)", n, m.Name, m.Outcome, m.Reason)
			}
		}
		times = append(times, d)
	}
	p50, top := median(times), maximum(times)
	row := Row{
		ID: id, Group: GroupSpec, Name: name, Target: target,
		Result: fmt.Sprintf("p50 %s  max %s  (%d specs, %.2f MB each)", ms(p50), ms(top), reps, float64(len(envs[0]))/1e6),
		Values: map[string]float64{"p50_ms": msValue(p50), "max_ms": msValue(top), "entries": float64(n), "envelope_bytes": float64(len(envs[0]))},
		Note: "manager.Reconciler.Reconcile of a new serial on a node none of the entries selects: signature check, decode, replay ledger write, " +
			"validation of every entry, compiling and evaluating every matcher (each entry has its own, identity('^edge-NNNNN[.]'))",
	}
	if target != "" {
		row.judge(p50 <= 100*time.Millisecond)
	}
	return row, nil
}

// newPlanner is a Reconciler as the agent's manager makes one, on empty
// directories: its installer and host are never asked for anything, since
// no entry selects the node.
func (b *bench) newPlanner(id string) (*manager.Reconciler, error) {
	dir, err := b.dir(id)
	if err != nil {
		return nil, err
	}
	pub := b.keys.priv.Public().(ed25519.PublicKey)
	trust, err := manager.NewTrust(manager.TrustConfig{Keys: []ed25519.PublicKey{pub}})
	if err != nil {
		return nil, err
	}
	machines, state := filepath.Join(dir, "machines"), filepath.Join(dir, "state")
	inst, err := manager.NewInstaller(manager.InstallerConfig{MachinesDir: machines, StateDir: state})
	if err != nil {
		return nil, err
	}
	return manager.NewReconciler(manager.ReconcilerConfig{
		Installer: inst, Host: plannerHost{machines}, StateDir: state, Trust: trust,
		Identity: "bench-node", Facts: agent.BuiltinFacts,
	})
}

// plannerHost is the host of the spec rows' Reconciler: no entry selects
// the node, so nothing may be loaded or unloaded.
type plannerHost struct{ dir string }

func (h plannerHost) MachinesDir() string { return h.dir }

func (plannerHost) LoadMachine(_ context.Context, name string, _ watchers.Definition) error {
	return fmt.Errorf("bench: the spec rows load no machine, but %q was to be loaded", name)
}

func (plannerHost) UnloadMachine(_ context.Context, name string) error {
	return fmt.Errorf("bench: the spec rows unload no machine, but %q was to be unloaded", name)
}

// specEntries returns n distinct entries, each with its own matcher.
func specEntries(n int) []spec.Machine {
	ms := make([]spec.Machine, n)
	for i := range ms {
		name := fmt.Sprintf("m%05d", i)
		sum := sha256.Sum256([]byte(name))
		sums := sha256.Sum256([]byte(name + "/SHA256SUMS"))
		ms[i] = spec.Machine{
			Name:           name,
			Source:         "nats://" + archiveBucket + "/" + name + ".tar.gz",
			Checksum:       hex.EncodeToString(sum[:]),
			VerifyChecksum: hex.EncodeToString(sums[:]),
			Match:          fmt.Sprintf(`identity('^edge-%05d[.]')`, i),
		}
	}
	return ms
}

// largestSpec returns the most entries a signed spec of specEntries can
// have within packer.MaxEnvelopeSize.
func largestSpec() (int, error) {
	_, priv, err := packer.GenerateKey(nil)
	if err != nil {
		return 0, err
	}
	size := func(n int) (int, error) {
		env, err := packer.Seal(packer.FormatV2, &spec.Spec{Serial: 1, IssuedAt: time.Now().UTC(), Machines: specEntries(n)}, priv)
		return len(env), err
	}
	// Sizes grow linearly: estimate from two sizes, then step down.
	s1, err := size(1000)
	if err != nil {
		return 0, err
	}
	s2, err := size(2000)
	if err != nil {
		return 0, err
	}
	per := float64(s2-s1) / 1000
	n := 1000 + int(float64(packer.MaxEnvelopeSize-s1)/per) + 1
	for {
		s, err := size(n)
		if err != nil {
			return 0, err
		}
		if s <= packer.MaxEnvelopeSize {
			return n, nil
		}
		n--
	}
}

func (plannerHost) MachineState(string) (watchers.MachineState, bool) {
	return watchers.MachineState{}, false
}
