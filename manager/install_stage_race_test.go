package manager

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestStageModifiedBeforeSwapIsCaught covers the verify-then-use row of
// the threat table. The archive is hashed and extracted in one pass from
// the download stream (it is never stored and re-opened), so the bytes
// that were verified are the bytes extracted. What is left is the private
// (0700) stage between its verification and the swap: a change made there
// by someone who can already write the machines directory is installed,
// but the next re-verification reports the file and the reconciler
// reinstalls (see the reconcile and end-to-end tests).
func TestStageModifiedBeforeSwapIsCaught(t *testing.T) {
	v1 := buildArchive(t, "web", "1", map[string]string{"run.sh": "one"})
	srv := newFileServer(t, true)
	env := newTestEnv(t, srv.Server, FetchConfig{})
	var stageMode os.FileMode
	env.inst.crashAt = func(step string) bool {
		if step != "extract" {
			return false
		}
		stages, err := filepath.Glob(filepath.Join(env.machines, stagePrefix+"web-*"))
		if err != nil || len(stages) != 1 {
			t.Errorf("stages = %v, %v; want one", stages, err)
			return false
		}
		if fi, err := os.Stat(stages[0]); err == nil {
			stageMode = fi.Mode().Perm()
		}
		if err := os.WriteFile(filepath.Join(stages[0], "web", "run.sh"), []byte("evil"), 0o644); err != nil {
			t.Error(err)
		}
		return false
	}
	if _, _, err := env.inst.Install(t.Context(), v1.entry(srv.put("/v1", v1.data)), 1); err != nil {
		t.Fatalf("Install(v1) = %v", err)
	}
	if stageMode != 0o700 {
		t.Errorf("stage mode = %v, want 0700 (private to the agent)", stageMode)
	}
	err := env.inst.Verify(t.Context(), "web", false)
	if !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), "run.sh") {
		t.Errorf("Verify(web, quick) after the stage was modified = %v, want ErrTampered naming run.sh", err)
	}
}
