package embedded

import (
	"math"
	"strconv"

	"github.com/esmill/esmill/sierradb/internal/resp3"
)

// Values INFO CACHE reports for the cache's configuration, SierraDB's
// defaults.
const (
	cacheMaxBytes  = 256 << 20
	cacheBlockSize = 64 << 10
)

// PING -> +PONG
func cmdPing(c *conn, a *args) error {
	if err := a.end(); err != nil {
		return err
	}
	c.write(func(w *resp3.Writer) { w.WriteSimpleString("PONG") })
	return nil
}

// HELLO <protover>
func cmdHello(c *conn, a *args) error {
	v, err := a.next("number")
	if err != nil {
		return err
	}
	n, ok := int64Value(v)
	if !ok {
		return unexpected(v, "number")
	}
	if err := a.end(); err != nil {
		return err
	}
	if n != 3 {
		return errorf(msgUnsupportedVersion, strconv.FormatInt(n, 10))
	}
	s := c.srv
	c.write(func(w *resp3.Writer) {
		w.WriteMapHeader(4)
		w.WriteBlobString("server")
		w.WriteBlobString("sierradb")
		w.WriteBlobString("version")
		w.WriteBlobString(Version)
		w.WriteBlobString("peer_id")
		w.WriteBlobString(s.peerID)
		w.WriteBlobString("num_partitions")
		w.WriteInt(int64(s.cfg.PartitionCount))
	})
	return nil
}

// INFO CACHE. In directory mode the figures are those of the block cache the
// logs are read through. In memory mode there is no cache and the numbers are
// plausible, not measured: hits and misses count the events the read
// commands found and did not find, and the cache is modelled as holding
// every stored byte up to SierraDB's default capacity.
func cmdInfo(c *conn, a *args) error {
	v, err := a.next("CACHE")
	if err != nil {
		return err
	}
	if kw, _ := keywordOf(v); kw != "CACHE" {
		return unexpected(v, "CACHE")
	}
	if err := a.end(); err != nil {
		return err
	}
	s := c.srv
	hits, misses := s.cacheHits.Load(), s.cacheMisses.Load()
	maxBytes := int64(cacheMaxBytes)
	mem := min(s.store.bytes.Load(), cacheMaxBytes)
	entries := (mem + cacheBlockSize - 1) / cacheBlockSize
	var evictions int64
	if b := s.store.bytes.Load(); b > cacheMaxBytes {
		evictions = (b - cacheMaxBytes + cacheBlockSize - 1) / cacheBlockSize
	}
	if bc := s.store.cache; bc != nil {
		// Directory mode: the block cache's own figures.
		hits, misses, evictions = bc.hits.Load(), bc.misses.Load(), int64(bc.evictions.Load())
		var n int
		n, mem = bc.stats()
		entries, maxBytes = int64(n), bc.max
	}
	ratio := 0.0
	if hits+misses > 0 {
		ratio = math.Round(float64(hits)/float64(hits+misses)*1000) / 1000
	}
	c.write(func(w *resp3.Writer) {
		w.WriteMapHeader(8)
		w.WriteBlobString("hits")
		w.WriteInt(int64(hits))
		w.WriteBlobString("misses")
		w.WriteInt(int64(misses))
		w.WriteBlobString("hit_ratio")
		w.WriteDouble(ratio)
		w.WriteBlobString("entries")
		w.WriteInt(entries)
		w.WriteBlobString("memory_bytes")
		w.WriteInt(mem)
		w.WriteBlobString("max_bytes")
		w.WriteInt(maxBytes)
		w.WriteBlobString("block_size_bytes")
		w.WriteInt(cacheBlockSize)
		w.WriteBlobString("evictions")
		w.WriteInt(evictions)
	})
	return nil
}
