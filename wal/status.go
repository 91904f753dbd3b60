package wal

import (
	"context"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"drconsole/checklists"
	"drconsole/storage"
)

// Status is how the server's WAL archiving stands against an RPO.
type Status struct {
	Server         string        `json:"server"`
	ArchiveMode    string        `json:"archive_mode"`
	ArchiveCommand string        `json:"archive_command"`
	ArchiveTimeout time.Duration `json:"archive_timeout_ns"`
	Archived       int64         `json:"archived_count"`
	LastArchived   string        `json:"last_archived_wal,omitempty"`
	LastArchivedAt time.Time     `json:"last_archived_time,omitzero"`
	Failed         int64         `json:"failed_count"`
	LastFailed     string        `json:"last_failed_wal,omitempty"`
	LastFailedAt   time.Time     `json:"last_failed_time,omitzero"`
	// Pending: WAL has been written since the last archived segment (else the server is
	// idle and nothing waits to be archived, however old the last archive is).
	Pending   bool              `json:"pending"`
	Now       time.Time         `json:"now"` // the server's clock
	Locations []LocationStatus  `json:"locations"`
	RPO       time.Duration     `json:"rpo_ns"`
	Holds     bool              `json:"rpo_holds"`
	Why       []string          `json:"why,omitempty"` // why the RPO does not hold
	Warnings  []string          `json:"warnings,omitempty"`
	Settings  map[string]string `json:"-"`
}

// LocationStatus is the newest file of one location's WAL archive.
type LocationStatus struct {
	Name   string    `json:"name"`
	Where  string    `json:"where"`
	Newest string    `json:"newest,omitempty"` // the WAL file's name
	At     time.Time `json:"at,omitzero"`      // when it was stored
	Files  int       `json:"files"`
	Error  string    `json:"error,omitempty"`
}

// Check reads the server's archiver and the archive in each location and judges whether
// the RPO holds: archiving on, through a command, not failing since its last success,
// with an archive_timeout within the RPO, and no WAL written longer ago than the RPO
// still waiting to be archived.
func Check(ctx context.Context, conn *pgx.Conn, server string, locs []storage.Folder, rpo time.Duration) (*Status, error) {
	s := &Status{Server: server, RPO: rpo}
	var timeoutSecs int64
	var lastAt, failedAt *time.Time
	var lastWAL, failedWAL *string
	var insertFile *string
	var insertOffset, segSize int64
	err := conn.QueryRow(ctx, `SELECT current_setting('archive_mode'), current_setting('archive_command'),
		(SELECT setting::bigint FROM pg_settings WHERE name = 'archive_timeout'),
		a.archived_count, a.last_archived_wal, a.last_archived_time, a.failed_count, a.last_failed_wal, a.last_failed_time,
		clock_timestamp(), (SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size'),
		CASE WHEN NOT pg_is_in_recovery() THEN pg_walfile_name(pg_current_wal_insert_lsn()) END,
		CASE WHEN NOT pg_is_in_recovery() THEN ((pg_current_wal_insert_lsn() - '0/0'::pg_lsn) % (SELECT setting::numeric FROM pg_settings WHERE name = 'wal_segment_size'))::bigint ELSE 0 END
		FROM pg_stat_archiver a`).Scan(&s.ArchiveMode, &s.ArchiveCommand, &timeoutSecs, &s.Archived, &lastWAL, &lastAt,
		&s.Failed, &failedWAL, &failedAt, &s.Now, &segSize, &insertFile, &insertOffset)
	if err != nil {
		return nil, fmt.Errorf("reading pg_stat_archiver: %w", err)
	}
	s.ArchiveTimeout = time.Duration(timeoutSecs) * time.Second
	if lastWAL != nil {
		s.LastArchived = *lastWAL
	}
	if lastAt != nil {
		s.LastArchivedAt = lastAt.UTC()
	}
	if failedWAL != nil {
		s.LastFailed = *failedWAL
	}
	if failedAt != nil {
		s.LastFailedAt = failedAt.UTC()
	}
	s.Now = s.Now.UTC()
	if insertFile != nil {
		s.Pending = pending(s.LastArchived, *insertFile, insertOffset, segSize)
	}
	for _, w := range locs {
		s.Locations = append(s.Locations, newest(ctx, w))
	}
	s.judge()
	return s, nil
}

// pending: WAL written since the last archived segment (lastFile) waits to be archived,
// the server writing at offset of segment insertFile. A server that switched segments
// (archive_timeout) and wrote nothing since has nothing waiting.
func pending(lastFile, insertFile string, offset, segSize int64) bool {
	cur, ok := parseSegment(insertFile)
	last, known := parseSegment(lastFile)
	if !ok || !known {
		return ok // never archived: whatever is written waits
	}
	cur.tli, last.tli = 0, 0
	next := last.next(segSize)
	const longPageHeader = 40
	return cur.String() > next.String() || cur == next && offset > longPageHeader
}

// newest finds the newest WAL file a location holds.
func newest(ctx context.Context, w storage.Folder) LocationStatus {
	ls := LocationStatus{Name: w.Name(), Where: w.String()}
	objs, err := w.Find(ctx, "")
	if err != nil {
		ls.Error = oneLine(err)
		return ls
	}
	for _, o := range objs {
		b := path.Base(o.Key)
		name := b
		if i := strings.IndexAny(b, "-."); i == 24 {
			name = b[:24]
		}
		if _, err := Kind(name); err != nil && !strings.HasSuffix(b, ".history") {
			continue
		}
		ls.Files++
		if o.Modified.After(ls.At) || o.Modified.Equal(ls.At) && name > ls.Newest {
			ls.Newest, ls.At = name, o.Modified.UTC()
		}
	}
	return ls
}

func (s *Status) judge() {
	var why []string
	if s.ArchiveMode == "off" {
		why = append(why, "archive_mode is off: no WAL is archived")
	}
	if strings.TrimSpace(s.ArchiveCommand) == "" || s.ArchiveCommand == "(disabled)" {
		why = append(why, "archive_command is not set")
	}
	if s.ArchiveTimeout <= 0 || s.ArchiveTimeout > s.RPO {
		why = append(why, fmt.Sprintf("archive_timeout is %s: a quiet period's writes can wait in an unfilled segment longer than the RPO of %s", DurationWord(s.ArchiveTimeout), DurationWord(s.RPO)))
	}
	if !s.LastFailedAt.IsZero() && (s.LastArchivedAt.IsZero() || s.LastFailedAt.After(s.LastArchivedAt)) {
		why = append(why, fmt.Sprintf("archiving is failing: %s failed %s ago, after the last success", s.LastFailed, DurationWord(s.Now.Sub(s.LastFailedAt))))
	}
	if s.Pending && !s.LastArchivedAt.IsZero() && s.Now.Sub(s.LastArchivedAt) > s.RPO {
		why = append(why, fmt.Sprintf("the last segment was archived %s ago, and WAL written since waits", DurationWord(s.Now.Sub(s.LastArchivedAt))))
	}
	for _, l := range s.Locations {
		switch {
		case l.Error != "":
			why = append(why, fmt.Sprintf("location %s cannot be read: %s", l.Name, l.Error))
		case s.LastArchived != "" && l.Newest != "" && l.Newest < s.LastArchived && !strings.HasSuffix(l.Newest, ".history"):
			s.Warnings = append(s.Warnings, fmt.Sprintf("location %s's newest file is %s, older than the server's last archived %s: is archive_command archiving there?", l.Name, l.Newest, s.LastArchived))
		case s.LastArchived != "" && l.Files == 0:
			why = append(why, fmt.Sprintf("location %s holds no WAL, though the server has archived %s: archive_command archives elsewhere", l.Name, s.LastArchived))
		}
	}
	s.Why, s.Holds = why, len(why) == 0
}

// Timeout is the archive_timeout to suggest for an RPO: a quarter of it, from 1 to 15
// minutes.
func Timeout(rpo time.Duration) time.Duration {
	return min(max(rpo/4, time.Minute), 15*time.Minute).Truncate(time.Minute)
}

// DurationWord is a duration as the runbook writes it (10m, 1h30m), 0 as "0 (off)".
func DurationWord(d time.Duration) string {
	if d <= 0 {
		return "0 (off)"
	}
	return checklists.FormatDuration(d)
}
