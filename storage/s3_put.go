package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// keyFor is where Put stores a backup named name: the runbook's folder for its kind.
func (s *S3) keyFor(name string) string {
	switch ParseName(name).Kind {
	case KindFull:
		return s.prefix + fullDir + name
	case KindIncremental:
		return s.prefix + incrementalDir + name
	}
	return s.prefix + name
}

// Put uploads a new backup under the runbook's folder for its kind. A backup that fits
// in one part goes up in one PUT; a larger one as a multipart upload of up to
// Concurrency parts at a time (memory: Concurrency × PartSize). Readers see the whole
// object or nothing: if r or the upload fails, the multipart upload is aborted. An
// existing backup of that name is never overwritten.
func (s *S3) Put(ctx context.Context, name string, r io.Reader) (Backup, error) {
	return s.put(ctx, name, r, false)
}

// put is Put. contentNamed: the name says what the content is (a WAL file's name carries
// its SHA-256) and the caller has just listed it as absent, so a HEAD before a single PUT
// finds nothing that If-None-Match would not refuse anyway, and an object under that name
// could only hold the same bytes; one HEAD after it would only say what the PUT just
// answered. Two round trips fewer for every WAL file archived.
func (s *S3) put(ctx context.Context, name string, r io.Reader, contentNamed bool) (Backup, error) {
	if name == "" || strings.ContainsAny(name, `/\`) || name == "." || name == ".." {
		return Backup{}, fmt.Errorf("backup name %q is not a plain file name", name)
	}
	if err := s.ensureRegion(ctx); err != nil {
		return Backup{}, err
	}
	key := s.keyFor(name)
	partSize := max(s.opts.PartSize, minUploadPart)
	// An in-memory reader that fits in one part is sent as it is: no part-sized buffer to
	// allocate and copy into.
	small, known := r.(interface {
		io.ReadSeeker
		Len() int
	})
	known = known && int64(small.Len()) <= partSize
	where := "s3://" + s.bucket + "/" + key
	if !contentNamed || !known {
		if _, err := s.head(ctx, key); err == nil {
			return Backup{}, fmt.Errorf("%s %w; backups are never overwritten", where, ErrExists)
		} else if !errors.Is(err, ErrNotFound) {
			return Backup{}, err
		}
	}
	if known {
		return s.putOne(ctx, key, small, int64(small.Len()), contentNamed)
	}

	first := make([]byte, partSize)
	n, err := io.ReadFull(readerWithContext{ctx, r}, first)
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		return Backup{}, err
	}
	if err != nil { // the whole backup fits in one part
		return s.putOne(ctx, key, bytes.NewReader(first[:n]), int64(n), false)
	}
	if err := s.multipart(ctx, key, first, partSize, r); err != nil {
		return Backup{}, err
	}
	return s.head(ctx, key)
}

// putOne stores body in one PUT, refused if the key is taken (If-None-Match). trust: what
// it stored is described from the PUT's answer, not asked for again.
func (s *S3) putOne(ctx context.Context, key string, body io.ReadSeeker, size int64, trust bool) (Backup, error) {
	out, err := s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket: &s.bucket, Key: &key, Body: body, ContentLength: aws.Int64(size),
		StorageClass: types.StorageClass(s.opts.StorageClass), IfNoneMatch: aws.String("*"),
	}, s.regionOpt)
	if err != nil {
		return Backup{}, s.putFailed(key, err)
	}
	if trust {
		return s.backup(key, size, time.Now(), aws.ToString(out.ETag)), nil
	}
	return s.head(ctx, key)
}

func (s *S3) putFailed(key string, err error) error {
	err = s.fail(key, err)
	if errors.Is(err, ErrChanged) { // If-None-Match: someone else stored it meanwhile
		return fmt.Errorf("s3://%s/%s %w; backups are never overwritten", s.bucket, key, ErrExists)
	}
	return err
}

func (s *S3) multipart(ctx context.Context, key string, first []byte, partSize int64, r io.Reader) error {
	created, err := s.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket: &s.bucket, Key: &key, StorageClass: types.StorageClass(s.opts.StorageClass),
	}, s.regionOpt)
	if err != nil {
		return s.fail(key, err)
	}
	uploadID := created.UploadId
	abort := func(cause error) error {
		// The caller's context may be what failed; the abort must still happen.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if _, err := s.client.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{
			Bucket: &s.bucket, Key: &key, UploadId: uploadID,
		}, s.regionOpt); err != nil {
			return fmt.Errorf("%w (and aborting the unfinished upload %s failed: %v)", cause, aws.ToString(uploadID), err)
		}
		return cause
	}

	pctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		parts []types.CompletedPart
	)
	free := make(chan []byte, s.opts.Concurrency)
	allocated := 1
	send := func(num int32, data []byte) {
		defer wg.Done()
		defer func() { free <- data[:cap(data)] }()
		out, err := s.client.UploadPart(pctx, &s3.UploadPartInput{
			Bucket: &s.bucket, Key: &key, UploadId: uploadID, PartNumber: aws.Int32(num),
			Body: bytes.NewReader(data), ContentLength: aws.Int64(int64(len(data))),
		}, s.regionOpt)
		if err != nil {
			cancel(s.fail(key, err))
			return
		}
		mu.Lock()
		parts = append(parts, types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(num)})
		mu.Unlock()
	}

	data := first
	var readErr error
	tooManyParts := fmt.Errorf("backup is larger than %d parts of %d MiB: raise the location's part_size", maxUploadParts, partSize>>20)
	for num := int32(1); ; num++ {
		if num > maxUploadParts {
			readErr = tooManyParts
			break
		}
		wg.Add(1)
		go send(num, data)
		var buf []byte
		if allocated < s.opts.Concurrency {
			buf, allocated = make([]byte, partSize), allocated+1
		} else {
			select {
			case buf = <-free:
			case <-pctx.Done():
			}
		}
		if pctx.Err() != nil {
			break
		}
		n, err := io.ReadFull(readerWithContext{pctx, r}, buf)
		if err == io.EOF {
			break
		}
		if err != nil && err != io.ErrUnexpectedEOF {
			readErr = err
			break
		}
		data = buf[:n]
		if err == io.ErrUnexpectedEOF { // the last, short part
			if num+1 > maxUploadParts {
				readErr = tooManyParts
				break
			}
			wg.Add(1)
			go send(num+1, data)
			break
		}
	}
	if readErr != nil {
		cancel(readErr)
	}
	wg.Wait()
	if err := context.Cause(pctx); err != nil {
		return abort(err)
	}

	sort.Slice(parts, func(i, j int) bool { return *parts[i].PartNumber < *parts[j].PartNumber })
	if _, err := s.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: &s.bucket, Key: &key, UploadId: uploadID,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
		IfNoneMatch:     aws.String("*"),
	}, s.regionOpt); err != nil {
		return abort(s.putFailed(key, err))
	}
	return nil
}
