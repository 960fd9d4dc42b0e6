package embedded

import (
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
)

// blockSize is the unit the cache reads partition logs in, like SierraDB's
// block cache.
const blockSize = 64 << 10

// uncachedRead is the size from which a read bypasses the cache: one large
// transaction must not evict everything else.
const uncachedRead = 4 * blockSize

type blockKey struct {
	pid uint16
	idx uint64
}

// cacheBlock is a cached piece of a log. data is not modified once cached, so
// readers may keep slices of it; a longer copy of the same block (the end
// of a log that grew) replaces it.
type cacheBlock struct {
	key        blockKey
	data       []byte
	prev, next *cacheBlock
}

// blockCache is an LRU cache of log blocks, up to Config.CacheBytes. It is safe for
// concurrent use.
type blockCache struct {
	max int64

	mu     sync.Mutex
	used   int64
	blocks map[blockKey]*cacheBlock
	head   cacheBlock // sentinel: head.next is the most recent

	hits, misses, evictions atomic.Uint64
}

func newBlockCache(max int64) *blockCache {
	c := &blockCache{max: max, blocks: make(map[blockKey]*cacheBlock)}
	c.head.prev, c.head.next = &c.head, &c.head
	return c
}

func (c *blockCache) unlink(b *cacheBlock) {
	b.prev.next, b.next.prev = b.next, b.prev
}

func (c *blockCache) pushFront(b *cacheBlock) {
	b.prev, b.next = &c.head, c.head.next
	b.next.prev = b
	c.head.next = b
}

// get returns the cached block if it holds at least `need` bytes.
func (c *blockCache) get(k blockKey, need int) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.blocks[k]
	if b == nil || len(b.data) < need {
		c.misses.Add(1)
		return nil, false
	}
	c.unlink(b)
	c.pushFront(b)
	c.hits.Add(1)
	return b.data, true
}

func (c *blockCache) put(k blockKey, data []byte) {
	if int64(cap(data)) > c.max {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.blocks[k]; old != nil {
		if len(old.data) >= len(data) {
			return
		}
		c.unlink(old)
		c.used -= int64(cap(old.data))
	}
	b := &cacheBlock{key: k, data: data}
	c.blocks[k] = b
	c.pushFront(b)
	c.used += int64(cap(data))
	for c.used > c.max {
		last := c.head.prev
		c.unlink(last)
		delete(c.blocks, last.key)
		c.used -= int64(cap(last.data))
		c.evictions.Add(1)
	}
}

// stats returns the entries and bytes held.
func (c *blockCache) stats() (entries int, bytes int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.blocks), c.used
}

// readLog returns n bytes of partition pid's log f from offset off. limit is
// the log's acknowledged size: no byte past it is read or cached. The slice
// may alias the cache and must not be modified.
func (c *blockCache) read(pid uint16, f *os.File, off, n, limit uint64) ([]byte, error) {
	if off+n > limit || off+n < off {
		return nil, fmt.Errorf("read of %d bytes at offset %d past the end of %s (%d bytes)", n, off, f.Name(), limit)
	}
	if n >= uncachedRead {
		buf := make([]byte, n)
		if _, err := f.ReadAt(buf, int64(off)); err != nil {
			return nil, fmt.Errorf("read %s: %w", f.Name(), err)
		}
		return buf, nil
	}
	first, last := off/blockSize, (off+n-1)/blockSize
	if first == last {
		b, err := c.block(pid, f, first, off+n-first*blockSize, limit)
		if err != nil {
			return nil, err
		}
		start := off - first*blockSize
		return b[start : start+n : start+n], nil
	}
	buf := make([]byte, 0, n)
	for idx := first; idx <= last; idx++ {
		end := min(off+n, (idx+1)*blockSize)
		b, err := c.block(pid, f, idx, end-idx*blockSize, limit)
		if err != nil {
			return nil, err
		}
		start := max(off, idx*blockSize) - idx*blockSize
		buf = append(buf, b[start:end-idx*blockSize]...)
	}
	return buf, nil
}

// block returns block idx of a log, holding at least need bytes.
func (c *blockCache) block(pid uint16, f *os.File, idx, need, limit uint64) ([]byte, error) {
	k := blockKey{pid, idx}
	if b, ok := c.get(k, int(need)); ok {
		return b, nil
	}
	start := idx * blockSize
	size := min(blockSize, limit-start)
	buf := make([]byte, size)
	m, err := f.ReadAt(buf, int64(start))
	if err != nil && !(err == io.EOF && uint64(m) >= need) {
		return nil, fmt.Errorf("read %s: %w", f.Name(), err)
	}
	buf = buf[:m]
	c.put(k, buf)
	return buf, nil
}
