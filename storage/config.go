package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/logging"
	"go.yaml.in/yaml/v3"
)

// Config names the places backups are kept, in order of preference: on a tie between
// two copies of the newest backup, the earlier location serves.
type Config struct {
	// File is where the configuration was read from; "" when it came from the environment.
	File      string           `yaml:"-"`
	Locations []LocationConfig `yaml:"locations"`
	// Runbook is a runbook file to use instead of the embedded one (--runbook wins).
	// A relative path is relative to the configuration file.
	Runbook string `yaml:"runbook"`
	// SignerKey is the public key file of the backup job's signing keys: restores refuse
	// backups none of them signed (--signer-key wins). Relative to the configuration file.
	SignerKey string `yaml:"signer_key"`
	// SignKey is the secret key file drconsole backup signs with (--sign-key wins).
	SignKey string `yaml:"sign_key"`
	// BackupPrefix is the application's prefix in backup names (<prefix>_full_…):
	// $BACKUP_PREFIX wins; the default is the target database's name.
	BackupPrefix string `yaml:"backup_prefix"`
	// Notify is the notify: list of channels, kept as written: incident/notify reads it,
	// so that a mistake in it is reported where notifications are used and never stops a
	// restore.
	Notify yaml.Node `yaml:"notify"`
}

// LocationConfig is one location in the configuration file.
type LocationConfig struct {
	Name string `yaml:"name"`
	Type string `yaml:"type"` // "dir" or "s3"; may be left out when path or bucket says which
	// dir
	Path string `yaml:"path"`
	// s3
	Bucket       string `yaml:"bucket"`
	Prefix       string `yaml:"prefix"`        // the runbook's layout (postgres/full/, …) is under it
	Region       string `yaml:"region"`        // default: the SDK's chain, then the bucket's own region
	Endpoint     string `yaml:"endpoint"`      // an S3-compatible store; default AWS_ENDPOINT_URL_S3, else AWS
	Profile      string `yaml:"profile"`       // a profile of ~/.aws/config; default AWS_PROFILE
	PathStyle    *bool  `yaml:"path_style"`    // default: true with a custom endpoint, else false
	StorageClass string `yaml:"storage_class"` // for uploads, e.g. STANDARD_IA
	Concurrency  int    `yaml:"concurrency"`   // ranged GETs (and upload parts) at once; default 4
	PartSize     Size   `yaml:"part_size"`     // e.g. 8MiB (the default)

	line int // where it starts in the file, for error messages
}

// Size is a byte count written as a plain number or with a unit: 8MiB, 16M, 512KiB.
type Size int64

var sizeRE = regexp.MustCompile(`^(\d+)\s*([KMGT]?)(I?B?)$`)

func (s *Size) UnmarshalYAML(n *yaml.Node) error {
	m := sizeRE.FindStringSubmatch(strings.ToUpper(strings.TrimSpace(n.Value)))
	if n.Kind != yaml.ScalarNode || m == nil {
		return fmt.Errorf("line %d: %q is not a size (e.g. 8MiB)", n.Line, n.Value)
	}
	v, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a size (e.g. 8MiB)", n.Line, n.Value)
	}
	shift := 0
	if m[2] != "" {
		shift = 10 * (strings.Index("KMGT", m[2]) + 1)
	}
	*s = Size(v << shift)
	return nil
}

// ConfigPath finds the configuration file: explicit (e.g. --config) if given, else
// $DRCONSOLE_CONFIG, ./drconsole.yaml, $XDG_CONFIG_HOME/drconsole/config.yaml (or
// ~/.config/drconsole/config.yaml), /etc/drconsole/config.yaml. A file named explicitly
// or by $DRCONSOLE_CONFIG must exist; "" means there is none.
func ConfigPath(explicit string, getenv func(string) string) (string, error) {
	for _, named := range []struct{ path, how string }{{explicit, "--config"}, {getenv("DRCONSOLE_CONFIG"), "DRCONSOLE_CONFIG"}} {
		if named.path == "" {
			continue
		}
		if _, err := os.Stat(named.path); err != nil {
			return "", fmt.Errorf("configuration file %s (from %s): %w", named.path, named.how, unwrapPathErr(err))
		}
		return named.path, nil
	}
	xdg := getenv("XDG_CONFIG_HOME")
	if xdg == "" && getenv("HOME") != "" {
		xdg = filepath.Join(getenv("HOME"), ".config")
	}
	candidates := []string{"drconsole.yaml"}
	if xdg != "" {
		candidates = append(candidates, filepath.Join(xdg, "drconsole", "config.yaml"))
	}
	candidates = append(candidates, "/etc/drconsole/config.yaml")
	for _, p := range candidates {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		} else if !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("configuration file %s: %w", p, unwrapPathErr(err))
		}
	}
	return "", nil
}

// LoadConfig reads the configuration file ConfigPath finds, or, without one, builds the
// configuration from the runbook's environment (see EnvConfig).
func LoadConfig(explicit string, getenv func(string) string) (*Config, error) {
	p, err := ConfigPath(explicit, getenv)
	if err != nil {
		return nil, err
	}
	if p == "" {
		return EnvConfig(getenv), nil
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("read configuration %s: %w", p, unwrapPathErr(err))
	}
	return ParseConfig(data, p)
}

// EnvConfig is the configuration without a file, from the runbook's variables: "primary"
// from $S3_BUCKET, "secondary" from $S3_BUCKET_SECONDARY, and "local", the directory
// $BACKUP_DIR (default /var/backups/spywatcher). Everything about AWS comes from the
// SDK's own chain (AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL_S3, shared config, roles).
func EnvConfig(getenv func(string) string) *Config {
	cfg := &Config{}
	if b := getenv("S3_BUCKET"); b != "" {
		cfg.Locations = append(cfg.Locations, LocationConfig{Name: "primary", Type: "s3", Bucket: b})
	}
	if b := getenv("S3_BUCKET_SECONDARY"); b != "" {
		cfg.Locations = append(cfg.Locations, LocationConfig{Name: "secondary", Type: "s3", Bucket: b})
	}
	dir := getenv("BACKUP_DIR")
	if dir == "" {
		dir = DefaultDir
	}
	cfg.Locations = append(cfg.Locations, LocationConfig{Name: "local", Type: "dir", Path: dir})
	return cfg
}

// ParseConfig reads a configuration file's content; file names it in errors, which give
// line numbers. Unknown fields are errors, so a misspelt setting is never ignored.
func ParseConfig(data []byte, file string) (*Config, error) {
	cfg := &Config{File: file}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && err != io.EOF {
		return nil, yamlErr(file, err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err == nil && len(root.Content) > 0 {
		doc := root.Content[0]
		for i := 0; i+1 < len(doc.Content); i += 2 {
			if doc.Content[i].Value == "locations" && doc.Content[i+1].Kind == yaml.SequenceNode {
				for j, item := range doc.Content[i+1].Content {
					if j < len(cfg.Locations) {
						cfg.Locations[j].line = item.Line
					}
				}
			}
		}
	}
	for _, p := range []*string{&cfg.Runbook, &cfg.SignerKey, &cfg.SignKey} {
		if *p != "" && !filepath.IsAbs(*p) && file != "" {
			*p = filepath.Join(filepath.Dir(file), *p)
		}
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

var yamlLineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): `)

// yamlErr turns the YAML library's errors into "file:line: what" lines.
func yamlErr(file string, err error) error {
	var te *yaml.TypeError
	msgs := []string{strings.TrimPrefix(err.Error(), "yaml: ")}
	if errors.As(err, &te) {
		msgs = te.Errors
	}
	for i, m := range msgs {
		m = strings.ReplaceAll(m, "in type storage.LocationConfig", "in a location")
		m = strings.ReplaceAll(m, "in type storage.Config", "at the top level")
		if sm := yamlLineRE.FindStringSubmatch(m); sm != nil {
			m = file + ":" + sm[1] + ": " + m[len(sm[0]):]
		} else {
			m = file + ": " + m
		}
		msgs[i] = m
	}
	return errors.New(strings.Join(msgs, "\n"))
}

// Validate checks that every location says enough to be opened, and fills in a type
// left out where path or bucket makes it plain.
func (c *Config) Validate() error {
	var errs []string
	seen := map[string]bool{}
	for i := range c.Locations {
		l := &c.Locations[i]
		at := fmt.Sprintf("location %d", i+1)
		if c.File != "" && l.line > 0 {
			at = fmt.Sprintf("%s:%d: location %q", c.File, l.line, l.Name)
		} else if l.Name != "" {
			at = fmt.Sprintf("location %q", l.Name)
		}
		bad := func(format string, args ...any) { errs = append(errs, at+": "+fmt.Sprintf(format, args...)) }
		if l.Type == "" {
			switch {
			case l.Bucket != "" && l.Path == "":
				l.Type = "s3"
			case l.Path != "" && l.Bucket == "":
				l.Type = "dir"
			}
		}
		switch {
		case l.Name == "":
			bad("has no name")
		case seen[l.Name]:
			bad("the name is used twice")
		}
		seen[l.Name] = true
		switch l.Type {
		case "dir":
			if l.Path == "" {
				bad("type dir needs a path")
			}
			if l.Bucket != "" || l.Endpoint != "" || l.Prefix != "" {
				bad("type dir takes a path, not bucket, prefix or endpoint")
			}
		case "s3":
			if l.Bucket == "" {
				bad("type s3 needs a bucket")
			} else if strings.ContainsAny(l.Bucket, "/ ") {
				bad("bucket %q is not a bucket name (put folders in prefix)", l.Bucket)
			}
			if l.Path != "" {
				bad("type s3 takes a bucket, not a path")
			}
		case "":
			bad("needs a type: dir (with path) or s3 (with bucket)")
		default:
			bad("type %q is not dir or s3", l.Type)
		}
		if l.Concurrency < 0 || l.Concurrency > 64 {
			bad("concurrency %d is not between 1 and 64", l.Concurrency)
		}
		if l.PartSize != 0 && (l.PartSize < 64<<10 || l.PartSize > 5<<30) {
			bad("part_size %d is not between 64KiB and 5GiB", l.PartSize)
		}
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "\n"))
	}
	return nil
}

// Option changes how locations are opened.
type Option func(*openOptions)

type openOptions struct {
	logger  logging.Logger
	logMode aws.ClientLogMode
	aws     []func(*config.LoadOptions) error
	s3      []func(*s3.Options)
	tune    []func(*S3Options)
}

// WithLog sends the AWS SDK's own log lines (its warnings, retries, and requests and
// responses without their bodies) to w when enabled is true: stderr under --debug, or the
// incident journal. Otherwise, and without this option, they are dropped, so nothing the
// SDK says reaches the terminal or the TUI.
func WithLog(w io.Writer, enabled bool) Option {
	return func(o *openOptions) {
		if w == nil || !enabled {
			o.logger, o.logMode = logging.Nop{}, 0
			return
		}
		o.logger = logging.NewStandardLogger(w)
		o.logMode = aws.LogRetries | aws.LogRequest | aws.LogResponse
	}
}

// WithAWSConfig adds options to the SDK's configuration loading (e.g. static credentials).
func WithAWSConfig(fns ...func(*config.LoadOptions) error) Option {
	return func(o *openOptions) { o.aws = append(o.aws, fns...) }
}

// WithS3Options adjusts every S3 client (e.g. its retry attempts).
func WithS3Options(fns ...func(*s3.Options)) Option {
	return func(o *openOptions) { o.s3 = append(o.s3, fns...) }
}

// WithTuning adjusts every S3 location's streaming settings after the configuration's.
func WithTuning(f func(*S3Options)) Option {
	return func(o *openOptions) { o.tune = append(o.tune, f) }
}

// Open makes the location lc describes. An S3 location gets its own client, with its own
// profile, region and endpoint, configured the way the AWS CLI would be; nothing is
// sent over the network until it is used.
func Open(ctx context.Context, lc LocationConfig, opts ...Option) (Location, error) {
	oo := openOptions{logger: logging.Nop{}}
	for _, o := range opts {
		o(&oo)
	}
	switch lc.Type {
	case "dir", "":
		if lc.Bucket == "" {
			if lc.Path == "" {
				return nil, fmt.Errorf("location %q: no path", lc.Name)
			}
			return NewDir(lc.Name, lc.Path), nil
		}
	case "s3":
	default:
		return nil, fmt.Errorf("location %q: type %q is not dir or s3", lc.Name, lc.Type)
	}
	if lc.Bucket == "" {
		return nil, fmt.Errorf("location %q: no bucket", lc.Name)
	}
	load := []func(*config.LoadOptions) error{
		config.WithLogger(oo.logger),
		config.WithClientLogMode(oo.logMode),
		config.WithLogConfigurationWarnings(false),
		// Many S3-compatible stores send no checksums; validating only when the API
		// requires it keeps the SDK from warning on every GET.
		config.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenRequired),
		config.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired),
	}
	if lc.Profile != "" {
		load = append(load, config.WithSharedConfigProfile(lc.Profile))
	}
	if lc.Region != "" {
		load = append(load, config.WithRegion(lc.Region))
	}
	if lc.Endpoint != "" {
		load = append(load, config.WithBaseEndpoint(lc.Endpoint))
	}
	load = append(load, oo.aws...)
	awsCfg, err := config.LoadDefaultConfig(ctx, load...)
	if err != nil {
		return nil, fmt.Errorf("location %q: AWS configuration: %s", lc.Name, rootCause(err))
	}
	if awsCfg.Region == "" {
		awsCfg.Region = "us-east-1" // only a first guess: the bucket is asked for its own
	}
	customEndpoint := false
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		customEndpoint = o.BaseEndpoint != nil
		if lc.PathStyle != nil {
			o.UsePathStyle = *lc.PathStyle
		} else if customEndpoint {
			o.UsePathStyle = true // S3-compatible stores rarely have per-bucket host names
		}
		o.DisableLogOutputChecksumValidationSkipped = true
		for _, f := range oo.s3 {
			f(o)
		}
	})
	so := S3Options{
		StorageClass: lc.StorageClass,
		Concurrency:  lc.Concurrency,
		PartSize:     int64(lc.PartSize),
		// A bucket in another region answers 301 to a client of the wrong one; on AWS,
		// unless the region is configured for this location, ask the bucket.
		DetectRegion: lc.Region == "" && !customEndpoint,
	}
	for _, f := range oo.tune {
		f(&so)
	}
	s := NewS3(lc.Name, client, lc.Bucket, lc.Prefix, so)
	s.config = lc
	return s, nil
}

// Locations opens every configured location, in order. A location that cannot even be
// set up (say, an unknown AWS profile) is still returned, as one whose every use fails
// with ErrUnreachable and the reason, so the others stay usable and the catalog says why.
func Locations(ctx context.Context, cfg *Config, opts ...Option) ([]Location, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var out []Location
	for _, lc := range cfg.Locations {
		loc, err := Open(ctx, lc, opts...)
		if err != nil {
			where := lc.Path
			if lc.Bucket != "" {
				where = "s3://" + lc.Bucket + "/" + lc.Prefix
			}
			loc = &unavailable{name: lc.Name, where: where, err: err}
		}
		out = append(out, loc)
	}
	return out, nil
}

// unavailable is a location that could not be set up.
type unavailable struct {
	name, where string
	err         error
}

var _ Location = (*unavailable)(nil)

func (u *unavailable) Name() string   { return u.name }
func (u *unavailable) String() string { return u.where }
func (u *unavailable) fail() error    { return fmt.Errorf("%w: %w", ErrUnreachable, u.err) }
func (u *unavailable) List(context.Context) ([]Backup, error) {
	return nil, u.fail()
}
func (u *unavailable) Stat(context.Context, string) (Backup, error) { return Backup{}, u.fail() }
func (u *unavailable) Open(context.Context, Backup) (io.ReadCloser, error) {
	return nil, u.fail()
}
func (u *unavailable) Put(context.Context, string, io.Reader) (Backup, error) {
	return Backup{}, u.fail()
}
