// Package machine is the machine.yaml model: the [Definition] of an
// autonomous machine in Choria's schema (states, transitions, watchers),
// its strict parsing and its validation. It is a leaf of the layers: the
// manager checks an archive's machine.yaml with it before installing, the
// agent's runtime runs what it describes, and `mms machine validate` reports
// its errors, all without one depending on the other.
//
// [Parse] decodes strictly: unknown keys at any level are errors with their
// line, and each watcher's properties are converted from YAML to JSON.
// [Definition.Validate] checks meaning, including each watcher's
// properties through the watcher registry ([watchers.Build]), so a machine
// that loads is a machine that runs; [Definition.BuildWatchers] does the
// same and returns the built watchers, which is how the runtime validates
// and builds in one pass. [Load] reads, parses and validates a directory's
// machine.yaml.
//
// Machine names follow [spec.CheckName], the one rule for machine names
// (Choria's names, plus dots, safe as a directory name everywhere).
// A definition remembers the sha256 of the bytes it was parsed from
// ([Definition.Digest]) so a host handed a definition by an installer can
// run it without parsing the file again.
package machine
