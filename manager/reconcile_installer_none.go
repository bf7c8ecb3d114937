//go:build !mms_installer

package manager

// NewMachineInstaller builds the installer (fetcher, governors, atomic
// install) that the machines and archive watchers use.
//
// The installer is built on another branch (manager/install*.go,
// manager/fetch*.go). Until it is merged this build has none and
// NewMachineInstaller returns ErrNoInstaller, so both watchers fail to
// provision with that error rather than pretend to install anything. The
// merge deletes this file and the build constraint of
// reconcile_installer.go, which holds the real constructor.
func NewMachineInstaller(InstallSettings) (MachineInstaller, error) {
	return nil, ErrNoInstaller
}
