package agent

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/fsnotify/fsnotify"

	"github.com/mms-io/mms/machine"
	"github.com/mms-io/mms/spec"
)

// hostLoop is the state Host.Run owns: only its goroutine touches it, so it
// needs no lock (h.machines, read by States, has one).
type hostLoop struct {
	h       *Host
	wg      sync.WaitGroup // every machine's Run
	stores  map[string]*FileDataStore
	skip    map[string]fingerprint // failed or unloaded; retried when changed
	fw      *fsnotify.Watcher
	watched map[string]uint64 // dir → inode watched
	// stamps are the directories and machine.yaml files as they were
	// when last read, by machine name: a rescan reads a machine.yaml again
	// only when its stamp changed (a hundred machines rescanned every ten
	// seconds were a hundred reads and hashes).
	stamps map[string]stamped
	// read reads a machine directory (readMachineDir; tests count calls).
	read func(dir string) ([]byte, fingerprint, error)
}

// stamped is a machine directory's stamp and the fingerprint read with it.
type stamped struct {
	stamp yamlStamp
	fp    fingerprint
}

// yamlStamp identifies a machine directory and its machine.yaml without
// reading the file: the directory's inode (installs swap whole
// directories) and the file's inode, size and modification time.
type yamlStamp struct {
	dirDev, dirIno, dev, ino uint64
	size, mtime              int64
}

// stampMachineDir stats dir and its machine.yaml.
func stampMachineDir(dir string) (yamlStamp, error) {
	dst, err := os.Stat(dir)
	if err != nil {
		return yamlStamp{}, err
	}
	fst, err := os.Stat(filepath.Join(dir, machine.File))
	if err != nil {
		return yamlStamp{}, err
	}
	var s yamlStamp
	s.dirDev, s.dirIno = fileID(dst)
	s.dev, s.ino = fileID(fst)
	s.size, s.mtime = fst.Size(), fst.ModTime().UnixNano()
	return s, nil
}

func newHostLoop(h *Host) *hostLoop {
	return &hostLoop{
		h:       h,
		stores:  map[string]*FileDataStore{},
		skip:    map[string]fingerprint{},
		watched: map[string]uint64{},
		stamps:  map[string]stamped{},
		read:    readMachineDir,
	}
}

// fingerprint identifies one installed version of a machine directory:
// machine.yaml's sha256 and the directory's inode (installs swap whole
// directories, so a new inode is a new version even with the same yaml).
type fingerprint struct {
	sum [32]byte
	dev uint64
	ino uint64
}

// skipDir reports whether a machines-dir entry is never a machine: dot
// directories, tmp and *-temp (staging areas).
func skipDir(name string) bool {
	return strings.HasPrefix(name, ".") || name == "tmp" || strings.HasSuffix(name, "-temp")
}

// readMachineDir reads dir's machine.yaml (capped) and fingerprints it.
func readMachineDir(dir string) ([]byte, fingerprint, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fingerprint{}, err
	}
	if !st.IsDir() {
		return nil, fingerprint{}, fmt.Errorf("%s is not a directory", dir)
	}
	data, err := readCapped(filepath.Join(dir, machine.File), machine.MaxSize)
	if err != nil {
		return nil, fingerprint{}, err
	}
	dev, ino := fileID(st)
	return data, fingerprint{sum: sha256.Sum256(data), dev: dev, ino: ino}, nil
}

// store returns the machine's data store, shared by every version of the
// machine so a reload never reads data the old version is still writing.
func (l *hostLoop) store(name string) (*FileDataStore, error) {
	if s, ok := l.stores[name]; ok {
		return s, nil
	}
	s, err := OpenDataStore(filepath.Join(l.h.cfg.DataDir, name), l.h.log.With("machine", name))
	if err != nil {
		return nil, err
	}
	l.stores[name] = s
	return s, nil
}

func (l *hostLoop) newMachine(def *machine.Definition, dir string) (*Machine, error) {
	data, err := l.store(def.Name)
	if err != nil {
		return nil, fmt.Errorf("machine %q: %w", def.Name, err)
	}
	return NewMachine(def, MachineConfig{
		Dir: dir, Identity: l.h.cfg.Identity, Log: l.h.log, Publisher: l.h.cfg.Publisher,
		Data: data, Facts: l.h.cfg.Facts, Conn: l.h.cfg.Conn,
		OnReconnect: l.h.cfg.OnReconnect, Host: l.h, Metrics: l.h.cfg.Metrics,
		OnChange: l.h.cfg.OnChange,
	})
}

// start runs m under ctx and records it, replacing nothing.
func (l *hostLoop) start(ctx context.Context, m *Machine, compiled bool, fp fingerprint) {
	mctx, cancel := context.WithCancel(ctx)
	hm := &hosted{m: m, cancel: cancel, done: make(chan struct{}), compiled: compiled, fp: fp}
	l.wg.Go(func() {
		defer close(hm.done)
		if err := m.Run(mctx); err != nil {
			l.h.log.Error("machine run failed", "machine", m.Name(), "error", err)
		}
	})
	l.h.mu.Lock()
	l.h.machines[m.Name()] = hm
	l.h.mu.Unlock()
}

// stop stops the named machine and waits for its watchers.
func (l *hostLoop) stop(name string) *hosted {
	l.h.mu.Lock()
	hm := l.h.machines[name]
	delete(l.h.machines, name)
	l.h.mu.Unlock()
	if hm != nil {
		hm.cancel()
		<-hm.done
	}
	return hm
}

// stopAll stops every machine and waits for all of their goroutines.
func (l *hostLoop) stopAll() {
	l.h.mu.Lock()
	all := l.h.machines
	l.h.machines = map[string]*hosted{}
	l.h.mu.Unlock()
	for _, hm := range all {
		hm.cancel()
	}
	l.wg.Wait()
}

func (l *hostLoop) startCompiled(ctx context.Context, def *machine.Definition) {
	dir := filepath.Join(l.h.cfg.DataDir, def.Name)
	err := os.MkdirAll(dir, 0o700)
	var m *Machine
	if err == nil {
		m, err = l.newMachine(def, dir)
	}
	if err != nil {
		l.h.log.Error("load compiled-in machine failed", "machine", def.Name, "error", err)
		l.h.hostEvent(ctx, def.Name, def.Version, dir, HostLoadFailed, err)
		return
	}
	l.start(ctx, m, true, fingerprint{})
	l.h.hostEvent(ctx, def.Name, def.Version, dir, HostLoaded, nil)
}

// load loads or reloads MachinesDir/name. The new version is read,
// validated and built before the running one stops; on any error the
// running one is untouched. explicit loads (LoadMachine) retry versions
// that failed before; given is the definition the caller parsed, used when
// it was parsed from the machine.yaml on disk.
func (l *hostLoop) load(ctx context.Context, name string, explicit bool, given *machine.Definition) error {
	dir := filepath.Join(l.h.cfg.MachinesDir, name)
	var data []byte
	var fp fingerprint
	stamp, serr := stampMachineDir(dir)
	if c, ok := l.stamps[name]; ok && serr == nil && c.stamp == stamp && !explicit {
		fp = c.fp // unchanged since it was read: data is read below only if needed
	} else {
		var err error
		if data, fp, err = l.read(dir); err != nil {
			delete(l.stamps, name)
			err = fmt.Errorf("load machine %q: %w", name, err)
			l.h.hostEvent(ctx, name, "", dir, HostLoadFailed, err)
			return err
		}
		if serr == nil {
			l.stamps[name] = stamped{stamp: stamp, fp: fp}
		}
	}
	if prev, ok := l.skip[name]; ok && prev == fp && !explicit {
		return nil
	}
	if _, ok := l.h.compiled[name]; ok {
		l.skip[name] = fp
		err := fmt.Errorf("load machine %q: %w: a directory machine cannot replace it", name, ErrCompiledIn)
		l.h.hostEvent(ctx, name, "", dir, HostLoadFailed, err)
		return err
	}
	l.h.mu.Lock()
	old := l.h.machines[name]
	l.h.mu.Unlock()
	if old != nil && old.fp == fp {
		return nil
	}
	if data == nil { // the stamp matched, but nothing runs or is skipped with this fingerprint
		delete(l.stamps, name)
		return l.load(ctx, name, explicit, given)
	}
	def := given
	var err error
	if def == nil || def.Digest() != fp.sum {
		def, err = machine.Parse(data)
	}
	if err == nil {
		for _, w := range def.Warnings {
			l.h.log.Warn("machine.yaml accepted with a warning", "machine", name, "warning", w)
		}
	}
	if err == nil && def.Name != name {
		err = fmt.Errorf("%w: name %q does not match its directory %q", machine.ErrInvalid, def.Name, name)
	}
	var m *Machine
	if err == nil {
		m, err = l.newMachine(def, dir)
	}
	if err != nil {
		l.skip[name] = fp
		err = fmt.Errorf("load machine %q from %s: %w", name, dir, err)
		version := ""
		if def != nil {
			version = def.Version
		}
		if old != nil {
			l.h.log.Error("machine update rejected; the running version keeps running", "machine", name, "running_version", old.m.Definition().Version, "error", err)
		} else {
			l.h.log.Error("load machine failed", "machine", name, "error", err)
		}
		l.h.hostEvent(ctx, name, version, dir, HostLoadFailed, err)
		return err
	}
	delete(l.skip, name)
	previous := ""
	if old != nil {
		previous = old.m.Definition().Version
		l.stop(name)
		l.h.log.Info("machine stopped for reload", "machine", name, "old_version", previous, "new_version", def.Version)
	}
	l.start(ctx, m, false, fp)
	l.h.hostEventReplacing(ctx, name, def.Version, previous, dir, HostLoaded, nil)
	return nil
}

// unload stops a directory machine and keeps scans from reloading the
// version on disk.
func (l *hostLoop) unload(name string) error {
	if _, ok := l.h.compiled[name]; ok {
		return fmt.Errorf("unload machine %q: %w", name, ErrCompiledIn)
	}
	hm := l.stop(name)
	if hm == nil {
		return nil
	}
	delete(l.stores, name) // reopened from disk if the machine comes back
	l.skip[name] = hm.fp
	l.h.hostEvent(context.Background(), name, hm.m.Definition().Version, hm.m.dir, HostUnloaded, nil)
	return nil
}

// scan reconciles the running directory machines with MachinesDir.
func (l *hostLoop) scan(ctx context.Context) {
	entries, err := os.ReadDir(l.h.cfg.MachinesDir)
	if err != nil {
		l.h.log.Error("scan machines directory failed", "dir", l.h.cfg.MachinesDir, "error", err)
		return
	}
	present := map[string]bool{} // names with a machine.yaml
	dirs := map[string]bool{}    // every candidate directory, watched
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || skipDir(name) {
			continue
		}
		dir := filepath.Join(l.h.cfg.MachinesDir, name)
		dirs[dir] = true
		l.watchDir(dir)
		if _, err := os.Stat(filepath.Join(dir, machine.File)); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		present[name] = true
		if nerr := spec.CheckName(name); nerr != nil {
			if _, ok := l.skip[name]; !ok {
				l.skip[name] = fingerprint{}
				err := fmt.Errorf("load machine %q: directory %w", name, nerr)
				l.h.hostEvent(ctx, name, "", dir, HostLoadFailed, err)
			}
			continue
		}
		_ = l.load(ctx, name, false, nil) // load reports its own errors
	}
	l.h.mu.Lock()
	var gone []*hosted
	for name, hm := range l.h.machines {
		if !hm.compiled && !present[name] {
			gone = append(gone, hm)
		}
	}
	l.h.mu.Unlock()
	for _, hm := range gone {
		name := hm.m.Name()
		l.stop(name)
		delete(l.stores, name)
		l.h.log.Info("machine removed", "machine", name)
		l.h.hostEvent(ctx, name, hm.m.Definition().Version, hm.m.dir, HostUnloaded, nil)
	}
	for name := range l.skip {
		if !present[name] {
			delete(l.skip, name)
		}
	}
	l.pruneWatches(dirs)
}
