package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/mms-io/mms/machine"
	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/provision"
	"github.com/mms-io/mms/spec"
)

// archiveEntry is the spec entry `mms archive create` prints.
type archiveEntry struct {
	Name           string `json:"name"`
	Source         string `json:"source"`
	Checksum       string `json:"checksum"`
	VerifyChecksum string `json:"verify_checksum"`
	Size           int64  `json:"size"`
}

type archiveCreateOptions struct {
	name    string
	version string
	out     string
	source  string
	upload  string
	nats    natsFlags
}

// versionPattern is what a version may look like: it becomes part of a
// file and object name.
var versionPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$`)

func (a *app) newArchiveCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "archive",
		Short: "Build machine archives",
	}
	cmd.AddCommand(a.newArchiveCreateCmd())
	return cmd
}

func (a *app) newArchiveCreateCmd() *cobra.Command {
	var o archiveCreateOptions
	cmd := &cobra.Command{
		Use:   "create DIR",
		Short: "Archive a machine directory and print its spec entry",
		Long: `Archive a machine directory and print its spec entry.

DIR holds machine.yaml and the machine's files. machine.yaml must load and
validate (the same check the agent makes before installing it), so a broken
machine never becomes an archive. The archive is a deterministic tar.gz with
one top-level directory <name>/ and a generated SHA256SUMS: the same
directory always gives the same bytes and checksum.

The name defaults to machine.yaml's name (--name may only repeat it) and the
version to machine.yaml's version; the archive is written to
<name>-<version>.tar.gz unless --out says otherwise (never inside DIR).

--upload nats://BUCKET stores the archive in that JetStream object store
(created if needed) as <name>-<version>.tar.gz, using the NATS connection
flags. The spec entry for machines.json is printed on stdout:

  {"name", "source", "checksum", "verify_checksum", "size"}

Its source is --source, else the uploaded object's nats:// URL, else a
placeholder that 'mms pack' rejects until it is replaced.`,
		Example: `  mms archive create ./web --source https://repo.example.net/web-1.0.0.tar.gz
  mms archive create ./web --upload nats://ARCHIVES --server nats://nats.example:4222`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.archiveCreate(cmd.Context(), args[0], o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.name, "name", "", "machine name (default: machine.yaml's name, which it must equal)")
	f.StringVar(&o.version, "version", "", "version in the file name (default: machine.yaml's version)")
	f.StringVar(&o.out, "out", "", "archive file to write (default: <name>-<version>.tar.gz)")
	f.StringVar(&o.source, "source", "", "URL the archive will be served from, for the printed entry")
	f.StringVar(&o.upload, "upload", "", "store the archive in this object store: nats://BUCKET")
	o.nats.registerClient(cmd, f)
	return cmd
}

func (a *app) archiveCreate(ctx context.Context, dir string, o archiveCreateOptions) error {
	def, err := machine.Load(dir)
	if err != nil {
		return fmt.Errorf("refusing to archive %s: %w", dir, err)
	}
	name := def.Name
	if o.name != "" && o.name != name {
		return fmt.Errorf("--name %q differs from machine.yaml's name %q: agents refuse such an archive", o.name, name)
	}
	if err := spec.ValidName(name); err != nil {
		return fmt.Errorf("machine.yaml's name cannot name a managed machine: %w", err)
	}
	version := o.version
	if version == "" {
		version = def.Version
	}
	if !versionPattern.MatchString(version) {
		return fmt.Errorf("version %q: want letters, digits, '.', '_', '+' or '-' (at most 64)", version)
	}
	file := name + "-" + version + ".tar.gz"
	bucket, err := uploadBucket(o.upload)
	if err != nil {
		return err
	}
	if o.source != "" {
		if err := checkEntrySource(name, o.source); err != nil {
			return err
		}
	}
	out := o.out
	if out == "" {
		out = file
	}
	if err := checkOutside(dir, out); err != nil {
		return err
	}

	info, err := writeArchive(ctx, dir, name, out)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stderr, "wrote %s: %d files, %d bytes\n", out, info.Files, info.Size)

	source := o.source
	if bucket != "" {
		src, where, err := a.uploadArchive(ctx, o.nats, bucket, file, out)
		if err != nil {
			return err
		}
		fmt.Fprintf(a.stderr, "uploaded %s to %s\n", src, where)
		if source == "" {
			source = src
		}
	}
	if source == "" {
		source = fmt.Sprintf("<replace with https://HOST/PATH/%s or nats://BUCKET/%s>", file, file)
		fmt.Fprintln(a.stderr, "hint: no --source or --upload: set the entry's source before 'mms pack' (it rejects the placeholder)")
	}
	data, err := json.MarshalIndent(archiveEntry{Name: name, Source: source, Checksum: info.Checksum,
		VerifyChecksum: info.VerifyChecksum, Size: info.Size}, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(a.stdout, "%s\n", data)
	return err
}

// uploadBucket parses --upload: nats://BUCKET (a trailing slash is
// allowed). Empty means no upload.
func uploadBucket(upload string) (string, error) {
	if upload == "" {
		return "", nil
	}
	u, err := url.Parse(upload)
	if err != nil || u.Scheme != "nats" || u.User != nil || u.RawQuery != "" || u.Fragment != "" ||
		(u.Path != "" && u.Path != "/") {
		return "", fmt.Errorf("--upload %q: want nats://BUCKET", upload)
	}
	if _, _, err := spec.SplitObjectSource("nats://" + u.Host + "/x"); err != nil {
		return "", fmt.Errorf("--upload %q: %w", upload, err)
	}
	return u.Host, nil
}

// checkEntrySource validates --source the way 'mms pack' will (http is
// left to pack's --allow-http).
func checkEntrySource(name, source string) error {
	zero := strings.Repeat("0", 64)
	m := spec.Machine{Name: name, Source: source, Checksum: zero, VerifyChecksum: zero}
	if err := m.Validate(spec.ValidateOptions{AllowHTTP: true}); err != nil {
		return fmt.Errorf("--source: %w", err)
	}
	return nil
}

// checkOutside refuses an output file inside the directory being archived:
// it would be archived itself, half written.
func checkOutside(dir, out string) error {
	absDir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	absOut, err := filepath.Abs(out)
	if err != nil {
		return err
	}
	if rel, err := filepath.Rel(absDir, absOut); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return fmt.Errorf("archive %s would be inside %s: pass --out outside the machine directory", out, dir)
	}
	return nil
}

// writeArchive archives dir as name into out atomically: a temp file next
// to out, fsync, rename.
func writeArchive(ctx context.Context, dir, name, out string) (info packer.ArchiveInfo, err error) {
	if st, err := os.Stat(filepath.Dir(out)); err != nil || !st.IsDir() {
		return info, fmt.Errorf("write archive %s: directory %s does not exist: create it or give another --out", out, filepath.Dir(out))
	}
	f, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".tmp-*")
	if err != nil {
		return info, fmt.Errorf("write archive: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if info, err = packer.CreateArchive(ctx, dir, name, f); err != nil {
		return info, err
	}
	if err = f.Chmod(0o644); err != nil {
		return info, fmt.Errorf("write archive: %w", err)
	}
	if err = f.Sync(); err != nil {
		return info, fmt.Errorf("write archive: %w", err)
	}
	if err = f.Close(); err != nil {
		return info, fmt.Errorf("write archive: %w", err)
	}
	if err = os.Rename(f.Name(), out); err != nil {
		return info, fmt.Errorf("write archive: %w", err)
	}
	return info, nil
}

// uploadArchive stores the file at path as object in bucket, creating the
// bucket if needed, and returns the object's nats:// source and the
// server it is on (natsConn.describe).
func (a *app) uploadArchive(ctx context.Context, nf natsFlags, bucket, object, path string) (source, where string, err error) {
	cctx, cancel := context.WithTimeout(ctx, nf.timeout)
	defer cancel()
	nc, err := nf.connect(cctx, a, "mms archive create")
	if err != nil {
		return "", "", err
	}
	defer nc.Close()
	js, err := jetstream.New(nc.Conn)
	if err != nil {
		return "", "", fmt.Errorf("jetstream: %w", err)
	}
	obs, err := js.ObjectStore(cctx, bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		// Made as mms init makes it, with the fleet's replicas.
		f, ferr := fleetOf(cctx, nc, js, "", 0)
		if ferr != nil {
			return "", "", fmt.Errorf("object store %q does not exist: %w", bucket, ferr)
		}
		f.ArchiveBuckets = []string{bucket}
		if err := a.ensure(cctx, nc, js, f, provision.KindArchives, bucket); err != nil {
			return "", "", err
		}
		obs, err = js.ObjectStore(cctx, bucket)
	}
	if err != nil {
		return "", "", nc.explain(fmt.Errorf("object store %q: %w", bucket, err))
	}
	f, err := os.Open(path)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	if _, err := obs.Put(ctx, jetstream.ObjectMeta{Name: object, Description: "mms machine archive"}, f); err != nil {
		return "", "", nc.explain(fmt.Errorf("upload %s to object store %q: %w", object, bucket, err))
	}
	return "nats://" + bucket + "/" + object, nc.describe(), nil
}
