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
// manager's Reconciler on a node no entry selects. Each size has two rows:
// the first spec a node sees (every matcher compiled) and a next serial
// that changes one entry's version, the usual update (the node reuses the
// matchers it compiled).
func (b *bench) specRows(ctx context.Context) []Row {
	reps := 10
	if b.cfg.Quick {
		reps = 3
	}
	var rows []Row
	var tooBig []int
	for _, n := range specSizes() {
		target := ""
		if n == 10000 {
			target = "≤ 100 ms"
		}
		b.prog.stepf("open + plan, %s-entry spec", thousands(n))
		pair, err := b.specPair(ctx, n, reps, fmt.Sprintf("spec-%d", n), fmt.Sprintf("%s-entry spec", thousands(n)), target)
		switch {
		case err == nil:
		case isTooBig(err):
			tooBig = append(tooBig, n)
			pair = [2]Row{
				{ID: fmt.Sprintf("spec-%d", n), Group: GroupSpec, Name: fmt.Sprintf("open + plan, %s-entry spec, first seen", thousands(n)), Target: target, Result: "cannot be sent", Note: err.Error()},
				{ID: fmt.Sprintf("spec-%d-next", n), Group: GroupSpec, Name: fmt.Sprintf("open + plan, %s-entry spec, next serial", thousands(n)), Result: "cannot be sent"},
			}
		default:
			pair = [2]Row{
				failed(fmt.Sprintf("spec-%d", n), GroupSpec, fmt.Sprintf("open + plan, %s-entry spec", thousands(n)), target, err),
				failed(fmt.Sprintf("spec-%d-next", n), GroupSpec, fmt.Sprintf("open + plan, %s-entry spec, next serial", thousands(n)), "", err),
			}
		}
		rows = append(rows, pair[:]...)
	}
	if len(tooBig) == 0 {
		return rows
	}
	b.prog.stepf("open + plan of the largest spec that fits")
	n, err := largestSpec()
	if err != nil {
		return append(rows, failed("spec-max", GroupSpec, "open + plan, largest spec", "", err))
	}
	pair, err := b.specPair(ctx, n, reps, "spec-max", fmt.Sprintf("%s-entry spec (the most that fit)", thousands(n)), "")
	if err != nil {
		return append(rows, failed("spec-max", GroupSpec, "open + plan, largest spec", "", err))
	}
	rows = append(rows, pair[:]...)
	for i := range rows {
		for _, big := range tooBig {
			from := pair[0]
			if rows[i].ID == fmt.Sprintf("spec-%d-next", big) {
				from = pair[1]
			} else if rows[i].ID != fmt.Sprintf("spec-%d", big) {
				continue
			}
			est := from.Values["p50_ms"] / float64(n) * float64(big)
			rows[i].Values = map[string]float64{"entries": float64(big), "estimate_ms": est}
			rows[i].Result = fmt.Sprintf("cannot be sent; ≈ %.0f ms at the largest spec's cost per entry", est)
		}
	}
	return rows
}

// tooBigError says a spec does not fit in an envelope agents read.
type tooBigError struct {
	entries, size int
}

func (e *tooBigError) Error() string {
	return fmt.Sprintf("a signed spec of %s entries (each with a source, both checksums and a matcher) is %.1f MB even compressed, and agents read envelopes of at most %d bytes (packer.MaxEnvelopeSize; the spec bucket's values are capped to match), so it cannot be sent",
		thousands(e.entries), float64(e.size)/1e6, packer.MaxEnvelopeSize)
}

func isTooBig(err error) bool {
	_, ok := err.(*tooBigError)
	return ok
}

// specPair measures opening and planning specs of n entries: reps times the
// first spec a node sees (a new Reconciler each time, so every matcher is
// compiled), then reps new serials on one node, each changing one entry's
// version.
func (b *bench) specPair(ctx context.Context, n, reps int, id, name, target string) ([2]Row, error) {
	entries := specEntries(n)
	envs := make([][]byte, reps+1)
	for i := range envs {
		if i > 0 {
			// One entry's new version: its checksums change, its matcher does not.
			m := &entries[(i-1)%n]
			m.Checksum, m.VerifyChecksum = m.VerifyChecksum, m.Checksum
		}
		env, err := b.keys.seal(uint64(i+1), entries)
		if err != nil {
			return [2]Row{}, err
		}
		if len(env) > packer.MaxEnvelopeSize {
			return [2]Row{}, &tooBigError{entries: n, size: len(env)}
		}
		envs[i] = env
	}
	reconcile := func(r *manager.Reconciler, env []byte) (time.Duration, error) {
		start := time.Now()
		rep := r.Reconcile(ctx, env, manager.ReconcileOptions{})
		d := time.Since(start)
		if rep.Rejected != "" {
			return 0, fmt.Errorf("reconcile a %d-entry spec: rejected (%s): %v", n, rep.Rejected, rep.Err)
		}
		if len(rep.Machines) != n {
			return 0, fmt.Errorf("reconcile a %d-entry spec: %d results", n, len(rep.Machines))
		}
		for _, m := range rep.Machines {
			if m.Outcome != manager.EntrySkipped {
				return 0, fmt.Errorf("reconcile a %d-entry spec: entry %s: %s %s, want skipped (no entry selects the bench node)", n, m.Name, m.Outcome, m.Reason)
			}
		}
		return d, nil
	}
	var first, next []time.Duration
	var r *manager.Reconciler
	for i := range reps {
		b.prog.countf("first seen, %d of %d", i+1, reps)
		var err error
		if r, err = b.newPlanner(id); err != nil {
			return [2]Row{}, err
		}
		d, err := reconcile(r, envs[0])
		if err != nil {
			return [2]Row{}, err
		}
		first = append(first, d)
	}
	for i, env := range envs[1:] {
		b.prog.countf("next serial, %d of %d", i+1, reps)
		d, err := reconcile(r, env)
		if err != nil {
			return [2]Row{}, err
		}
		next = append(next, d)
	}
	mb := float64(len(envs[0])) / 1e6
	row := func(id, name, target, what string, times []time.Duration) Row {
		p50, top := median(times), maximum(times)
		r := Row{
			ID: id, Group: GroupSpec, Name: name, Target: target,
			Result: fmt.Sprintf("p50 %s  max %s  (%d specs, %.2f MB each)", ms(p50), ms(top), len(times), mb),
			Values: map[string]float64{"p50_ms": msValue(p50), "max_ms": msValue(top), "entries": float64(n), "envelope_bytes": float64(len(envs[0]))},
			Note: "manager.Reconciler.Reconcile of " + what + " on a node none of the entries selects: signature check, decompression (a spec too large for one plain envelope is sealed compressed), decode, replay ledger write, " +
				"validation of every entry, evaluating every matcher (each entry has its own, identity('^edge-NNNNN[.]'))" + compressedNote(envs[0]),
		}
		if target != "" {
			r.judge(p50 <= 100*time.Millisecond)
		}
		return r
	}
	return [2]Row{
		row(id, "open + plan, "+name+", first seen", target, "the first spec a node sees (every matcher compiled)", first),
		row(id+"-next", "open + plan, "+name+", next serial", "", "a new serial that changes one entry's version (the matchers compiled for the previous spec are reused)", next),
	}, nil
}

// compressedNote says whether env was sealed compressed.
func compressedNote(env []byte) string {
	if o, err := packer.Inspect(env); err == nil && o.Compressed {
		return "; this spec travels compressed (zstd inside the signed envelope)"
	}
	return ""
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
