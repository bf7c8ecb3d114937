package manager

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/mms-io/mms/spec"
)

// Kinds of credential problems, for errors.Is.
var (
	// ErrAuthNotConfigured means an entry's auth names a credential this
	// node does not have (no file S/credentials/<auth>).
	ErrAuthNotConfigured = errors.New("auth ref not configured on this node")
	// ErrBadCredential means a credential file exists but is unusable: not
	// a regular file, accessible by group or others, owned by another
	// user, too large or not in the documented format.
	ErrBadCredential = errors.New("unusable credential file")
)

// MaxCredentialSize caps a credential file, in bytes.
const MaxCredentialSize = 64 << 10

// Credential types.
const (
	// CredentialBasic sends HTTP basic auth: username and password.
	CredentialBasic = "basic"
	// CredentialBearer sends "Authorization: Bearer <token>".
	CredentialBearer = "bearer"
	// CredentialHeader sends "<header>: <token>" (an API key header).
	CredentialHeader = "header"
)

// headerTokenPattern is an HTTP field name (RFC 9110 token).
var headerTokenPattern = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

// Credential is a node-local secret used to fetch archives, named by a v2
// entry's auth. It lives in the file <credentials dir>/<auth> (with the
// agent, S/credentials/<auth>), which must be a regular file owned by the
// agent's user and not accessible by group or others (mode 0600 or 0400),
// holding one JSON object of at most MaxCredentialSize bytes:
//
//	{"type": "basic",  "username": "fetcher", "password": "s3cret"}
//	{"type": "bearer", "token": "eyJhbGciOi…"}
//	{"type": "header", "header": "X-Api-Key", "token": "k-123"}
//
// Unknown fields are errors. The file is read on every download, so a
// rotated secret takes effect at the next fetch. A Credential never prints,
// logs or marshals its secret: String, GoString, LogValue and MarshalJSON
// show only the type.
type Credential struct {
	typ      string
	username string
	password string
	token    string
	header   string
}

// credentialFile is the JSON form of a Credential.
type credentialFile struct {
	Type     string `json:"type"`
	Username string `json:"username"`
	Password string `json:"password"`
	Token    string `json:"token"`
	Header   string `json:"header"`
}

// LoadCredential reads the credential name from dir. A missing file (or
// no dir) is an error wrapping ErrAuthNotConfigured; a file that is not
// private to the agent's user or not in the format is ErrBadCredential.
// Messages never contain secrets.
func LoadCredential(dir, name string) (*Credential, error) {
	// auth names a file in the credentials directory, so it can never be
	// a path: the machine-name rule of spec.
	if err := spec.CheckCredentialName(name); err != nil {
		return nil, credErr(ErrBadCredential, "invalid auth ref: %v", err)
	}
	if dir == "" {
		return nil, credErr(ErrAuthNotConfigured, "auth ref %q not configured on this node (no credentials directory)", name)
	}
	path := filepath.Join(dir, name)
	f, err := os.Open(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, credErr(ErrAuthNotConfigured, "auth ref %q not configured on this node (no file %s)", name, path)
	case err != nil:
		return nil, credErr(ErrBadCredential, "auth ref %q: %v", name, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, credErr(ErrBadCredential, "auth ref %q: %v", name, err)
	}
	if err := checkCredentialFile(fi); err != nil {
		return nil, credErr(ErrBadCredential, "auth ref %q: credential file %s %v", name, path, err)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxCredentialSize+1))
	if err != nil {
		return nil, credErr(ErrBadCredential, "auth ref %q: read %s: %v", name, path, err)
	}
	c, err := ParseCredential(data)
	if err != nil {
		return nil, fmt.Errorf("auth ref %q: credential file %s: %w", name, path, err)
	}
	return c, nil
}

// checkCredentialFile refuses a credential file others could read or
// change.
func checkCredentialFile(fi fs.FileInfo) error {
	switch {
	case !fi.Mode().IsRegular():
		return errors.New("is not a regular file")
	case fi.Mode().Perm()&0o077 != 0:
		return fmt.Errorf("is accessible by group or others (mode %04o); chmod 600 it", fi.Mode().Perm())
	}
	return checkOwner(fi)
}

// ParseCredential decodes a credential file's content (see [Credential]).
// Errors wrap ErrBadCredential and never repeat field values.
func ParseCredential(data []byte) (*Credential, error) {
	if len(data) > MaxCredentialSize {
		return nil, credErr(ErrBadCredential, "larger than %d bytes", MaxCredentialSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var cf credentialFile
	if err := dec.Decode(&cf); err != nil {
		return nil, credErr(ErrBadCredential, "not a credential JSON object: %s", describeJSONError(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, credErr(ErrBadCredential, "data after the JSON object")
	}
	c := &Credential{typ: cf.Type, username: cf.Username, password: cf.Password, token: cf.Token, header: cf.Header}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// describeJSONError reduces a decoding error to its position and kind: a
// syntax error's message may quote the input, which holds secrets.
func describeJSONError(err error) string {
	if se, ok := errors.AsType[*json.SyntaxError](err); ok {
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	}
	if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
		if te.Field == "" {
			return "not a JSON object"
		}
		return fmt.Sprintf("field %q must be a %s", te.Field, te.Type)
	}
	msg := err.Error()
	if strings.HasPrefix(msg, "json: unknown field ") {
		return msg[len("json: "):]
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "truncated or empty"
	}
	return "malformed"
}

// validate checks that c has exactly the fields of its type.
func (c *Credential) validate() error {
	var errs []error
	need := func(field, val string) {
		if val == "" {
			errs = append(errs, fmt.Errorf("%s is required for type %q", field, c.typ))
		}
	}
	unused := func(field, val string) {
		if val != "" {
			errs = append(errs, fmt.Errorf("%s is not used by type %q", field, c.typ))
		}
	}
	switch c.typ {
	case CredentialBasic:
		need("username", c.username)
		need("password", c.password)
		unused("token", c.token)
		unused("header", c.header)
		if strings.Contains(c.username, ":") {
			errs = append(errs, errors.New(`username must not contain ":"`))
		}
	case CredentialBearer:
		need("token", c.token)
		unused("username", c.username)
		unused("password", c.password)
		unused("header", c.header)
	case CredentialHeader:
		need("header", c.header)
		need("token", c.token)
		unused("username", c.username)
		unused("password", c.password)
		if c.header != "" && !headerTokenPattern.MatchString(c.header) {
			errs = append(errs, errors.New("header is not a valid HTTP header name"))
		}
		if reservedHeader(c.header) {
			errs = append(errs, fmt.Errorf("header %q cannot carry a credential", c.header))
		}
	case "":
		errs = append(errs, errors.New(`type is required: "basic", "bearer" or "header"`))
	default:
		errs = append(errs, fmt.Errorf(`unknown type: want "basic", "bearer" or "header"`))
	}
	for _, v := range []string{c.username, c.password, c.token} {
		if strings.ContainsAny(v, "\x00\r\n") {
			errs = append(errs, errors.New("values must not contain NUL, CR or LF"))
			break
		}
	}
	if len(errs) > 0 {
		return &credentialError{msg: "invalid credential: " + errors.Join(errs...).Error(), kind: ErrBadCredential}
	}
	return nil
}

// reservedHeader reports header fields the transport owns.
func reservedHeader(h string) bool {
	switch http.CanonicalHeaderKey(h) {
	case "Host", "Content-Length", "Transfer-Encoding", "Connection", "Upgrade", "Te", "Trailer",
		"Keep-Alive", "Proxy-Connection", "Proxy-Authorization":
		return true
	}
	return false
}

// apply adds the credential to a request's header.
func (c *Credential) apply(h http.Header) {
	switch c.typ {
	case CredentialBasic:
		r := http.Request{Header: h}
		r.SetBasicAuth(c.username, c.password)
	case CredentialBearer:
		h.Set("Authorization", "Bearer "+c.token)
	case CredentialHeader:
		h.Set(c.header, c.token)
	}
}

// Type returns the credential's type: "basic", "bearer" or "header".
func (c Credential) Type() string { return c.typ }

// String names the credential's type, never its secret.
func (c Credential) String() string { return "credential(" + c.typ + ")" }

// GoString is String, so %#v cannot print the secret either.
func (c Credential) GoString() string { return c.String() }

// LogValue logs only the credential's type.
func (c Credential) LogValue() slog.Value { return slog.StringValue(c.String()) }

// MarshalJSON encodes only the type: a Credential is never written out.
func (c Credential) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Type string `json:"type"`
	}{c.typ})
}

// credentialError is a credential problem of one kind.
type credentialError struct {
	msg  string
	kind error
}

func (e *credentialError) Error() string { return e.msg }
func (e *credentialError) Unwrap() error { return e.kind }

func credErr(kind error, format string, args ...any) error {
	return &credentialError{msg: fmt.Sprintf(format, args...), kind: kind}
}

var (
	_ fmt.Stringer   = Credential{}
	_ fmt.GoStringer = Credential{}
	_ slog.LogValuer = Credential{}
	_ json.Marshaler = Credential{}
	_ error          = (*credentialError)(nil)
)
