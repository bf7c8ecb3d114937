package manager

import (
	"fmt"
	"path/filepath"
)

var _ MachineInstaller = (*Installer)(nil)

// NewMachineInstaller builds the installer the machines and archive
// watchers use: a Fetcher (https, http when allowed, nats object store with
// credentials from StateDir/credentials) feeding an Installer rooted at
// MachinesDir whose records live in StateDir, with s.Gate enforcing
// governors.
func NewMachineInstaller(s InstallSettings) (MachineInstaller, error) {
	f, err := NewFetcher(FetchConfig{
		AllowHTTP:      s.AllowHTTP,
		CredentialsDir: filepath.Join(s.StateDir, "credentials"),
		Conn:           s.Conn,
		Timeout:        s.FetchTimeout,
		Progress:       s.Progress,
		Log:            s.Log, // every retry is logged with its reason
	})
	if err != nil {
		return nil, fmt.Errorf("new installer: %w", err)
	}
	inst, err := NewInstaller(InstallerConfig{
		MachinesDir: s.MachinesDir,
		StateDir:    s.StateDir,
		Fetcher:     f,
		Gate:        s.Gate,
		Log:         s.Log,
	})
	if err != nil {
		return nil, fmt.Errorf("new installer: %w", err)
	}
	return inst, nil
}
