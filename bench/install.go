package bench

import (
	"context"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/mms-io/mms/internal/benchtree"
	"github.com/mms-io/mms/spec"
)

// installSource is one way an agent downloads the install row's archive.
type installSource struct {
	name  string
	entry func(a archive) spec.Machine
	env   []string // added to the agent's environment
}

// installRun is what one source measured: puts to running of a first
// install, of the first upgrade (the previous tree is kept, nothing older
// to retire) and of later upgrades (each also retires the older previous
// tree).
type installRun struct {
	first, firstUpgrade, upgrade []time.Duration
}

// installVersions is how many versions of the big machine a round
// installs: a first install, then upgrades.
const installVersions = 4

// installRows measures installing the big archive by an agent process over
// each source, and the shell pipeline on the same archive.
func (b *bench) installRows(ctx context.Context) []Row {
	files, rounds := benchtree.Files, 3
	if b.cfg.Quick {
		files, rounds = 100, 1
	}
	const target = "≥ 1.5× the shell pipeline's speed"
	rows, err := b.measureInstall(ctx, files, rounds, target)
	if err != nil {
		return []Row{failed("install", GroupInstall, "install", target, err)}
	}
	return rows
}

func (b *bench) measureInstall(ctx context.Context, files, rounds int, target string) ([]Row, error) {
	b.prog.stepf("install: writing a %s-file tree and %d versions of its archive", thousands(files), installVersions)
	dir, err := b.dir("install")
	if err != nil {
		return nil, err
	}
	tree := filepath.Join(dir, "tree", bigName)
	total, err := bigTree(tree, files)
	if err != nil {
		return nil, err
	}
	versions := make([]archive, installVersions)
	for i := range versions {
		if versions[i], err = bigArchive(ctx, tree, total, bigVersion(i)); err != nil {
			return nil, err
		}
	}
	env, err := startNATS(ctx, dir, 1)
	if err != nil {
		return nil, err
	}
	defer env.close()
	obs := env.obs
	probeArchive, err := smallArchive(ctx, filepath.Join(dir, "probe"), probeName, "1.0.0", timerMachine)
	if err != nil {
		return nil, err
	}
	probe, err := env.upload(ctx, probeArchive, "probe.tar.gz")
	if err != nil {
		return nil, err
	}
	sources, stop, err := b.installSources(ctx, env, dir, versions)
	if err != nil {
		return nil, err
	}
	defer stop()
	// Nothing a round writes is deleted before every round ran: deleting
	// a tree makes work for the file system that falls on whatever creates
	// files next (on an ext4 without a journal, every file created in the
	// next minute scans past the inodes just freed; here creates cost up to
	// a millisecond each after a 2,000-file tree was deleted). An agent's
	// upgrades still pay for the trees it retires itself.
	var later graveyard
	defer later.clear()
	shell, err := newShellPipeline(dir, versions[0], &later)
	if err != nil {
		return nil, err
	}
	runs := map[string]*installRun{}
	var shellTimes []time.Duration
	for r := range rounds {
		for _, src := range sources {
			b.prog.stepf("install over %s: round %d of %d", src.name, r+1, rounds)
			run := runs[src.name]
			if run == nil {
				run = &installRun{}
				runs[src.name] = run
			}
			if err := b.installRound(ctx, env, obs, src, probe, versions, fmt.Sprintf("install-%s-%d", src.name, r+1), run, &later); err != nil {
				return nil, fmt.Errorf("install over %s: %w", src.name, err)
			}
			b.prog.stepf("install: the shell pipeline, %d of %d", len(shellTimes)+1, rounds*len(sources))
			d, err := shell.run(ctx)
			if err != nil {
				return nil, err
			}
			shellTimes = append(shellTimes, d)
		}
	}

	shellMedian := median(shellTimes)
	mb := float64(total) / 1e6
	size := fmt.Sprintf("%.0f MB / %s files", mb, thousands(files))
	rows := []Row{{
		ID: "install-shell", Group: GroupInstall,
		Name:   "shell pipeline, " + size,
		Result: fmt.Sprintf("%s  (%.0f MB/s, median of %d)", ms(shellMedian), mb/shellMedian.Seconds(), len(shellTimes)),
		Values: map[string]float64{"median_ms": msValue(shellMedian), "max_ms": msValue(maximum(shellTimes)), "mb": mb, "files": float64(files)},
		Note:   "the yardstick: " + shellScriptSummary + ", from a local file (no download), into a new directory",
	}}
	for _, src := range sources {
		run := runs[src.name]
		for _, kind := range []struct {
			id, what string
			times    []time.Duration
			extra    map[string]float64
		}{
			{"first", "first install", run.first, nil},
			{"upgrade", "upgrade", run.upgrade, map[string]float64{"first_upgrade_ms": msValue(median(run.firstUpgrade))}},
		} {
			d := median(kind.times)
			ratio := shellMedian.Seconds() / d.Seconds()
			row := Row{
				ID: "install-" + src.name + "-" + kind.id, Group: GroupInstall,
				Name:   fmt.Sprintf("%s over %s, %s", kind.what, src.name, size),
				Result: fmt.Sprintf("%s  (%.0f MB/s) = %.2f× the shell's speed", ms(d), mb/d.Seconds(), ratio),
				Target: target,
				Values: map[string]float64{"median_ms": msValue(d), "max_ms": msValue(maximum(kind.times)), "n": float64(len(kind.times)),
					"shell_ms": msValue(shellMedian), "speed_vs_shell": ratio},
			}
			for k, v := range kind.extra {
				row.Values[k] = v
			}
			row.judge(ratio >= 1.5)
			rows = append(rows, row)
		}
	}
	rows[1].Note = fmt.Sprintf("from the KV put to the host's \"loaded\" event of the new version, by an agent process (download, checks, extraction, flush, swap, load); "+
		"median of %d rounds; an upgrade also retires the older previous tree (the first upgrade of a round, with none to retire, is first_upgrade_ms in --json); "+
		"no round's trees (the agent's directories, the shell's) are deleted before the last round ran: an agent's upgrades pay only for the trees it retires itself", rounds)
	return rows, nil
}

// bigVersion is the version of the i-th archive of the big machine.
func bigVersion(i int) string { return fmt.Sprintf("%d.0.0", i+1) }

// probeName is a small machine an install round's agent runs first, so
// the round knows the agent is up before it times anything.
const probeName = "probe"

// installSources uploads the versions to the object store and serves them
// over loopback http and https; stop stops the web servers.
func (b *bench) installSources(ctx context.Context, env *natsEnv, dir string, versions []archive) ([]installSource, func(), error) {
	objects := map[string]spec.Machine{}
	mux := http.NewServeMux()
	for _, a := range versions {
		name := fmt.Sprintf("%s-%s.tar.gz", bigName, a.version)
		e, err := env.upload(ctx, a, name)
		if err != nil {
			return nil, nil, fmt.Errorf("bench: %w", err)
		}
		objects[a.info.Checksum] = e
		mux.Handle("/"+name, serveBytes(name, a.data))
	}
	plain := httptest.NewServer(mux)
	tls := httptest.NewTLSServer(mux)
	stop := func() { plain.Close(); tls.Close() }
	ca := filepath.Join(dir, "https-ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tls.Certificate().Raw}), 0o644); err != nil {
		stop()
		return nil, nil, fmt.Errorf("bench: %w", err)
	}
	web := func(base string) func(a archive) spec.Machine {
		return func(a archive) spec.Machine {
			return a.entry(fmt.Sprintf("%s/%s-%s.tar.gz", base, bigName, a.version))
		}
	}
	return []installSource{
		{name: "http", entry: web(plain.URL)},
		// The agent trusts the test server's certificate through the
		// standard variable Go reads its system roots from.
		{name: "https", entry: web(tls.URL), env: []string{"SSL_CERT_FILE=" + ca}},
		{name: "nats", entry: func(a archive) spec.Machine { return objects[a.info.Checksum] }},
	}, stop, nil
}

// installRound starts a fresh agent process watching key, waits until it
// runs the probe, then puts each version in turn, timing each from the put
// until the agent runs it.
func (b *bench) installRound(ctx context.Context, env *natsEnv, obs *observer, src installSource, probe spec.Machine, versions []archive, key string, run *installRun, later *graveyard) error {
	state, err := b.dir("agent-" + key)
	if err != nil {
		return err
	}
	later.add(state)
	serial := uint64(1)
	first, err := b.keys.seal(serial, []spec.Machine{probe})
	if err != nil {
		return err
	}
	if err := env.put(ctx, key, first); err != nil {
		return err
	}
	agent, err := b.startChild(ctx, b.agentArgs(env.urls, state, key, key), src.env)
	if err != nil {
		return err
	}
	defer agent.stop()
	wait, cancel := untilExit(ctx, agent) // an agent that stops fails the row at once
	defer cancel()
	if _, err := obs.awaitOne(wait, key, probeName, "1.0.0", time.Minute); err != nil {
		if aerr, ok := agent.exited(); ok {
			return aerr
		}
		return err
	}
	for i, a := range versions {
		serial++
		next, err := b.keys.seal(serial, []spec.Machine{probe, src.entry(a)})
		if err != nil {
			return err
		}
		// Start from a settled agent (the tree two versions back deleted,
		// its status written: puts seconds apart, not back to back, as an
		// operator makes them) and from clean disks: the flush at the end
		// of an install must not pay for the bench's own writes.
		if !quiesce(ctx, time.Minute, agent.cpu) {
			return context.Cause(ctx)
		}
		syncDisks()
		start := time.Now()
		if err := env.put(ctx, key, next); err != nil {
			return err
		}
		at, err := obs.awaitOne(wait, key, bigName, a.version, 5*time.Minute)
		if err != nil {
			if aerr, ok := agent.exited(); ok {
				return aerr
			}
			return err
		}
		d := at.Sub(start)
		switch i {
		case 0:
			run.first = append(run.first, d)
		case 1:
			run.firstUpgrade = append(run.firstUpgrade, d)
		default:
			run.upgrade = append(run.upgrade, d)
		}
	}
	return agent.stop()
}

// shellScriptSummary says what the shell pipeline does.
const shellScriptSummary = "sha256sum -c of the archive, tar xzf, sha256sum -c of SHA256SUMS, one sync"

// shellScript is the shell's way to install an archive it trusts by
// checksum: check the archive, unpack it, check every file, flush.
const shellScript = `echo "$SUM  $ARCHIVE" | sha256sum -c --quiet - && tar xzf "$ARCHIVE" -C "$DEST" &&
cd "$DEST/` + bigName + `" && sha256sum -c --quiet SHA256SUMS && sync`

// shellPipeline runs shellScript on one archive.
type shellPipeline struct {
	archive, sum, dir string
	n                 int
	later             *graveyard // takes each run's directory
}

// newShellPipeline writes a to a file under dir for the pipeline; later
// takes the directory of each run.
func newShellPipeline(dir string, a archive, later *graveyard) (*shellPipeline, error) {
	for _, tool := range []string{"sh", "sha256sum", "tar", "sync"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("bench: the shell pipeline needs %s: %w", tool, err)
		}
	}
	p := &shellPipeline{archive: filepath.Join(dir, "shell.tar.gz"), sum: a.info.Checksum, dir: dir, later: later}
	if err := os.WriteFile(p.archive, a.data, 0o644); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	return p, nil
}

// run times one pipeline into a new directory, which it leaves to later.
func (p *shellPipeline) run(ctx context.Context) (time.Duration, error) {
	p.n++
	dest := filepath.Join(p.dir, fmt.Sprintf("shell-%d", p.n))
	if err := os.Mkdir(dest, 0o755); err != nil {
		return 0, fmt.Errorf("bench: %w", err)
	}
	p.later.add(dest)
	cmd := exec.CommandContext(ctx, "sh", "-c", shellScript)
	cmd.Env = append(os.Environ(), "SUM="+p.sum, "ARCHIVE="+p.archive, "DEST="+dest)
	syncDisks()
	start := time.Now()
	out, err := cmd.CombinedOutput()
	d := time.Since(start)
	if err != nil {
		return 0, fmt.Errorf("bench: shell pipeline: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return d, nil
}

// graveyard holds directories to delete later, all at once.
type graveyard struct{ dirs []string }

// add schedules dir for deletion.
func (g *graveyard) add(dir string) { g.dirs = append(g.dirs, dir) }

// clear deletes every directory added.
func (g *graveyard) clear() {
	for _, d := range g.dirs {
		_ = os.RemoveAll(d)
	}
	g.dirs = nil
}
