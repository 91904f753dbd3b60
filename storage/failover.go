package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// ListTimeout bounds how long ListAll waits for one location, so a hung endpoint shows as
// unreachable instead of freezing the console.
var ListTimeout = 30 * time.Second

// LocationStatus is how listing one location went.
type LocationStatus struct {
	Name      string    `json:"name"`
	Where     string    `json:"where"`
	Reachable bool      `json:"reachable"`
	Err       string    `json:"error,omitempty"` // one line: why it is unreachable
	Backups   int       `json:"backups"`
	LatestWAL string    `json:"latest_wal,omitempty"` // newest archived WAL segment, where WAL is kept
	WALTime   time.Time `json:"latest_wal_time,omitzero"`
}

// Entry is one backup name and every location holding a copy of it.
type Entry struct {
	Name      string    `json:"name"`
	Kind      Kind      `json:"kind"`
	Time      time.Time `json:"time,omitzero"`
	Locations []string  `json:"locations"` // in configuration order
	Copies    []Backup  `json:"-"`         // the same order
}

// Sole reports whether only one location holds the backup.
func (e Entry) Sole() bool { return len(e.Locations) == 1 }

// Catalog is every backup of every location, with how each location answered.
type Catalog struct {
	Locations []LocationStatus `json:"locations"`
	Backups   []Backup         `json:"-"`       // every copy, newest first; ties in location order
	Entries   []Entry          `json:"backups"` // one per name, newest first
}

// WALLister is a location that archives WAL segments (S3 does).
type WALLister interface {
	LatestWAL(ctx context.Context) (name string, modified time.Time, err error)
}

// ListAll lists every location at once. A location that fails is reported in its status
// and otherwise skipped: the catalog is whatever could be seen.
func ListAll(ctx context.Context, locs []Location) Catalog {
	c := Catalog{Locations: make([]LocationStatus, len(locs))}
	lists := make([][]Backup, len(locs))
	var wg sync.WaitGroup
	for i, loc := range locs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lctx, cancel := context.WithTimeout(ctx, ListTimeout)
			defer cancel()
			st := LocationStatus{Name: loc.Name(), Where: loc.String()}
			bs, err := loc.List(lctx)
			if err != nil {
				st.Err = oneLine(err)
			} else {
				st.Reachable, st.Backups, lists[i] = true, len(bs), bs
				if w, ok := loc.(WALLister); ok {
					if name, t, err := w.LatestWAL(lctx); err == nil {
						st.LatestWAL, st.WALTime = name, t
					}
				}
			}
			c.Locations[i] = st
		}()
	}
	wg.Wait()
	byName := map[string]int{}
	for _, bs := range lists {
		for _, b := range bs {
			c.Backups = append(c.Backups, b)
			i, ok := byName[b.Name]
			if !ok {
				i = len(c.Entries)
				byName[b.Name] = i
				c.Entries = append(c.Entries, Entry{Name: b.Name, Kind: b.Kind, Time: b.SortTime()})
			}
			c.Entries[i].Locations = append(c.Entries[i].Locations, b.Location)
			c.Entries[i].Copies = append(c.Entries[i].Copies, b)
		}
	}
	SortNewestFirst(c.Backups) // stable: equal backups keep location order
	sortEntries(c.Entries)
	return c
}

func sortEntries(es []Entry) {
	bs := make([]Backup, len(es))
	idx := map[string]Entry{}
	for i, e := range es {
		bs[i] = Backup{Name: e.Name, Time: e.Time}
		idx[e.Name] = e
	}
	SortNewestFirst(bs)
	for i, b := range bs {
		es[i] = idx[b.Name]
	}
}

// Where lists the locations holding a backup of that name, in configuration order.
func (c Catalog) Where(name string) []string {
	for _, e := range c.Entries {
		if e.Name == name {
			return e.Locations
		}
	}
	return nil
}

// Latest is the newest full backup of the application (its backups' names carry one of
// prefixes; any prefix when none is given) in any reachable location; between copies of
// the same age the earlier location (the primary) wins. ErrNotFound when there is none,
// with why each location had none.
func Latest(c Catalog, prefixes ...string) (Backup, error) {
	rank := map[string]int{}
	for i, l := range c.Locations {
		rank[l.Name] = i
	}
	var best Backup
	found := false
	for _, b := range c.Backups {
		if b.Kind != KindFull || !b.Of(prefixes) {
			continue
		}
		if !found || b.SortTime().After(best.SortTime()) ||
			b.SortTime().Equal(best.SortTime()) && rank[b.Location] < rank[best.Location] {
			best, found = b, true
		}
	}
	if found {
		return best, nil
	}
	var why []string
	for _, l := range c.Locations {
		if l.Reachable {
			why = append(why, l.Name+": no full backup"+prefixWords(prefixes))
		} else {
			why = append(why, l.Name+": "+l.Err)
		}
	}
	if len(why) == 0 {
		why = []string{"no location configured"}
	}
	return Backup{}, fmt.Errorf("%w: no full backup in any reachable location (%s)", ErrNotFound, strings.Join(why, "; "))
}

// Skip is a location passed over, and why.
type Skip struct {
	Location string `json:"location"`
	Reason   string `json:"reason"`
	Err      error  `json:"-"`
}

// Found is the location chosen to serve a backup, with the locations tried before it and
// why each was skipped: the caller must say so (stderr, --json), never fall back silently.
type Found struct {
	Backup   Backup   `json:"backup"`
	Location Location `json:"-"`
	Served   string   `json:"served_by"`
	Skipped  []Skip   `json:"skipped,omitempty"`
}

// Served is a backup stream and the location serving it.
type Served struct {
	io.ReadCloser `json:"-"`
	Found
}

// FindWithFailover finds the backup called name in the first location, in order, that has
// it; a location that is unreachable, denies access, lacks the bucket or takes longer than
// ListTimeout is skipped with the reason. The error, when every location fails, lists each
// reason; it wraps ErrNotFound when no reachable location has the backup.
func FindWithFailover(ctx context.Context, locs []Location, name string) (*Found, error) {
	f, err := find(ctx, locs, name, nil)
	if err != nil {
		return nil, failoverErr(name, f.Skipped, len(locs))
	}
	return f, nil
}

// OpenWithFailover is FindWithFailover, then opens the backup; a location that has it but
// cannot stream it is skipped like one that cannot be reached.
func OpenWithFailover(ctx context.Context, locs []Location, name string) (*Served, error) {
	var skipped []Skip
	for rest := locs; ; {
		f, err := find(ctx, rest, name, skipped)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, failoverErr(name, f.Skipped, len(locs))
		}
		rc, err := f.Location.Open(ctx, f.Backup)
		if err == nil {
			return &Served{ReadCloser: rc, Found: *f}, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		skipped = append(f.Skipped, Skip{Location: f.Location.Name(), Reason: oneLine(err), Err: err})
		for i, l := range rest {
			if l == f.Location {
				rest = rest[i+1:]
				break
			}
		}
	}
}

// find stats name in each location in turn; on failure the returned Found still carries
// every skip, for the error.
func find(ctx context.Context, locs []Location, name string, skipped []Skip) (*Found, error) {
	for _, loc := range locs {
		// A hung endpoint must not hold up the others; only finding the backup is
		// bounded, the stream itself lives as long as ctx.
		sctx, cancel := context.WithTimeout(ctx, ListTimeout)
		b, err := loc.Stat(sctx, name)
		cancel()
		if err == nil {
			return &Found{Backup: b, Location: loc, Served: loc.Name(), Skipped: skipped}, nil
		}
		if ctx.Err() != nil {
			return &Found{Skipped: skipped}, ctx.Err()
		}
		skipped = append(skipped, Skip{Location: loc.Name(), Reason: oneLine(err), Err: err})
	}
	return &Found{Skipped: skipped}, ErrNotFound
}

func failoverErr(name string, skipped []Skip, locations int) error {
	var why []string
	allNotFound := true
	for _, s := range skipped {
		why = append(why, s.Location+": "+s.Reason)
		if !errors.Is(s.Err, ErrNotFound) {
			allNotFound = false
		}
	}
	if locations == 0 {
		why = []string{"no location configured"}
	}
	if allNotFound {
		return fmt.Errorf("%w: %q (%s)", ErrNotFound, name, strings.Join(why, "; "))
	}
	return fmt.Errorf("%w: backup %q could not be found or opened in any location (%s)", ErrUnreachable, name, strings.Join(why, "; "))
}

func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// Copied is the outcome of storing a backup in one location.
type Copied struct {
	Location string `json:"location"`
	Backup   Backup `json:"backup,omitzero"`
	Err      error  `json:"-"`
	Error    string `json:"error,omitempty"`
}

// Replicate stores backup b from src in each of dsts in turn (the runbook uploads to the
// primary, then again to the secondary), reading src afresh for each. A failure in one
// destination does not stop the next; each outcome is returned, in order.
func Replicate(ctx context.Context, src Location, b Backup, dsts []Location) []Copied {
	out := make([]Copied, 0, len(dsts))
	for _, dst := range dsts {
		c := Copied{Location: dst.Name()}
		rc, err := src.Open(ctx, b)
		if err == nil {
			c.Backup, err = dst.Put(ctx, b.Name, rc)
			if cerr := rc.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			c.Err, c.Error = err, oneLine(err)
		}
		out = append(out, c)
	}
	return out
}

func prefixWords(prefixes []string) string {
	if len(prefixes) == 0 {
		return ""
	}
	return " named " + strings.Join(prefixes, "_full_… or ") + "_full_…"
}
