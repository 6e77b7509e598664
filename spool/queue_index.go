package spool

import (
	"container/heap"
	"time"
)

// The delivery loop's in-memory index of the queue. With the upstream down
// for a day a gateway holds tens of thousands of messages, so what the loop
// keeps per message and what it does per batch must not grow with them:
//
//   - Per message only what scheduling needs (an entry: id, times, attempt
//     count, the failover state as route numbers): about 80 bytes in one
//     slab, where a whole Message with its envelope, source, key and origin
//     cost over a kilobyte. A worker reads the rest from the file when it
//     sends the message.
//   - Two heaps instead of a walk and a sort of every message per batch:
//     waiting, by the time something is to be done about the message (its
//     retry time, the end of its upstream's hold, or its expiry), and
//     ready, the due ones by age (olderFirst), from which dispatch takes
//     the oldest. A batch costs O(batch · log n).
type index struct {
	slab  []entry
	free  []int32 // unused slab slots
	byID  map[[16]byte]int32
	wait  entryHeap // by when
	ready entryHeap // by age
	// lifetime is QueueOptions.Lifetime: when expiry is due.
	lifetime int64
}

// entry is one queued message in the index. Times are Unix nanoseconds,
// 0 for the zero time.
type entry struct {
	id       [16]byte
	created  int64
	next     int64  // Message.NextAttempt
	wait     int64  // Message.wait
	since    int64  // Message.UpstreamSince
	match    uint64 // routes whose rules admit the message (bit = route index)
	refused  uint64 // routes that refused it for good (Message.Refused)
	attempts int32
	state    uint32 // Message.stateHash
	hidx     int32  // position in its heap
	where    uint8  // which heap it is in, or claimed
	upstream int8   // route index of Message.Upstream, -1 for none
}

// Where an entry is.
const (
	inNone uint8 = iota
	inWait
	inReady
	inClaimed // handed to a worker (or being dead-lettered): in no heap
)

func newIndex(lifetime time.Duration) *index {
	ix := &index{byID: map[[16]byte]int32{}, lifetime: int64(lifetime)}
	ix.wait = entryHeap{ix: ix, less: ix.lessWhen, which: inWait}
	ix.ready = entryHeap{ix: ix, less: ix.lessAge, which: inReady}
	return ix
}

func ns(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNS(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func idKey(id string) (k [16]byte, ok bool) {
	if len(id) != len(k) {
		return k, false
	}
	copy(k[:], id)
	return k, true
}

func (ix *index) len() int { return len(ix.byID) }

// get returns the entry of id, or nil.
func (ix *index) get(id string) *entry {
	k, ok := idKey(id)
	if !ok {
		return nil
	}
	i, ok := ix.byID[k]
	if !ok {
		return nil
	}
	return &ix.slab[i]
}

func (ix *index) slot(e *entry) int32 { return ix.byID[e.id] }

// add puts a new entry into the waiting heap; false when id is not an id or
// already known.
func (ix *index) add(e entry) bool {
	if _, dup := ix.byID[e.id]; dup {
		return false
	}
	var i int32
	if n := len(ix.free); n > 0 {
		i = ix.free[n-1]
		ix.free = ix.free[:n-1]
		ix.slab[i] = e
	} else {
		i = int32(len(ix.slab))
		ix.slab = append(ix.slab, e)
	}
	ix.byID[e.id] = i
	ix.slab[i].where = inNone
	heap.Push(&ix.wait, i)
	return true
}

// remove drops id from the index.
func (ix *index) remove(id string) {
	k, ok := idKey(id)
	if !ok {
		return
	}
	i, ok := ix.byID[k]
	if !ok {
		return
	}
	ix.detach(i)
	delete(ix.byID, k)
	ix.slab[i] = entry{}
	ix.free = append(ix.free, i)
	if len(ix.byID) == 0 {
		// Give the memory of a drained backlog back.
		ix.slab, ix.free, ix.byID = nil, nil, map[[16]byte]int32{}
		ix.wait.s, ix.ready.s = nil, nil
	}
}

// detach takes slot i out of the heap it is in.
func (ix *index) detach(i int32) {
	e := &ix.slab[i]
	switch e.where {
	case inWait:
		heap.Remove(&ix.wait, int(e.hidx))
	case inReady:
		heap.Remove(&ix.ready, int(e.hidx))
	}
	e.where = inNone
}

// claim takes e out of the heaps: a worker (or dispatch) owns it now.
func (ix *index) claim(e *entry) {
	ix.detach(ix.slot(e))
	e.where = inClaimed
}

// release puts e back into the waiting heap (it is due again at its times).
func (ix *index) release(e *entry) {
	i := ix.slot(e)
	ix.detach(i)
	heap.Push(&ix.wait, i)
}

// when is the time something is to be done about e: its retry time (or
// the end of its upstreams' holds) or, sooner, its expiry.
func (ix *index) when(e *entry) int64 {
	due := max(e.next, e.wait)
	exp := max(e.next, e.created+ix.lifetime)
	return min(due, exp)
}

func (ix *index) lessWhen(a, b int32) bool {
	return ix.when(&ix.slab[a]) < ix.when(&ix.slab[b])
}

func (ix *index) lessAge(a, b int32) bool {
	x, y := &ix.slab[a], &ix.slab[b]
	if x.created != y.created {
		return x.created < y.created
	}
	return string(x.id[:]) < string(y.id[:])
}

// promote moves the entries whose time has come from waiting to ready.
func (ix *index) promote(now int64) {
	for len(ix.wait.s) > 0 && ix.when(&ix.slab[ix.wait.s[0]]) <= now {
		i := heap.Pop(&ix.wait).(int32)
		heap.Push(&ix.ready, i)
	}
}

// nextWhen is the earliest time of the waiting heap (ok false when empty).
func (ix *index) nextWhen() (int64, bool) {
	if len(ix.wait.s) == 0 {
		return 0, false
	}
	return ix.when(&ix.slab[ix.wait.s[0]]), true
}

// popReady takes the oldest due entry out of ready (nil when none).
func (ix *index) popReady() *entry {
	if len(ix.ready.s) == 0 {
		return nil
	}
	i := heap.Pop(&ix.ready).(int32)
	e := &ix.slab[i]
	e.where = inNone
	return e
}

// unpop puts an entry taken by popReady back, as due.
func (ix *index) unpop(e *entry) { heap.Push(&ix.ready, ix.slot(e)) }

// rebuild puts every entry that is not claimed back into the waiting heap,
// after their times changed all at once (flush, clearWaits).
func (ix *index) rebuild() {
	ix.wait.s, ix.ready.s = ix.wait.s[:0], ix.ready.s[:0]
	for _, i := range ix.byID {
		e := &ix.slab[i]
		if e.where == inClaimed {
			continue
		}
		e.hidx, e.where = int32(len(ix.wait.s)), inWait
		ix.wait.s = append(ix.wait.s, i)
	}
	heap.Init(&ix.wait)
}

// oldest returns the creation time of the oldest entry (0 when none).
func (ix *index) oldest() int64 {
	var o int64
	for _, i := range ix.byID {
		if c := ix.slab[i].created; o == 0 || c < o {
			o = c
		}
	}
	return o
}

// entryHeap is a heap of slab slots; each entry knows its position.
type entryHeap struct {
	ix    *index
	s     []int32
	less  func(a, b int32) bool
	which uint8
}

func (h *entryHeap) Len() int           { return len(h.s) }
func (h *entryHeap) Less(i, j int) bool { return h.less(h.s[i], h.s[j]) }
func (h *entryHeap) Swap(i, j int) {
	h.s[i], h.s[j] = h.s[j], h.s[i]
	h.ix.slab[h.s[i]].hidx = int32(i)
	h.ix.slab[h.s[j]].hidx = int32(j)
}
func (h *entryHeap) Push(x any) {
	i := x.(int32)
	e := &h.ix.slab[i]
	e.hidx, e.where = int32(len(h.s)), h.which
	h.s = append(h.s, i)
}
func (h *entryHeap) Pop() any {
	n := len(h.s) - 1
	i := h.s[n]
	h.s = h.s[:n]
	h.ix.slab[i].where = inNone
	return i
}
