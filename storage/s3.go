package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// The runbook's layout under a location's prefix.
const (
	fullDir        = "postgres/full/"
	incrementalDir = "postgres/incremental/"
	walDir         = "wal/"
	baseDir        = "postgres/base/"
)

// Defaults for streaming and uploading.
const (
	DefaultConcurrency = 4
	DefaultPartSize    = 8 << 20
	// minUploadPart is S3's smallest multipart part (all but the last).
	minUploadPart  = 5 << 20
	maxUploadParts = 10000
)

// S3 is a bucket and prefix holding backups in the runbook's layout: postgres/full/NAME,
// postgres/incremental/NAME, and WAL segments under wal/.
type S3 struct {
	name   string
	bucket string
	prefix string // "" or ending in "/"
	client *s3.Client
	opts   S3Options
	config LocationConfig // what Open was given, for ad-hoc locations on the same store

	mu           sync.Mutex
	region       string
	regionKnown  bool // the bucket's region has been asked for (or was configured)
	endpointDesc string
}

var _ Location = (*S3)(nil)

// S3Options tunes an S3 location; the zero value is usable.
type S3Options struct {
	// StorageClass for uploads, e.g. STANDARD_IA; empty leaves the bucket's default.
	StorageClass string
	// Concurrency is how many ranged GETs a download runs at once (default 4).
	Concurrency int
	// PartSize is the size of one ranged GET and of one upload part (default 8 MiB;
	// uploads use at least 5 MiB, S3's minimum).
	PartSize int64
	// DetectRegion asks the bucket for its region before the first request, so a
	// bucket in another region than the client's default answers instead of 301.
	DetectRegion bool
	// Retries is how many times one part of a download is resumed after a dropped
	// connection or a 5xx without making progress (default 5).
	Retries int
	// Backoff is the first wait before resuming; it doubles each time (default 200ms).
	Backoff time.Duration
	// IdleTimeout gives up on a connection that delivers no bytes for this long and
	// resumes on a new one (default 60s).
	IdleTimeout time.Duration
}

func (o S3Options) withDefaults() S3Options {
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.PartSize <= 0 {
		o.PartSize = DefaultPartSize
	}
	if o.Retries <= 0 {
		o.Retries = 5
	}
	if o.Backoff <= 0 {
		o.Backoff = 200 * time.Millisecond
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 60 * time.Second
	}
	return o
}

// NewS3 is a location named name over bucket/prefix, using client. Most callers use Open
// with a LocationConfig instead, which builds the client the way AWS users expect.
func NewS3(name string, client *s3.Client, bucket, prefix string, o S3Options) *S3 {
	prefix = strings.TrimLeft(prefix, "/")
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	co := client.Options()
	desc := "AWS S3"
	if co.BaseEndpoint != nil {
		desc = *co.BaseEndpoint
	}
	return &S3{
		name: name, bucket: bucket, prefix: prefix, client: client, opts: o.withDefaults(),
		region: co.Region, regionKnown: !o.DetectRegion, endpointDesc: desc,
	}
}

func (s *S3) Name() string { return s.name }

func (s *S3) String() string { return "s3://" + s.bucket + "/" + s.prefix }

// Bucket and Prefix say where the location is.
func (s *S3) Bucket() string { return s.bucket }
func (s *S3) Prefix() string { return s.prefix }

// Region is the region requests are sent to (after detection, the bucket's own).
func (s *S3) Region() string { s.mu.Lock(); defer s.mu.Unlock(); return s.region }

// regionOpt sends a request to the bucket's region, which may differ from the client's.
func (s *S3) regionOpt(o *s3.Options) {
	s.mu.Lock()
	o.Region = s.region
	s.mu.Unlock()
}

// ensureRegion asks the bucket where it lives once, when detection is on. A bucket in
// another region answers 301 with its region in x-amz-bucket-region.
func (s *S3) ensureRegion(ctx context.Context) error {
	s.mu.Lock()
	known := s.regionKnown
	s.mu.Unlock()
	if known {
		return nil
	}
	out, err := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &s.bucket}, s.regionOpt)
	region := ""
	if err == nil && out.BucketRegion != nil {
		region = *out.BucketRegion
	}
	var re *smithyhttp.ResponseError
	if err != nil && errors.As(err, &re) && re.Response != nil {
		region = re.Response.Header.Get("X-Amz-Bucket-Region")
	}
	if err != nil && region == "" && !errors.As(err, &re) {
		// could not ask at all (endpoint down, no credentials): say why, try again later
		return s.fail("", err)
	}
	s.mu.Lock()
	if region != "" {
		s.region = region
	}
	s.regionKnown = true
	s.mu.Unlock()
	return nil
}

// List returns every backup under the prefix, newest first. WAL segments (wal/) are not
// backups: LatestWAL reports on them.
func (s *S3) List(ctx context.Context) ([]Backup, error) {
	if err := s.ensureRegion(ctx); err != nil {
		return nil, err
	}
	// Top level first, with a delimiter, so a large WAL archive is never walked here.
	var out []Backup
	var subdirs []string
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{
		Bucket: &s.bucket, Prefix: &s.prefix, Delimiter: aws.String("/"),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx, s.regionOpt)
		if err != nil {
			return nil, s.fail("", err)
		}
		for _, cp := range page.CommonPrefixes {
			if d := aws.ToString(cp.Prefix); d != s.prefix+walDir && d != s.prefix+baseDir {
				subdirs = append(subdirs, d)
			}
		}
		out = s.appendObjects(out, page.Contents)
	}
	for _, d := range subdirs {
		p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: aws.String(d)})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx, s.regionOpt)
			if err != nil {
				return nil, s.fail("", err)
			}
			out = s.appendObjects(out, page.Contents)
		}
	}
	SortNewestFirst(out)
	return out, nil
}

func (s *S3) appendObjects(out []Backup, objs []types.Object) []Backup {
	for _, o := range objs {
		key := aws.ToString(o.Key)
		if strings.HasSuffix(key, "/") { // a "folder" marker some tools create
			continue
		}
		out = append(out, s.backup(key, aws.ToInt64(o.Size), aws.ToTime(o.LastModified), aws.ToString(o.ETag)))
	}
	return out
}

func (s *S3) backup(key string, size int64, modified time.Time, etag string) Backup {
	b := ParseName(path.Base(key))
	b.Key = key
	b.Location = s.name
	b.Size = size
	b.Modified = modified.UTC()
	b.ETag = etag
	return b
}

// LatestWAL is the newest archived WAL segment under wal/ and when it was archived: the
// freshest point any recovery could reach. ErrNotFound when no segment is archived.
func (s *S3) LatestWAL(ctx context.Context) (name string, modified time.Time, err error) {
	if err := s.ensureRegion(ctx); err != nil {
		return "", time.Time{}, err
	}
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: aws.String(s.prefix + walDir)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx, s.regionOpt)
		if err != nil {
			return "", time.Time{}, s.fail("", err)
		}
		for _, o := range page.Contents {
			key, mod := aws.ToString(o.Key), aws.ToTime(o.LastModified)
			if strings.HasSuffix(key, "/") {
				continue
			}
			// segment names grow with time, so on equal times the later name is newer
			if mod.After(modified) || (mod.Equal(modified) && path.Base(key) > name) {
				name, modified = path.Base(key), mod
			}
		}
	}
	if name == "" {
		return "", time.Time{}, fmt.Errorf("%w: no WAL segment archived under %s%s", ErrNotFound, s, walDir)
	}
	return name, modified.UTC(), nil
}

// candidates are the keys a name or key may be stored under, most likely first.
func (s *S3) candidates(name string) []string {
	if strings.Contains(name, "/") {
		if strings.HasPrefix(name, s.prefix) {
			return []string{name}
		}
		return []string{s.prefix + name, name}
	}
	switch ParseName(name).Kind {
	case KindIncremental:
		return []string{s.prefix + incrementalDir + name, s.prefix + fullDir + name, s.prefix + name}
	default:
		return []string{s.prefix + fullDir + name, s.prefix + incrementalDir + name, s.prefix + name}
	}
}

// Stat finds a backup by its name (looked up under postgres/full/, postgres/incremental/
// and the prefix itself) or by its key.
func (s *S3) Stat(ctx context.Context, name string) (Backup, error) {
	return s.stat(ctx, name, s.candidates(name))
}

// statKey finds the object at exactly key: what an s3://bucket/key URL names.
func (s *S3) statKey(ctx context.Context, key string) (Backup, error) {
	return s.stat(ctx, key, []string{key})
}

func (s *S3) stat(ctx context.Context, name string, keys []string) (Backup, error) {
	if err := checkKey(name); err != nil {
		return Backup{}, err
	}
	if err := s.ensureRegion(ctx); err != nil {
		return Backup{}, err
	}
	for _, key := range keys {
		b, err := s.head(ctx, key)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		return b, err
	}
	// A HEAD on a bucket that does not exist is a bare 404 too: tell the two apart
	// (fail maps a 404 with no key to "no such bucket").
	if _, err := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &s.bucket}, s.regionOpt); err != nil {
		return Backup{}, s.fail("", err)
	}
	return Backup{}, fmt.Errorf("%w: %q in %s", ErrNotFound, name, s)
}

func (s *S3) head(ctx context.Context, key string) (Backup, error) {
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: &key}, s.regionOpt)
	if err != nil {
		return Backup{}, s.fail(key, err)
	}
	return s.backup(key, aws.ToInt64(out.ContentLength), aws.ToTime(out.LastModified), aws.ToString(out.ETag)), nil
}

// Open streams the backup with concurrent ranged GETs, in order, resuming dropped
// connections; the object is pinned to the version b describes (or, if b carries no
// size or ETag, to the version found when opening).
func (s *S3) Open(ctx context.Context, b Backup) (io.ReadCloser, error) {
	if err := checkKey(b.Key); err != nil {
		return nil, err
	}
	if err := s.ensureRegion(ctx); err != nil {
		return nil, err
	}
	if b.Name == "" {
		b.Name = path.Base(b.Key)
	}
	// A listed backup carries its identity: the first ranged GET checks it, so no HEAD
	// is needed. Otherwise pin what is there now.
	pin := b
	if b.ETag == "" || b.Size <= 0 {
		cur, err := s.head(ctx, b.Key)
		if err != nil {
			return nil, err
		}
		if b.ETag != "" && cur.ETag != "" && normETag(b.ETag) != normETag(cur.ETag) || b.Size > 0 && cur.Size != b.Size ||
			// listings give milliseconds, HEAD whole seconds
			!b.Modified.IsZero() && !cur.Modified.Truncate(time.Second).Equal(b.Modified.Truncate(time.Second)) {
			return nil, fmt.Errorf("%w: %s (listed %d bytes modified %s, now %d bytes modified %s)",
				ErrChanged, b.Name, b.Size, b.Modified.Format(time.RFC3339), cur.Size, cur.Modified.Format(time.RFC3339))
		}
		pin = cur
	}
	return newRangeReader(ctx, s, b.Key, b.Name, pin), nil
}

func normETag(e string) string { return strings.Trim(strings.TrimPrefix(e, "W/"), `"`) }

// checkKey refuses keys that could not be a backup's name on a local disk: a key whose
// last element is "..", ".", or empty would escape or clobber the spool directory a
// download is written to, and ".." elements anywhere are a sign of a crafted key.
func checkKey(key string) error {
	if key == "" {
		return errors.New("empty backup name")
	}
	for _, el := range strings.Split(key, "/") {
		if el == ".." {
			return fmt.Errorf("backup key %q has a \"..\" element; refusing a name that could escape a local directory", key)
		}
	}
	if base := path.Base(key); base == "." || base == "/" || strings.HasSuffix(key, "/") || strings.ContainsAny(base, "\\\x00") {
		return fmt.Errorf("backup key %q does not end in a plain file name", key)
	}
	return nil
}

// SpoolPath is where a backup may be written inside dir: dir joined with the backup's
// base name, refused if the name would escape dir.
func SpoolPath(dir string, b Backup) (string, error) {
	key := b.Key
	if key == "" {
		key = b.Name
	}
	if err := checkKey(key); err != nil {
		return "", err
	}
	base := path.Base(key)
	if b.Name != "" && b.Name != base {
		return "", fmt.Errorf("backup name %q does not match its key %q", b.Name, key)
	}
	return strings.TrimRight(dir, "/") + "/" + base, nil
}

// fail turns an SDK error into one line that says what failed, wrapping ErrNotFound or
// ErrUnreachable where that is what it means. key is "" for bucket-wide operations.
func (s *S3) fail(key string, err error) error {
	where := s.String()
	if key != "" {
		where = "s3://" + s.bucket + "/" + key
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %s: timed out", ErrUnreachable, where)
	}
	var ae smithy.APIError
	var re *smithyhttp.ResponseError
	status := 0
	if errors.As(err, &re) && re.Response != nil {
		status = re.Response.StatusCode
	}
	if errors.As(err, &ae) {
		switch code := ae.ErrorCode(); code {
		case "NoSuchKey", "NotFound":
			if key == "" {
				return fmt.Errorf("%w: %s: no such bucket", ErrUnreachable, where)
			}
			return fmt.Errorf("%w: %s", ErrNotFound, where)
		case "NoSuchBucket":
			return fmt.Errorf("%w: %s: no such bucket", ErrUnreachable, "s3://"+s.bucket)
		case "AccessDenied", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
			"InvalidToken", "TokenRefreshRequired", "AllAccessDisabled", "AccountProblem":
			return fmt.Errorf("%w: %s: access denied (%s): check the AWS credentials and profile for this location", ErrUnreachable, where, code)
		case "PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException", "MovedPermanently":
			region := ""
			if re != nil && re.Response != nil {
				region = re.Response.Header.Get("X-Amz-Bucket-Region")
			}
			if region == "" {
				region = "another region"
			}
			return fmt.Errorf("%w: %s: the bucket is in %s, not %s: set the location's region", ErrUnreachable, where, region, s.Region())
		case "PreconditionFailed":
			return fmt.Errorf("%w: %s", ErrChanged, where)
		}
		if status >= 500 || status == 0 {
			return fmt.Errorf("%w: %s: %s: %s", ErrUnreachable, where, ae.ErrorCode(), ae.ErrorMessage())
		}
		return fmt.Errorf("%s: %s: %s", where, ae.ErrorCode(), ae.ErrorMessage())
	}
	var se *smithyhttp.RequestSendError
	if errors.As(err, &se) {
		return fmt.Errorf("%w: %s: cannot reach %s: %s", ErrUnreachable, where, s.endpointDesc, rootCause(se.Err))
	}
	if strings.Contains(err.Error(), "get identity") || strings.Contains(err.Error(), "credentials") {
		return fmt.Errorf("%w: %s: no usable AWS credentials (set AWS_PROFILE, or the location's profile): %s", ErrUnreachable, where, rootCause(err))
	}
	if status >= 500 {
		return fmt.Errorf("%w: %s: server error %d", ErrUnreachable, where, status)
	}
	return fmt.Errorf("%s: %w", where, err)
}

// rootCause is the innermost error's text: the SDK's chain repeats operation names.
func rootCause(err error) string {
	for {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
			continue
		}
		next := errors.Unwrap(err)
		if next == nil {
			return err.Error()
		}
		err = next
	}
}
