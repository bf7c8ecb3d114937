package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/mms-io/mms/machine"
	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/spec"
)

// checkHealthStates checks, for each entry with a health gate, that the
// machine in its archive (found in dir by its checksum) has every state the
// gate names: a typo there would make every node roll the version back.
func checkHealthStates(ctx context.Context, ms []spec.Machine, dir string) error {
	byChecksum, err := archivesIn(dir)
	if err != nil {
		return err
	}
	var errs []error
	for i, m := range ms {
		if m.Health == nil {
			continue
		}
		where := fmt.Sprintf("machine[%d] %q: health", i, m.Name)
		path, ok := byChecksum[m.Checksum]
		if !ok {
			errs = append(errs, fmt.Errorf("%s: no archive with checksum %s in %s to check its states against", where, shortHex(m.Checksum), dir))
			continue
		}
		states, err := archiveStates(ctx, path, m)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %s: %w", where, filepath.Base(path), err))
			continue
		}
		for _, list := range []struct {
			field  string
			states []string
		}{{"states", m.Health.States}, {"fail_states", m.Health.FailStates}} {
			for _, st := range list.states {
				if !slices.Contains(states, st) {
					errs = append(errs, fmt.Errorf("%s: %s: unknown state %q (the machine's states: %s)", where, list.field, st, strings.Join(states, ", ")))
				}
			}
		}
	}
	return errors.Join(errs...)
}

// archivesIn maps the sha256 of every *.tar.gz file in dir to its path.
func archivesIn(dir string) (map[string]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.tar.gz"))
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("--archives: %w", err)
	}
	out := make(map[string]string, len(files))
	for _, f := range files {
		sum, err := archiveSHA256(f)
		if err != nil {
			return nil, fmt.Errorf("--archives: %w", err)
		}
		out[sum] = f
	}
	return out, nil
}

// archiveSHA256 returns the lowercase hex sha256 of the file at path.
func archiveSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// archiveStates extracts the archive at path as an agent would (every
// check applies) into a temporary directory and returns its machine's
// states.
func archiveStates(ctx context.Context, path string, m spec.Machine) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	stage, err := os.MkdirTemp("", "mms-pack-check-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(stage)
	x, err := packer.ExtractArchive(ctx, f, stage, packer.Expect{Name: m.Name, Checksum: m.Checksum, VerifyChecksum: m.VerifyChecksum}, packer.ExtractOptions{NoSync: true})
	if err != nil {
		return nil, err
	}
	def, err := machine.Load(x.Dir)
	if err != nil {
		return nil, err
	}
	return def.States(), nil
}
