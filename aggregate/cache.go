package aggregate

import (
	"container/list"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"
)

// cache holds entities: a bounded LRU of loaded states with an idle
// timeout (tested: TestCacheEviction, TestIdleEntitiesAreDropped). An
// entity in use (refs > 0) is never evicted, so its lock and state stay
// unique while anyone waits for it (tested: TestEntityInUseIsNotEvicted).
type cache struct {
	mu      sync.Mutex
	max     int
	idle    time.Duration
	now     func() time.Time
	entries map[string]*entity
	lru     *list.List // of *entity, most recent first
	// onEvict, when set, is called for every entity dropped.
	onEvict func()
}

func newCache(max int, idle time.Duration, now func() time.Time) *cache {
	return &cache{max: max, idle: idle, now: now, entries: make(map[string]*entity), lru: list.New()}
}

// acquire returns the entity for a stream, creating an empty one, and pins
// it until release.
func (c *cache) acquire(streamID string) *entity {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[streamID]
	if e == nil {
		e = &entity{streamID: streamID, lock: semaphore.NewWeighted(1), minVersion: -1}
		e.elem = c.lru.PushFront(e)
		c.entries[streamID] = e
	} else {
		c.lru.MoveToFront(e.elem)
	}
	e.refs++
	e.lastUsed = c.now()
	return e
}

func (c *cache) release(e *entity) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e.refs--
	e.lastUsed = c.now()
	c.evictLocked()
}

// evictLocked drops least recently used entities beyond the bound, and
// unloaded ones nobody uses.
func (c *cache) evictLocked() {
	for el := c.lru.Back(); el != nil && c.lru.Len() > c.max; {
		prev := el.Prev()
		if e := el.Value.(*entity); e.refs == 0 {
			c.removeLocked(e)
		}
		el = prev
	}
}

func (c *cache) removeLocked(e *entity) {
	c.lru.Remove(e.elem)
	delete(c.entries, e.streamID)
	if c.onEvict != nil {
		c.onEvict()
	}
}

// sweep drops entities idle for longer than the idle timeout.
func (c *cache) sweep() {
	c.mu.Lock()
	defer c.mu.Unlock()
	cut := c.now().Add(-c.idle)
	for el := c.lru.Back(); el != nil; {
		prev := el.Prev()
		e := el.Value.(*entity)
		if !e.lastUsed.Before(cut) {
			break
		}
		if e.refs == 0 {
			c.removeLocked(e)
		}
		el = prev
	}
}

// len returns the number of cached entities.
func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}
