package storage

import (
	"context"
	"fmt"
	"strings"
)

// ParseS3URL splits s3://bucket/key. The key is kept whole, suffixes (.gz, .gpg) and all.
func ParseS3URL(u string) (bucket, key string, err error) {
	rest, ok := strings.CutPrefix(u, "s3://")
	if !ok {
		return "", "", fmt.Errorf("%q is not an s3:// URL", u)
	}
	bucket, key, _ = strings.Cut(rest, "/")
	if bucket == "" {
		return "", "", fmt.Errorf("%q names no bucket", u)
	}
	return bucket, key, nil
}

// IsS3URL reports whether a backup argument is an s3:// URL rather than a name.
func IsS3URL(s string) bool { return strings.HasPrefix(s, "s3://") }

// ResolveS3URL finds the backup an s3://bucket/key URL names. It is read through the
// configured location over that bucket whose prefix the key is under (so its region,
// profile and endpoint apply); failing that, through an ad-hoc location named after the
// bucket, set up like the first configured S3 location (same endpoint and profile) or,
// without one, from the SDK's default chain.
func ResolveS3URL(ctx context.Context, u string, locs []Location, opts ...Option) (Location, Backup, error) {
	bucket, key, err := ParseS3URL(u)
	if err != nil {
		return nil, Backup{}, err
	}
	if key == "" || strings.HasSuffix(key, "/") {
		return nil, Backup{}, fmt.Errorf("%q names no backup, only a bucket or folder", u)
	}
	if err := checkKey(key); err != nil {
		return nil, Backup{}, err
	}
	var loc *S3
	var like *S3
	for _, l := range locs {
		s, ok := l.(*S3)
		if !ok {
			continue
		}
		if like == nil {
			like = s
		}
		if s.bucket == bucket && strings.HasPrefix(key, s.prefix) && (loc == nil || len(s.prefix) > len(loc.prefix)) {
			loc = s
		}
	}
	if loc == nil {
		lc := LocationConfig{Name: "s3://" + bucket, Type: "s3", Bucket: bucket}
		if like != nil {
			lc.Endpoint, lc.Profile, lc.PathStyle = like.config.Endpoint, like.config.Profile, like.config.PathStyle
			lc.Concurrency, lc.PartSize = like.config.Concurrency, like.config.PartSize
			if like.config.Endpoint != "" {
				lc.Region = like.config.Region
			}
		}
		l, err := Open(ctx, lc, opts...)
		if err != nil {
			return nil, Backup{}, err
		}
		loc = l.(*S3)
	}
	// The URL names one object: never a look-alike under postgres/full/.
	b, err := loc.statKey(ctx, key)
	if err != nil {
		return nil, Backup{}, err
	}
	return loc, b, nil
}
