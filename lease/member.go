package lease

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"
)

// Handler hears of a member's partitions. Its methods are called from
// goroutines of the member; Assigned and Revoked of one partition never
// overlap, and a partition is Assigned again only after its Revoked has
// returned (tested: TestMemberRebalance, TestMemberCrashTakeover).
type Handler interface {
	// Assigned says the member now holds partition p under the fencing
	// token. It must not block for long: start the work and return.
	Assigned(p int, token uint64)
	// Revoked says the member must stop working on p. It returns once no
	// work on p is in flight; only then is the lease released.
	Revoked(p int)
}

// Config configures a [Member].
type Config struct {
	// Store keeps the group's membership and leases. Required.
	Store Store
	// Group names the group. Required; see [ValidateName].
	Group string
	// Instance names this member, unique in the group. Default: host name,
	// process id and a random suffix, so that a restarted process is a new
	// member.
	Instance string
	// Partitions is the number of partitions, 0..Partitions-1. Required.
	// Every member of a group must use the same count.
	Partitions int
	// TTL is how long membership and leases last without renewal.
	// Default: 10s.
	TTL time.Duration
	// RenewInterval is how often the member renews and rebalances.
	// Default: TTL/5.
	RenewInterval time.Duration
	// StopMargin is how long before its lease would end a member that
	// could not renew revokes the partition, so that the work on it
	// stops before another instance can take it. Default: TTL/5.
	StopMargin time.Duration
	// CloseTimeout bounds the release of leases by Close. Default: 5s.
	CloseTimeout time.Duration
	// Logger receives changes of ownership (Info) and store failures
	// (Warn). Default: discard.
	Logger *slog.Logger
}

// Validate reports every problem of c.
func (c Config) Validate() error {
	var errs []error
	if c.Store == nil {
		errs = append(errs, errors.New("lease: Config.Store is required"))
	}
	if err := ValidateName("group", c.Group); err != nil {
		errs = append(errs, err)
	}
	if c.Instance != "" {
		if err := ValidateName("instance", c.Instance); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Partitions <= 0 || c.Partitions > 1<<16 {
		errs = append(errs, fmt.Errorf("lease: Partitions is %d; it must be 1 to 65536", c.Partitions))
	}
	for name, d := range map[string]time.Duration{"TTL": c.TTL, "RenewInterval": c.RenewInterval, "StopMargin": c.StopMargin, "CloseTimeout": c.CloseTimeout} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("lease: %s must not be negative", name))
		}
	}
	ttl := c.TTL
	if ttl == 0 {
		ttl = 10 * time.Second
	}
	if c.RenewInterval > 0 && c.RenewInterval*2 > ttl {
		errs = append(errs, fmt.Errorf("lease: RenewInterval %s must be at most half the TTL %s", c.RenewInterval, ttl))
	}
	if c.StopMargin > 0 && c.StopMargin >= ttl {
		errs = append(errs, fmt.Errorf("lease: StopMargin %s must be below the TTL %s", c.StopMargin, ttl))
	}
	return errors.Join(errs...)
}

func (c *Config) setDefaults() {
	if c.Instance == "" {
		c.Instance = NewInstanceName()
	}
	if c.TTL == 0 {
		c.TTL = 10 * time.Second
	}
	if c.RenewInterval == 0 {
		c.RenewInterval = c.TTL / 5
	}
	if c.StopMargin == 0 {
		c.StopMargin = c.TTL / 5
	}
	if c.CloseTimeout == 0 {
		c.CloseTimeout = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// NewInstanceName returns "<host>-<pid>-<random>", a name unique to this
// process incarnation.
func NewInstanceName() string {
	host, _ := os.Hostname()
	if host == "" || ValidateName("instance", host) != nil {
		host = "instance"
	}
	var b [4]byte
	rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// Member is one instance of a group. Create it with [Join]; Close it to
// leave. Its methods are safe for concurrent use.
type Member struct {
	cfg     Config
	handler Handler

	stop chan struct{}
	done chan struct{}
	wg   sync.WaitGroup // revocations in flight

	closeOnce sync.Once

	mu       sync.Mutex
	held     map[int]*held
	revoking map[int]bool
	members  []string
	err      error
	changed  chan struct{}
}

type held struct {
	token    uint64
	deadline time.Time // local: when it must have stopped
}

// Join starts a member of cfg.Group. It returns at once; partitions are
// assigned to h as the member takes them.
func Join(cfg Config, h Handler) (*Member, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if h == nil {
		return nil, errors.New("lease: Join needs a Handler")
	}
	cfg.setDefaults()
	m := &Member{
		cfg: cfg, handler: h,
		stop: make(chan struct{}), done: make(chan struct{}),
		held: make(map[int]*held), revoking: make(map[int]bool), changed: make(chan struct{}),
	}
	go m.loop()
	return m, nil
}

// Instance returns the member's instance name.
func (m *Member) Instance() string { return m.cfg.Instance }

// Members returns the group's live members as last seen.
func (m *Member) Members() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.members)
}

// Valid reports whether the member still holds partition p under token,
// with time left on its lease. Check it before each unit of work.
func (m *Member) Valid(p int, token uint64) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	h := m.held[p]
	return h != nil && h.token == token && time.Now().Before(h.deadline)
}

// Token returns the token under which p is held, if it is held and its
// lease has time left.
func (m *Member) Token(p int) (uint64, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	h := m.held[p]
	if h == nil || !time.Now().Before(h.deadline) {
		return 0, false
	}
	return h.token, true
}

// Lease is a partition a member holds: its token, and the local time by
// which the member stops working on it unless it renews the lease.
type Lease struct {
	Partition int
	Token     uint64
	Deadline  time.Time
}

// Leases returns the partitions the member holds, sorted.
func (m *Member) Leases() []Lease {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Lease, 0, len(m.held))
	for p, h := range m.held {
		out = append(out, Lease{Partition: p, Token: h.token, Deadline: h.deadline})
	}
	slices.SortFunc(out, func(a, b Lease) int { return a.Partition - b.Partition })
	return out
}

// Changed returns a channel closed at the next change of the member's
// partitions or members.
func (m *Member) Changed() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.changed
}

// Done is closed when the member has stopped: after Close, or after a
// fatal error ([Member.Err]).
func (m *Member) Done() <-chan struct{} { return m.done }

// Err returns the error that stopped the member (a [*PartitionCountError]
// or an invalid configuration found by the store), nil otherwise.
func (m *Member) Err() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err
}

// Close revokes every partition, waits for the revocations, releases the
// leases and leaves the group, so that the others take over at once. It
// is idempotent.
func (m *Member) Close() error {
	m.closeOnce.Do(func() { close(m.stop) })
	<-m.done
	return nil
}

func (m *Member) notifyLocked() {
	close(m.changed)
	m.changed = make(chan struct{})
}

func (m *Member) loop() {
	defer close(m.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-m.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-m.stop:
			m.leave()
			return
		case <-timer.C:
		}
		if err := m.tick(ctx); err != nil {
			m.cfg.Logger.Error("lease: member stops", "group", m.cfg.Group, "instance", m.cfg.Instance, "error", err)
			m.mu.Lock()
			m.err = err
			m.mu.Unlock()
			m.leave()
			return
		}
		timer.Reset(m.nextWake())
	}
}

// nextWake is the time to the next renewal, or to the earliest deadline
// if that comes first.
func (m *Member) nextWake() time.Duration {
	wake := m.cfg.RenewInterval
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	for _, h := range m.held {
		if d := h.deadline.Sub(now); d < wake {
			wake = max(d, 0)
		}
	}
	return wake
}

// tick renews membership and leases once and rebalances. It returns an
// error only for failures that retrying cannot fix.
func (m *Member) tick(ctx context.Context) error {
	cfg := &m.cfg
	m.expire()
	ms, err := cfg.Store.Heartbeat(ctx, HeartbeatRequest{Group: cfg.Group, Instance: cfg.Instance, Partitions: cfg.Partitions, TTL: cfg.TTL})
	if err != nil {
		if errors.Is(err, ErrPartitionCount) || errors.Is(err, ErrInvalidName) {
			return err
		}
		if ctx.Err() == nil {
			cfg.Logger.Warn("lease: heartbeat failed; keeping leases until their deadline", "group", cfg.Group, "instance", cfg.Instance, "error", err)
		}
		return nil
	}
	target := Assign(ms.Members, cfg.Instance, cfg.Partitions)
	m.mu.Lock()
	if !slices.Equal(m.members, ms.Members) {
		m.members = ms.Members
		m.notifyLocked()
	}
	var drop []int
	for p := range m.held {
		if !slices.Contains(target, p) {
			drop = append(drop, p)
		}
	}
	want := make([]int, 0, len(target))
	for _, p := range target {
		if !m.revoking[p] {
			want = append(want, p)
		}
	}
	m.mu.Unlock()
	for _, p := range drop {
		m.revoke(p, "rebalanced to another member", true)
	}
	if len(want) == 0 {
		return nil
	}
	start := time.Now()
	grants, err := cfg.Store.Acquire(ctx, AcquireRequest{Group: cfg.Group, Instance: cfg.Instance, Partitions: want, TTL: cfg.TTL})
	if err != nil {
		if ctx.Err() == nil {
			cfg.Logger.Warn("lease: acquire failed; keeping leases until their deadline", "group", cfg.Group, "instance", cfg.Instance, "error", err)
		}
		return nil
	}
	deadline := start.Add(cfg.TTL - cfg.StopMargin)
	granted := make(map[int]uint64, len(grants))
	for _, g := range grants {
		granted[g.Partition] = g.Token
	}
	var lost, fresh []int
	m.mu.Lock()
	for p, h := range m.held {
		if tok, ok := granted[p]; !ok || tok != h.token {
			lost = append(lost, p)
		}
	}
	m.mu.Unlock()
	for _, p := range lost {
		// Held no more (expired and taken), or taken again under a new
		// token: the old work must stop either way.
		m.revoke(p, "lease lost", false)
	}
	m.mu.Lock()
	for _, g := range grants {
		if h := m.held[g.Partition]; h != nil {
			h.deadline = deadline
			continue
		}
		if m.revoking[g.Partition] {
			continue
		}
		m.held[g.Partition] = &held{token: g.Token, deadline: deadline}
		fresh = append(fresh, g.Partition)
	}
	if len(fresh) > 0 {
		m.notifyLocked()
	}
	m.mu.Unlock()
	for _, p := range fresh {
		cfg.Logger.Info("lease: partition assigned", "group", cfg.Group, "instance", cfg.Instance, "partition", p, "token", granted[p])
		m.handler.Assigned(p, granted[p])
	}
	return nil
}

// expire revokes partitions whose deadline has passed without renewal.
func (m *Member) expire() {
	now := time.Now()
	var gone []int
	m.mu.Lock()
	for p, h := range m.held {
		if !now.Before(h.deadline) {
			gone = append(gone, p)
		}
	}
	m.mu.Unlock()
	for _, p := range gone {
		m.revoke(p, "lease not renewed in time", false)
	}
}

// revoke stops partition p in a goroutine of its own, so that a slow
// handler does not hold up the renewal of other partitions; release says
// whether to release the lease afterwards (not for a lease already lost).
func (m *Member) revoke(p int, why string, release bool) {
	m.mu.Lock()
	if m.held[p] == nil || m.revoking[p] {
		m.mu.Unlock()
		return
	}
	delete(m.held, p)
	m.revoking[p] = true
	m.notifyLocked()
	m.mu.Unlock()
	m.cfg.Logger.Info("lease: partition revoked", "group", m.cfg.Group, "instance", m.cfg.Instance, "partition", p, "reason", why)
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.handler.Revoked(p)
		if release {
			ctx, cancel := context.WithTimeout(context.Background(), m.cfg.CloseTimeout)
			if err := m.cfg.Store.Release(ctx, m.cfg.Group, m.cfg.Instance, []int{p}); err != nil {
				m.cfg.Logger.Warn("lease: release failed; the lease will expire", "group", m.cfg.Group, "partition", p, "error", err)
			}
			cancel()
		}
		m.mu.Lock()
		delete(m.revoking, p)
		m.notifyLocked()
		m.mu.Unlock()
	}()
}

// leave revokes everything, waits, and leaves the group.
func (m *Member) leave() {
	m.mu.Lock()
	ps := make([]int, 0, len(m.held))
	for p := range m.held {
		ps = append(ps, p)
	}
	m.mu.Unlock()
	for _, p := range ps {
		m.revoke(p, "member closing", true)
	}
	m.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), m.cfg.CloseTimeout)
	defer cancel()
	if err := m.cfg.Store.Leave(ctx, m.cfg.Group, m.cfg.Instance); err != nil {
		m.cfg.Logger.Warn("lease: leave failed; membership will expire", "group", m.cfg.Group, "error", err)
	}
}
