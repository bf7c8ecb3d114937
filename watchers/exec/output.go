package execwatcher

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"

	"github.com/mms-io/mms/watchers"
)

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	n := len(p)
	if len(p) >= t.max {
		t.buf = append(t.buf[:0], p[len(p)-t.max:]...)
		return n, nil
	}
	if over := len(t.buf) + len(p) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	t.buf = append(t.buf, p...)
	return n, nil
}

// String returns the kept bytes with invalid UTF-8 (a cut rune) replaced.
func (t *tailBuffer) String() string { return string(bytes.ToValidUTF8(t.buf, []byte("\uFFFD"))) }

// limitBuffer keeps the first max bytes written to it and notes whether
// more came. It never fails a write, so the command is not killed by a
// broken pipe. (It must not have a ReadFrom method: io.Copy would use it
// and bypass the limit.)
type limitBuffer struct {
	buf      []byte
	max      int
	overflow bool
}

func (l *limitBuffer) Write(p []byte) (int, error) {
	room := l.max - len(l.buf)
	if len(p) > room {
		l.overflow = true
		l.buf = append(l.buf, p[:room]...)
		return len(p), nil
	}
	l.buf = append(l.buf, p...)
	return len(p), nil
}

// dataFiles are the temporary WATCHER_DATA and WATCHER_FACTS files.
type dataFiles struct{ data, facts string }

// writeDataFiles writes the machine data and the facts as JSON objects to
// two new private temporary files.
func writeDataFiles(d watchers.Deps) (dataFiles, error) {
	var data, facts map[string]any
	if d.Data != nil {
		data = d.Data.All()
	}
	if d.Facts != nil {
		facts = d.Facts()
	}
	var f dataFiles
	var err error
	if f.data, err = writeJSONTemp("mms-watcher-data-*.json", data); err != nil {
		return dataFiles{}, fmt.Errorf("write WATCHER_DATA: %w", err)
	}
	if f.facts, err = writeJSONTemp("mms-watcher-facts-*.json", facts); err != nil {
		os.Remove(f.data)
		return dataFiles{}, fmt.Errorf("write WATCHER_FACTS: %w", err)
	}
	return f, nil
}

func (f dataFiles) remove(log *slog.Logger) {
	for _, p := range []string{f.data, f.facts} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			log.Warn("remove temporary file", "path", p, "error", err)
		}
	}
}

// writeJSONTemp writes v (a nil map as {}) to a new 0600 temporary file and
// returns its path.
func writeJSONTemp(pattern string, v map[string]any) (string, error) {
	if v == nil {
		v = map[string]any{}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	f, err := os.CreateTemp("", pattern)
	if err != nil {
		return "", err
	}
	_, err = f.Write(b)
	err = errors.Join(err, f.Close())
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// storeData puts each top-level key of the JSON object out into store.
func storeData(store watchers.DataStore, out []byte) error {
	if len(bytes.TrimSpace(out)) == 0 {
		return errors.New("stdout is empty, want a JSON object")
	}
	var v any
	if err := json.Unmarshal(out, &v); err != nil {
		return fmt.Errorf("stdout is not valid JSON: %w", err)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("stdout is a JSON %s, want an object", jsonKind(v))
	}
	if store == nil {
		return errors.New("the machine has no data store")
	}
	for _, k := range slices.Sorted(maps.Keys(obj)) {
		if err := store.Put(k, obj[k]); err != nil {
			return fmt.Errorf("store key %q: %w", k, err)
		}
	}
	return nil
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case float64:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	}
	return "value"
}
