/* vdlvm: mirrored volumes — fan-out writes, leg failure, the write-intent
 * bitmap, resync, verify and leg replacement.  The mirror layout: its ops
 * table (vd_mirror_layout, bottom of this file) is listed in the registry
 * (pool/layout.c); it reaches the pool only through pool/layout.h.  Its
 * background work (probe failed legs, resync, clean) runs in its tick, on
 * the pool's background thread (pool/bg.c); leg states and resync
 * progress live in its per-volume state (struct mirror_vol, v->priv),
 * restored from its own metadata records by md_apply.
 *
 * The mirror is split by concern; the header comment of each file holds
 * the arguments of the protocol it owns:
 *   mirror.c      I/O (reads, writes, NOWAIT, flush), leg failure, range
 *                 ordering and leg writers, attach/detach, the metadata
 *                 records, the background tick, the ops table
 *   bitmap.c      the write-intent bitmap: regions and their bits, bitmap
 *                 blocks, the clearing rule and the cleaner, the header
 *   resync.c      resync, failed legs coming back, the resync API
 *   verify.c      verify and repair, the rewrite after a read error
 *   legs.c        leg placement (create, extend) and leg replacement
 *   mirror_int.h  the shared state (struct vd_mirror) with the owner and
 *                 lock of every field, and the lock order
 *
 * Leg writers: everything that writes volume data to legs goes through
 * the same steps — writes, NOWAIT writes, the rewrite after a read error,
 * resync copies and verify repairs:
 *   1. own the byte range (range ordering below),
 *   2. inflight++, gen++, set the bits of its regions,
 *   3. make those bits durable (dbits), then write the legs,
 *   4. record leg failures durably (mirror_fail_legs) before anything is
 *      acknowledged, with the range still owned,
 *   5. inflight--, mark diverged/unsettled if legs may now differ, give
 *      the range back.
 * A NOWAIT write never waits: it is refused (-EAGAIN) unless every dbit
 * of its regions is set and nothing overlapping is queued or running.
 *
 * ---- Range ordering -------------------------------------------------------
 *
 * m->ranges is a FIFO of byte ranges (struct mrange) of leg writers and of
 * verify: an entry may proceed when no earlier entry overlaps it.  So two
 * overlapping leg writers run one after the other, in arrival order, on
 * every leg; non-overlapping ones run concurrently; nothing is starved (a
 * later arrival never passes an earlier overlapping one).  A resync copy
 * or verify owns a whole region the same way.  The wait condition is
 * re-evaluated over the whole range each time, never region by region.
 *
 * ---- Interleavings (I/O; the others at the top of bitmap.c, resync.c,
 *      verify.c and legs.c) ---------------------------------------------
 *
 * write vs write: overlapping ones are ordered by the range FIFO, so every
 *   leg sees them in the same order; others only share bitmap blocks
 *   (bm_busy serialises those writes; a waiter finds its bit in the next
 *   snapshot).
 * write vs flush (vd_mirror_flush): a flush covers the writes completed
 *   before it, which reached every non-failed leg; it flushes the devices
 *   of the non-failed legs only.  A leg whose flush fails is marked failed
 *   (never the last in-sync leg) and the flush succeeds while one in-sync
 *   leg flushed; a failed leg never fails it.  If the failure cannot be
 *   recorded the flush fails.
 * write failing on the last in-sync leg: that leg is kept
 *   (mirror_fail_legs), the write fails, and the legs it reached may
 *   differ from it with no leg failed: its regions are marked diverged
 *   (the cleaner never clears them) and a resync copies them from the
 *   in-sync leg, going back over them if it had passed them.
 * NOWAIT vs worker redo: a NOWAIT write that reached some legs returns
 *   -EAGAIN and leaves a partial record (unsettled++ on its regions).  A
 *   write split at an extent boundary counts as reaching a leg when any
 *   of its pieces did, the leg that returned -EAGAIN included (its first
 *   piece may have landed before its second got -EAGAIN; with nothing
 *   recorded the cleaner would clear the bit while the legs differ).  The
 *   cleaner keeps their bits until a blocking write that queued after it
 *   and covers its range has succeeded on every non-failed leg (the redo).
 *   Until then reads of the region go to the source leg; a resync running
 *   meanwhile goes back over it.
 * crash at any point: data moves only after its bits are durable on every
 *   non-failed leg; a bit goes only after the data it covered is durable
 *   on every leg and the legs are equal; leg failures and in-sync marks
 *   are committed before anything depending on them is acknowledged.  So
 *   after a crash, every region where non-failed legs may differ has its
 *   bit set on every non-failed leg, and open resyncs it (any one readable
 *   copy is enough; an unreadable one makes open write every block again).
 *   Resync marks targets in-sync only after their copies were flushed.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../pool/layout.h"
#include "mirror_int.h"
#include "vdreplica.h"

/* Set by tests before the pool is opened; read without a lock. */
void (*g_mirror_test_hook)(struct vd_vol *v, const char *event);

uint32_t vd_mirror_leg_state(const struct vd_vol *v, uint32_t leg)
{
    if (v->lops != &vd_mirror_layout || !v->priv || leg >= 3)
        return 0;
    return __atomic_load_n(&mv_of(v)->leg_state[leg], __ATOMIC_ACQUIRE);
}

static const char *leg_names[] = { "in-sync", "stale", "failed" };

const char *vd_leg_state_name(enum vd_leg_state s, int resyncing)
{
    if (resyncing && s == VD_LEG_STALE)
        return "resyncing";
    return (unsigned)s < 3 ? leg_names[s] : "unknown";
}
/* ---- per-leg I/O -------------------------------------------------------- */
/* Read or write [off, off+len) of one leg, split at extent boundaries.
 * map_lock held shared.  0 or -EIO (-EAGAIN with VD_IO_NOWAIT).  *done
 * (if not NULL): bytes of the leading pieces that completed (on a failure,
 * a write may have reached the leg in part). */
static int leg_io_done(struct vd_vol *v, uint32_t leg, void *buf, size_t len,
                       uint64_t off, bool write, unsigned flags, size_t *done)
{
    uint64_t es = v->pool->extent_size;
    char *b = buf;

    if (done)
        *done = 0;
    while (len) {
        uint64_t doff;
        size_t n = len < es - off % es ? len : es - off % es;
        struct vd_dev *d = vd_leg_locate(v, leg, off, &doff);
        int r;
        if (!d || !d->bdev || d->state != VD_DEV_OK)
            return (flags & VD_IO_NOWAIT) ? -EAGAIN : -EIO;
        if (flags & VD_IO_NOWAIT) {
            r = vd_dev_io_nowait(d, b, n, doff, write, flags);
        } else {
            r = write ? vd_dev_pwrite(d, b, n, doff, flags)
                      : vd_dev_pread(d, b, n, doff);
        }
        if (r < 0)
            return r;
        if (done)
            *done += n;
        b += n;
        off += n;
        len -= n;
    }
    return 0;
}

int mirror_leg_io(struct vd_vol *v, uint32_t leg, void *buf, size_t len,
                  uint64_t off, bool write, unsigned flags)
{
    return leg_io_done(v, leg, buf, len, off, write, flags, NULL);
}

/* Flush every device a leg's extents live on.  No lock held: the set of
 * devices is taken under map_lock, the flushes run without it (a remote
 * flush may take the device's timeout, and an extend waiting for map_lock
 * must not stall every request behind it).  A write that completed before
 * the call was mapped when it ran; a leg's mapping only changes by leg
 * replacement, which makes the leg stale (its old device no longer
 * counts).  0: every write to the leg completed before the call is
 * durable. */
int mirror_leg_flush(struct vd_vol *v, uint32_t leg)
{
    vd_pool *p = v->pool;
    bool seen[VD_MAX_DEVS] = { false };
    int r = 0;

    pthread_rwlock_rdlock(&v->map_lock);
    for (uint64_t le = 0; le < v->le_count; le++) {
        uint32_t dv = v->map[le * v->copies + leg].dev;
        if (dv < VD_MAX_DEVS)
            seen[dv] = true;
    }
    pthread_rwlock_unlock(&v->map_lock);
    for (uint32_t dv = 0; dv < p->ndevs && dv < VD_MAX_DEVS; dv++) {
        struct vd_dev *d = &p->devs[dv];
        if (!seen[dv])
            continue;
        if (!d->bdev ||
            __atomic_load_n(&d->state, __ATOMIC_ACQUIRE) != VD_DEV_OK ||
            vd_dev_flush(d) < 0)
            r = -EIO;
    }
    return r;
}
/* Mark legs failed, durably, before the caller acknowledges anything.
 * Called with no lock held (a range may be owned).  0, or -EIO when the
 * failure could not be recorded (then nothing may be acknowledged).
 *
 * The last in-sync leg is never marked failed (as md never fails the last
 * working disk of a RAID1): with no in-sync leg left nothing could serve
 * reads or be a resync source, even once every leg answers again.  Its
 * I/O error goes to the initiator instead (-EIO: not acknowledged). */
int mirror_fail_legs(struct vd_vol *v, uint32_t mask)
{
    vd_pool *p = v->pool;
    struct vd_opbuf ops = { 0 };
    int r = 0, kept = -1;

    vd_admin_lock(p);
    bool insync_left = false;
    for (uint32_t leg = 0; leg < v->copies; leg++)
        if (!(mask & (1u << leg)) && leg_state(v, leg) == VD_LEG_INSYNC)
            insync_left = true;
    for (uint32_t leg = 0; !insync_left && leg < v->copies; leg++)
        if ((mask & (1u << leg)) && leg_state(v, leg) == VD_LEG_INSYNC) {
            mask &= ~(1u << leg);
            kept = (int)leg;
            break;
        }
    if (kept >= 0)
        vd_log(VD_LOG_ERR,
               "volume '%s/%s': I/O error on leg %d, the last "
               "in-sync leg: it stays in use and the error goes to the "
               "initiator",
               p->name, v->name, kept);
    for (uint32_t leg = 0; leg < v->copies; leg++) {
        struct vd_op_leg ol = { .h.type = VD_OP_LEG_STATE };
        if (!(mask & (1u << leg)) || leg_state(v, leg) == VD_LEG_FAILED)
            continue;
        ol.vol = v->id;
        ol.leg = leg;
        ol.state = VD_LEG_FAILED;
        if ((r = vd_opbuf_add(&ops, &ol, sizeof(ol))) < 0)
            break;
        vd_log(VD_LOG_ERR,
               "volume '%s/%s': leg %u failed; writes continue on "
               "the other legs and the bitmap records what it misses",
               p->name, v->name, leg);
    }
    if (r == 0 && ops.nops)
        r = vd_md_commit(p, &ops);
    vd_admin_unlock(p);
    vd_opbuf_free(&ops);
    return r < 0 || kept >= 0 ? -EIO : 0;
}
/* ---- range ordering --------------------------------------------------------- */
static bool overlaps(const struct mrange *x, uint64_t start, uint64_t end)
{
    return x->start < end && start < x->end;
}

/* m->lock held. */
static bool range_blocked_locked(struct vd_mirror *m, struct mrange *e)
{
    for (struct mrange *x = m->rhead; x && x != e; x = x->next)
        if (overlaps(x, e->start, e->end))
            return true;
    return false;
}

static bool range_busy_locked(struct vd_mirror *m, uint64_t start, uint64_t end)
{
    for (struct mrange *x = m->rhead; x; x = x->next)
        if (overlaps(x, start, end))
            return true;
    return false;
}

static void range_insert_locked(struct vd_mirror *m, struct mrange *e,
                                uint64_t start, uint64_t end)
{
    e->start = start;
    e->end = end;
    e->ticket = ++m->next_ticket;
    e->next = NULL;
    e->prev = m->rtail;
    if (m->rtail)
        m->rtail->next = e;
    else
        m->rhead = e;
    m->rtail = e;
}

/* Queue e for [start, end) and wait until no earlier entry overlaps it. */
void mirror_range_wait_locked(struct vd_mirror *m, struct mrange *e,
                              uint64_t start, uint64_t end)
{
    range_insert_locked(m, e, start, end);
    if (!range_blocked_locked(m, e))
        return;
    mirror_hook(m->v, "range-wait");
    do
        pthread_cond_wait(&m->cond, &m->lock);
    while (range_blocked_locked(m, e));
}

void mirror_range_remove_locked(struct vd_mirror *m, struct mrange *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        m->rhead = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        m->rtail = e->prev;
    pthread_cond_broadcast(&m->cond);
}

/* ---- leg writers (see the top) ---------------------------------------------- */
/* Steps 1 and 2: own [off, off+len), count the writer, set the bits.
 * No lock held.  0 or a negative errno (nothing owned). */
int mirror_lw_begin(struct vd_mirror *m, struct lw *w, uint64_t off,
                    uint64_t len)
{
    int r;

    w->r0 = off >> m->region_shift;
    w->r1 = (off + len - 1) >> m->region_shift;
    pthread_mutex_lock(&m->lock);
    if ((r = mirror_cover_region_locked(m, w->r1)) < 0) {
        pthread_mutex_unlock(&m->lock);
        return r;
    }
    mirror_range_wait_locked(m, &w->e, off, off + len);
    for (uint64_t i = w->r0; i <= w->r1; i++) {
        m->inflight[i]++;
        m->gen[i]++;
        mirror_bit_set_locked(m, i, true);
    }
    pthread_mutex_unlock(&m->lock);
    return 0;
}

/* m->lock held: the regions of [r0, r1] may differ between non-failed legs
 * until a copy: a running resync goes back over them. */
void mirror_diverged_locked(struct vd_mirror *m, uint64_t r0, uint64_t r1)
{
    for (uint64_t i = r0; i <= r1; i++)
        m->diverged[i] = 1;
    if (m->rs_active && m->rs_cursor > r0)
        m->rs_cursor = r0;
    m->rs_requested = 1;
}

/* Step 5.  No lock held. */
void mirror_lw_end(struct vd_mirror *m, struct lw *w, unsigned how)
{
    pthread_mutex_lock(&m->lock);
    for (uint64_t i = w->r0; i <= w->r1; i++)
        m->inflight[i]--;
    if (how & LW_DIVERGED)
        mirror_diverged_locked(m, w->r0, w->r1);
    if (how & LW_RESOLVE) {
        struct partial **pp = &m->partials;
        while (*pp) {
            struct partial *q = *pp;
            if (q->ticket < w->e.ticket && q->off >= w->e.start &&
                q->off + q->len <= w->e.end) {
                for (uint64_t i = q->off >> m->region_shift;
                     i <= (q->off + q->len - 1) >> m->region_shift; i++)
                    m->unsettled[i]--;
                *pp = q->next;
                free(q);
            } else {
                pp = &q->next;
            }
        }
    }
    mirror_range_remove_locked(m, &w->e);
    pthread_mutex_unlock(&m->lock);
}

/* Step 3 (and 4): the bits durable, then the data on every non-failed leg
 * in `only`; leg failures recorded.  No lock held; *io tells whether data
 * was sent to any leg.  0 (acknowledgeable) or -EIO. */
int mirror_lw_write(struct vd_vol *v, struct lw *w, const void *buf, size_t len,
                    uint64_t off, unsigned flags, uint32_t only, bool *io)
{
    struct vd_mirror *m = mirror_of(v);
    uint32_t failed = 0, ok = 0;

    *io = false;
    for (int tries = 0;; tries++) {
        pthread_rwlock_rdlock(&v->map_lock);
        uint32_t bf = mirror_bits_durable(m, w->r0, w->r1);
        if (!bf)
            break;
        pthread_rwlock_unlock(&v->map_lock);
        /* Those legs miss the bit: fail them, then the others suffice. */
        if (mirror_fail_legs(v, bf) < 0 || tries == 3)
            return -EIO;
    }
    for (uint32_t leg = 0; leg < v->copies; leg++) {
        if (!(only & (1u << leg)) || leg_state(v, leg) == VD_LEG_FAILED)
            continue;
        *io = true;
        if (mirror_leg_io(v, leg, (void *)buf, len, off, true, flags) < 0)
            failed |= 1u << leg;
        else
            ok |= 1u << leg;
    }
    pthread_rwlock_unlock(&v->map_lock);
    if (failed && mirror_fail_legs(v, failed) < 0)
        return -EIO;
    return ok ? 0 : -EIO;
}

/* ---- I/O ---------------------------------------------------------------- */
/* VD_IO_NOWAIT write (tgtd's main thread): only into regions whose bits
 * are durable, with nothing overlapping queued or running; every
 * non-failed leg from the page cache, or -EAGAIN.  Never waits: map_lock
 * is only tried, m->lock is never held across I/O.  A write that reached
 * some legs and not others leaves a partial record (see the top). */
static int mirror_pwrite_nowait(struct vd_vol *v, const void *buf, size_t len,
                                uint64_t off, unsigned flags)
{
    struct vd_mirror *m = mirror_of(v);
    struct mrange e;
    uint64_t r0, r1;
    uint32_t wrote = 0;
    int r = 0;

    if (pthread_rwlock_tryrdlock(&v->map_lock))
        return -EAGAIN;
    if (off > mirror_bound(v) || len > mirror_bound(v) - off) {
        pthread_rwlock_unlock(&v->map_lock);
        return -ERANGE;
    }
    r0 = off >> m->region_shift;
    r1 = (off + len - 1) >> m->region_shift;
    pthread_mutex_lock(&m->lock);
    if (r1 >= m->nregions || range_busy_locked(m, off, off + len))
        r = -EAGAIN;
    for (uint64_t i = r0; i <= r1 && r == 0; i++)
        if (!dbit_get(m, i))
            r = -EAGAIN;
    if (r == 0) {
        range_insert_locked(m, &e, off, off + len);
        for (uint64_t i = r0; i <= r1; i++) {
            m->inflight[i]++;
            m->gen[i]++;
        }
    }
    pthread_mutex_unlock(&m->lock);
    if (r < 0) {
        pthread_rwlock_unlock(&v->map_lock);
        return r;
    }
    for (uint32_t leg = 0; leg < v->copies && r == 0; leg++) {
        size_t done = 0;
        if (leg_state(v, leg) == VD_LEG_FAILED)
            continue;
        if (leg_io_done(v, leg, (void *)buf, len, off, true, flags, &done) < 0)
            r = -EAGAIN;
        /* a write split at an extent boundary may have reached this leg
         * in part before -EAGAIN: that leg differs too */
        if (r == 0 || done)
            wrote |= 1u << leg;
    }
    pthread_rwlock_unlock(&v->map_lock);
    pthread_mutex_lock(&m->lock);
    for (uint64_t i = r0; i <= r1; i++)
        m->inflight[i]--;
    if (r < 0 && wrote) {
        struct partial *q = malloc(sizeof(*q));
        if (q) {
            *q = (struct partial){
                .off = off, .len = len, .ticket = e.ticket, .next = m->partials
            };
            m->partials = q;
            for (uint64_t i = r0; i <= r1; i++)
                m->unsettled[i]++;
            if (m->rs_active && m->rs_cursor > r0)
                m->rs_cursor = r0;
        } else {
            mirror_diverged_locked(m, r0, r1);
        }
    }
    mirror_range_remove_locked(m, &e);
    pthread_mutex_unlock(&m->lock);
    return r;
}

/* The leg a read of clean regions at off goes to (map_lock held shared):
 * an in-sync leg, taken in turn (rr) among those whose extent at off is on
 * a local device when the pool's read policy is local and there is one
 * (a remote leg costs a network round trip), else among all in-sync
 * legs; -1 when no leg is in sync.  A read spanning extents is located
 * by its first byte. */
static int clean_read_leg(struct vd_vol *v, uint64_t off, uint32_t rr)
{
    uint32_t n = 0, nl = 0, legs[3], local[3];
    uint64_t dev_off;

    for (uint32_t k = 0; k < v->copies && k < 3; k++) {
        if (leg_state(v, k) != VD_LEG_INSYNC)
            continue;
        legs[n++] = k;
        if (v->pool->read_policy == VD_READ_LOCAL) {
            struct vd_dev *d = vd_leg_locate(v, k, off, &dev_off);
            if (d && !d->remote)
                local[nl++] = k;
        }
    }
    if (nl)
        return (int)local[rr % nl];
    return n ? (int)legs[rr % n] : -1;
}

/* VD_IO_NOWAIT read: one in-sync leg from the page cache, or -EAGAIN. */
static int mirror_pread_nowait(struct vd_vol *v, void *buf, size_t len,
                               uint64_t off)
{
    struct vd_mirror *m = mirror_of(v);
    bool dirty = false;
    uint32_t rr;
    int leg, r;

    if (pthread_rwlock_tryrdlock(&v->map_lock))
        return -EAGAIN;
    if (off > mirror_bound(v) || len > mirror_bound(v) - off) {
        pthread_rwlock_unlock(&v->map_lock);
        return -ERANGE;
    }
    uint64_t r0 = off >> m->region_shift,
             r1 = (off + len - 1) >> m->region_shift;
    pthread_mutex_lock(&m->lock);
    dirty = r1 >= m->nregions;
    for (uint64_t i = r0; i <= r1 && !dirty; i++)
        dirty = bit_get(m, i);
    rr = m->read_rr++;
    pthread_mutex_unlock(&m->lock);
    leg = dirty ? source_leg(v) : clean_read_leg(v, off, rr);
    r = leg < 0 ? -EAGAIN
                : mirror_leg_io(v, (uint32_t)leg, buf, len, off, false,
                                VD_IO_NOWAIT);
    pthread_rwlock_unlock(&v->map_lock);
    return r < 0 ? -EAGAIN : 0;
}

static int mirror_pread(struct vd_vol *v, void *buf, size_t len, uint64_t off);

static int mirror_pwrite(struct vd_vol *v, const void *buf, size_t len,
                         uint64_t off, unsigned flags)
{
    struct vd_mirror *m = mirror_of(v);
    uint64_t size = mirror_bound(v);
    struct lw w;
    bool io;
    int r;

    if (!len)
        return 0;
    if (flags & VD_IO_NOWAIT)
        return mirror_pwrite_nowait(v, buf, len, off, flags);
    if (off > size || len > size - off)
        return -ERANGE; /* volumes only grow */
    if ((r = mirror_lw_begin(m, &w, off, len)) < 0)
        return r == -ERANGE ? r : -EIO;
    r = mirror_lw_write(v, &w, buf, len, off, flags, all_legs(v), &io);
    mirror_lw_end(m, &w, r == 0 ? LW_RESOLVE : io ? LW_DIVERGED : 0);
    return r;
}

static int mirror_pread_flags(struct vd_vol *v, void *buf, size_t len,
                              uint64_t off, unsigned flags)
{
    if (!len)
        return 0;
    if (flags & VD_IO_NOWAIT)
        return mirror_pread_nowait(v, buf, len, off);
    return mirror_pread(v, buf, len, off);
}

static int mirror_pread(struct vd_vol *v, void *buf, size_t len, uint64_t off)
{
    struct vd_mirror *m = mirror_of(v);
    uint32_t tried = 0, bad = 0;
    int leg = -1, r = -EIO;
    bool dirty = false;

    if (!len)
        return 0;
    pthread_rwlock_rdlock(&v->map_lock);
    if (off > mirror_bound(v) || len > mirror_bound(v) - off) {
        pthread_rwlock_unlock(&v->map_lock);
        return -ERANGE;
    }
    uint64_t r0 = off >> m->region_shift,
             r1 = (off + len - 1) >> m->region_shift;
    pthread_mutex_lock(&m->lock);
    dirty = r1 >= m->nregions;
    for (uint64_t i = r0; i <= r1 && !dirty; i++)
        dirty = bit_get(m, i);
    uint32_t rr = m->read_rr++;
    pthread_mutex_unlock(&m->lock);

    /* Regions that may differ are read from the resync source so that
     * every read agrees with what resync will make of the other legs;
     * clean regions by the read policy (clean_read_leg). */
    leg = dirty ? source_leg(v) : clean_read_leg(v, off, rr);
    while (leg >= 0) {
        tried |= 1u << leg;
        r = mirror_leg_io(v, (uint32_t)leg, buf, len, off, false, 0);
        if (r == 0)
            break;
        bad |= 1u << leg;
        leg = -1;
        for (uint32_t k = 0; k < v->copies; k++)
            if (!(tried & (1u << k)) && leg_state(v, k) == VD_LEG_INSYNC) {
                leg = (int)k;
                break;
            }
    }
    pthread_rwlock_unlock(&v->map_lock);
    if (r == 0 && bad)
        mirror_read_repair(v, len, off, (uint32_t)leg, bad);
    return r;
}

/* SYNCHRONIZE CACHE: the devices of the non-failed legs only. */
static int mirror_flush(struct vd_vol *v)
{
    uint32_t bad = 0, good = 0;

    for (uint32_t leg = 0; leg < v->copies; leg++) {
        uint32_t st = leg_state(v, leg);
        if (st == VD_LEG_FAILED)
            continue;
        if (mirror_leg_flush(v, leg) < 0)
            bad |= 1u << leg;
        else if (st == VD_LEG_INSYNC)
            good |= 1u << leg;
    }
    if (bad && mirror_fail_legs(v, bad) < 0)
        return -EIO;
    return good ? 0 : -EIO;
}

/* ---- attach / detach ---------------------------------------------------- */
static void mirror_detach(struct vd_vol *v);

static int mirror_attach(struct vd_vol *v)
{
    struct vd_mirror *m;
    uint64_t nregions;
    int r;

    if (mirror_of(v))
        return 0;
    m = calloc(1, sizeof(*m));
    if (!m)
        return -ENOMEM;
    m->v = v;
    m->region_shift = v->flags & VD_VOLF_REGION_SHIFT_MASK;
    nregions = vd_div_up(mirror_bound(v), 1ull << m->region_shift);
    m->legacy = nregions > mirror_bm_capacity(v->pool->extent_size);
    if (nregions > mirror_max_regions(m)) {
        vd_log(VD_LOG_ERR,
               "volume '%s/%s': %" PRIu64 " regions do not fit the "
               "bitmap extent",
               v->pool->name, v->name, nregions);
        free(m);
        return -EINVAL;
    }
    pthread_mutex_init(&m->lock, NULL);
    pthread_cond_init(&m->cond, NULL);
    if ((r = mirror_alloc_arrays(m, nregions)) < 0) {
        mv_of(v)->rt = m;
        mirror_detach(v);
        return r;
    }
    if ((r = mirror_bm_load(m, nregions)) < 0) {
        mv_of(v)->rt = m;
        mirror_detach(v);
        return r;
    }
    if (m->dirty || mv_of(v)->rs_running)
        m->rs_requested = 1;
    for (uint32_t leg = 0; leg < v->copies; leg++)
        if (leg_state(v, leg) == VD_LEG_STALE)
            m->rs_requested = 1;
    if (m->dirty)
        vd_log(VD_LOG_WARN,
               "volume '%s/%s': %" PRIu64 " regions may differ "
               "between legs; resync starts",
               v->pool->name, v->name, m->dirty);
    mv_of(v)->rt = m;
    return 0;
}

static int mirror_grow(struct vd_vol *v)
{
    struct vd_mirror *m = mirror_of(v);
    uint64_t n;
    int r = 0;

    if (!m)
        return 0;
    n = vd_div_up(mirror_bound(v), region_size(m));
    pthread_mutex_lock(&m->lock);
    if (n > m->nregions)
        r = mirror_cover_region_locked(m, n - 1);
    pthread_mutex_unlock(&m->lock);
    if (r == -EFBIG)
        vd_log(VD_LOG_ERR,
               "volume '%s/%s': %" PRIu64 " regions do not fit the "
               "bitmap extent; writes beyond %" PRIu64 " bytes fail",
               v->pool->name, v->name, n,
               mirror_max_regions(m) << m->region_shift);
    return r;
}

static void mirror_detach(struct vd_vol *v)
{
    struct vd_mirror *m = mirror_of(v);

    if (!m)
        return;
    mv_of(v)->rt = NULL;
    pthread_mutex_destroy(&m->lock);
    pthread_cond_destroy(&m->cond);
    while (m->partials) {
        struct partial *q = m->partials;
        m->partials = q->next;
        free(q);
    }
    free(m->bits), free(m->dbits), free(m->bm_ver), free(m->bm_done);
    free(m->bm_busy), free(m->inflight), free(m->gen), free(m->seen_gen);
    free(m->unsettled), free(m->diverged);
    free(m);
}
/* ---- background work (the pool's thread, pool/bg.c) --------------------- */
/* One pass for v: bring failed legs back, then resync or clean. */
static void mirror_tick(struct vd_vol *v)
{
    struct vd_mirror *m = mirror_of(v);

    if (!m)
        return;
    mirror_probe_failed_legs(v);
    pthread_mutex_lock(&m->lock);
    int want = m->rs_requested;
    pthread_mutex_unlock(&m->lock);
    if (want)
        mirror_resync_volume(v);
    else
        mirror_clean_volume(v);
}

/* The pool is closing, its thread stopped: leave the on-disk bitmap with
 * every cleared bit written. */
static void mirror_quiesce(struct vd_vol *v)
{
    struct vd_mirror *m = mirror_of(v);

    if (!m)
        return;
    pthread_rwlock_rdlock(&v->map_lock);
    uint32_t lf = mirror_bm_flush(m);
    pthread_rwlock_unlock(&v->map_lock);
    if (lf)
        mirror_fail_legs(v, lf);
}

/* ---- admin API ---------------------------------------------------------- */
/* Drop the reference an admin call took (open_count, under admin_lock). */
void mirror_put(struct vd_vol *v)
{
    vd_admin_lock(v->pool);
    v->open_count--;
    vd_admin_unlock(v->pool);
}

struct vd_vol *mirror_find(vd_pool *p, const char *name)
{
    struct vd_vol *v = vd_vol_find(p, name);
    if (!v) {
        vd_log(VD_LOG_ERR,
               "volume '%s/%s': not found; list volumes with "
               "'vdlvm vol list %s'",
               p->name, name, p->name);
        errno = ENOENT;
        return NULL;
    }
    if (!mirror_of(v)) {
        vd_log(VD_LOG_ERR, "volume '%s/%s': not a mirror (layout linear)",
               p->name, name);
        errno = EINVAL;
        return NULL;
    }
    return v;
}

int vd_mirror_get_info(vd_pool *p, const char *name,
                       struct vd_mirror_info *info)
{
    struct vd_vol *v;
    struct vd_mirror *m;

    vd_admin_lock(p);
    v = vd_vol_find(p, name);
    if (!v || !mirror_of(v)) {
        vd_admin_unlock(p);
        return v ? -EINVAL : -ENOENT;
    }
    m = mirror_of(v);
    memset(info, 0, sizeof(*info));
    snprintf(info->volume, sizeof(info->volume), "%s/%s", p->name, v->name);
    info->size = v->size;
    info->region_size = region_size(m);
    info->copies = v->copies;
    for (uint32_t leg = 0; leg < v->copies; leg++) {
        struct vd_leg_info *l = &info->legs[leg];
        uint32_t dv = v->map[leg].dev;
        l->leg = leg;
        if (v->le_count > v->data_le0 &&
            v->map[v->data_le0 * v->copies + leg].dev != VD_NO_DEV)
            dv = v->map[v->data_le0 * v->copies + leg].dev;
        if (dv != VD_NO_DEV) {
            snprintf(l->device, sizeof(l->device), "%s", p->devs[dv].name);
            snprintf(l->node, sizeof(l->node), "%s", p->devs[dv].node);
        }
        l->state = leg_state(v, leg);
    }
    pthread_mutex_lock(&m->lock);
    info->dirty_regions = m->dirty;
    info->rate_limit = m->rate_limit;
    if (m->rs_active) {
        info->resync_state = VD_RESYNC_RUNNING;
        info->rate_bytes_per_s = m->rate_bps;
        for (uint32_t leg = 0; leg < v->copies; leg++)
            info->legs[leg].resyncing = !!(m->rs_targets & (1u << leg)) &&
                                        info->legs[leg].state == VD_LEG_STALE;
    } else if (mv_of(v)->rs_running || m->rs_requested) {
        info->resync_state = VD_RESYNC_PAUSED;
    }
    pthread_mutex_unlock(&m->lock);
    info->total_bytes = mv_of(v)->rs_total;
    info->done_bytes = mv_of(v)->rs_done;
    vd_admin_unlock(p);
    return 0;
}
static int mirror_init(struct vd_vol *v, const struct vd_op_vol *o)
{
    uint32_t shift = o->flags & VD_VOLF_REGION_SHIFT_MASK;

    if (shift < 9 || shift > 40 || o->le_count < 1) {
        vd_log(VD_LOG_ERR, "pool '%s': volume '%s': bad mirror parameters",
               v->pool->name, v->name);
        return -EINVAL;
    }
    v->priv = calloc(1, sizeof(struct mirror_vol));
    return v->priv ? 0 : -ENOMEM;
}

static void mirror_fini(struct vd_vol *v)
{
    free(v->priv);
    v->priv = NULL;
}

static int mirror_md_apply(struct vd_vol *v, const struct vd_op_hdr *h)
{
    struct mirror_vol *mv = mv_of(v);

    switch (h->type) {
    case VD_OP_LEG_STATE: {
        const struct vd_op_leg *o = (const void *)h;
        if (h->len < sizeof(*o)) {
            vd_log(VD_LOG_ERR,
                   "pool '%s': metadata leg state op of volume '%s' too "
                   "short",
                   v->pool->name, v->name);
            return -EINVAL;
        }
        if (o->leg >= v->copies || o->state > 2) {
            vd_log(VD_LOG_ERR,
                   "pool '%s': metadata sets state %u of leg %u of "
                   "volume '%s'",
                   v->pool->name, o->state, o->leg, v->name);
            return -EINVAL;
        }
        __atomic_store_n(&mv->leg_state[o->leg], o->state, __ATOMIC_RELEASE);
        return 0;
    }
    case VD_OP_RESYNC: {
        const struct vd_op_resync *o = (const void *)h;
        if (h->len < sizeof(*o)) {
            vd_log(VD_LOG_ERR,
                   "pool '%s': metadata resync op of volume '%s' "
                   "too short",
                   v->pool->name, v->name);
            return -EINVAL;
        }
        mv->rs_running = o->running;
        mv->rs_total = o->total;
        mv->rs_done = o->done;
        return 0;
    }
    }
    return -ENOENT;
}

static int mirror_md_serialize(const struct vd_vol *v, struct vd_opbuf *b)
{
    const struct mirror_vol *mv = mv_of(v);
    int r;

    for (uint32_t leg = 0; leg < v->copies; leg++) {
        struct vd_op_leg ol = { .h.type = VD_OP_LEG_STATE };
        if (!mv->leg_state[leg])
            continue;
        ol.vol = v->id;
        ol.leg = leg;
        ol.state = mv->leg_state[leg];
        if ((r = vd_opbuf_add(b, &ol, sizeof(ol))) < 0)
            return r;
    }
    if (mv->rs_running || mv->rs_total) {
        struct vd_op_resync orz = { .h.type = VD_OP_RESYNC };
        orz.vol = v->id;
        orz.running = mv->rs_running;
        orz.total = mv->rs_total;
        orz.done = mv->rs_done;
        if ((r = vd_opbuf_add(b, &orz, sizeof(orz))) < 0)
            return r;
    }
    return 0;
}

static void mirror_status(struct vd_vol *v, struct vd_vol_status *st)
{
    struct mirror_vol *mv = mv_of(v);
    struct vd_mirror *m = mirror_of(v);

    st->copies_insync = 0;
    for (uint32_t leg = 0; leg < v->copies; leg++)
        st->copies_insync += leg_state(v, leg) == VD_LEG_INSYNC;
    if (m) {
        pthread_mutex_lock(&m->lock);
        st->resyncing = m->rs_active || m->rs_requested;
        pthread_mutex_unlock(&m->lock);
    }
    st->resync_done = mv->rs_done;
    st->resync_total = mv->rs_total;
}

const struct vd_layout_ops vd_mirror_layout = {
    .name = "mirror",
    .id = VD_LAYOUT_MIRROR,
    .meta_extents = VD_MIRROR_LE0,
    .create_opts = VD_LOPT_COPIES | VD_LOPT_SAME_NODE | VD_LOPT_REGION,
    .default_copies = 2,
    .check = mirror_check,
    .plan = mirror_plan,
    .check_extend = mirror_check_extend,
    .plan_extend = mirror_plan_extend,
    .init = mirror_init,
    .fini = mirror_fini,
    .ctr = mirror_attach,
    .dtr = mirror_detach,
    .grow = mirror_grow,
    .io_beyond_size = true,
    .pread = mirror_pread_flags,
    .pwrite = mirror_pwrite,
    .flush = mirror_flush,
    .md_apply = mirror_md_apply,
    .md_serialize = mirror_md_serialize,
    .status = mirror_status,
    .tick = mirror_tick,
    .quiesce = mirror_quiesce,
};
