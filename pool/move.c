/* vdlvm: the extent mover — move one physical extent (PE) of a volume to a
 * free PE of another device, online, crash-safe and resumable, and the
 * device evacuation built on it.  LVM pvmove's idea: while the copy runs
 * the extent is a temporary mirror (every write to the source PE also goes
 * to the target PE), the copy goes in chunks with a checkpoint in the pool
 * metadata, and one metadata commit switches the mapping.
 *
 * Any layout: the mover works below the layouts, on (device, PE).  A
 * linear LE, one mirror leg's extent (its bitmap extent included) and a
 * thin volume's data extent (the lower layout's LE) all move the same way.
 *
 * Batches: the extents move in batches of up to MOVE_BATCH extents of one
 * source device (an evacuation; one extent for vd_move_extent and a
 * rebalance): one commit holds the batch's BEGINs, the copier copies the
 * extents one after the other as one stream (extent i's byte b is stream
 * byte i * extent_size + b), flushes the targets once, and one commit
 * holds the batch's ENDs.  A metadata commit (an FUA write to each copy)
 * and a target flush cost a journal commit each on a file system: per
 * extent they made the copy a tenth of dd's rate; per batch they are paid
 * once for up to MOVE_BATCH extents.  With a rate limit a batch holds about
 * one second of copying.
 *
 * ---- Metadata (ops 20-23, pool/layout.h; docs/format.md) -----------------
 *   MOVE_BEGIN {vol, leg, le, src, spe, dst, dpe, rate, evac}: the move
 *     exists; dst/dpe is reserved (used) so nothing else is put there;
 *     the mapping stays src/spe (authoritative).
 *     Several BEGINs in one record (or one after the other in a
 *     checkpoint) make a batch: same src, distinct extents, at most
 *     MOVE_BATCH, none after copying started (done > 0).
 *   MOVE_PROGRESS {done}: bytes [0, done) of the batch's stream are on
 *     the targets, durably (targets flushed before the commit).
 *   MOVE_END {vol, leg, le, dst, dpe}: the switch of one extent of the
 *     batch: the LE maps dst/dpe, src/spe is free.  Written, for every
 *     extent of the batch in one record, after the targets were flushed.
 *   MOVE_ABORT: the batch is gone, its targets free, the mappings
 *     unchanged.
 * A checkpoint writes the batch's BEGINs and PROGRESS after the volumes
 * (the extents whose volume still maps src/spe there; PROGRESS only when
 * none is left out).  At most one batch per pool.  A reader older than
 * batches refuses a pool whose log holds a batch of more than one extent
 * (a second BEGIN while a move runs), and reads everything else.
 *
 * ---- State, owners and locks ---------------------------------------------
 * struct vd_move (p->move) lives from pool_alloc to pool_free, so an I/O
 * thread that read d->move never sees it freed.
 *   - The persisted fields (active, n, the batch's extents s[] with
 *     vol, leg, le, spe, dst, dpe, ended; src, done, rate, evac) change
 *     only in metadata apply (admin_lock held, and an extent's volume's
 *     map_lock exclusive when it joins the batch or ends), under m->lock
 *     too: I/O threads read them under m->lock.
 *   - src device's d->move (atomic pointer) is set in BEGIN apply and
 *     cleared in END/ABORT apply, both with the volume's map_lock held
 *     exclusive: every write that used the mapping before holds map_lock
 *     shared for its whole request (linear.c vol_io, mirror leg I/O and
 *     bitmap writes), so no write to the source PE is in flight that did
 *     not see the hook, and none that saw it outlives the switch.
 *   - The copier state (cursor, verify_end, failed, sealed, ckpt_bytes,
 *     ckpt_ns, the statistics) is under m->lock; the copier runs in one
 *     thread at a time (copier_busy, the background thread's tick or
 *     vd_move_run in a test/admin call); rl_next_ns is the copier's alone.
 *   - m->rhead..: a FIFO of byte ranges of the source device (writers to
 *     the moving PE and the copier's chunk), like the mirror's: an entry
 *     proceeds when no earlier entry overlaps it.  Waited for with no
 *     lock held but the volume's map_lock shared (writers) or nothing
 *     (copier).  Nobody holding a range waits for map_lock or the admin
 *     lock, so END/ABORT apply (map_lock exclusive) cannot deadlock.
 *   - Lock order: admin_lock -> map_lock -> range -> m->lock (never held
 *     across I/O or any wait but m->cond).
 *   - Drain: an evacuation commits its job (VD_OP_MOVE_JOB) with
 *     VD_OP_DEV_FLAGS setting VD_DEVF_DRAIN on the device; d->no_alloc
 *     (read by allocation under the admin lock) follows the flag or a
 *     pending evacuation of the device, so the device gets no extent once
 *     empty and after a restart, until it leaves the pool.
 *
 * ---- Interleavings ---------------------------------------------------------
 * write vs copy chunk: a write to a moving PE owns its byte range in the
 *   FIFO (byte offsets on src: every extent of a batch is on src), writes
 *   src, then (only if src took it) the target of every extent of the
 *   batch it overlaps (same offset in the PE; a device write stays within
 *   one PE in practice, the loop covers two), and gives it back (a write
 *   src refused is not acknowledged and leaves the targets as they were;
 *   it abandons the move, src may hold part of it);
 *   the copier owns its chunk the same way while it reads src and writes
 *   dst.  So a write either precedes the chunk copy (the copy carries its
 *   bytes, also written to dst directly) or follows it (it writes dst
 *   itself): dst never misses an acknowledged write, before or after the
 *   cursor.  Overlapping writes are ordered by the FIFO, so src and dst
 *   see them in the same order.
 * write vs NOWAIT: a NOWAIT write to the moving PE is refused (-EAGAIN,
 *   vd_move_nowait_ok; only try-locks), the caller redoes it blocking.
 *   tgtd's main thread never waits here.
 * flush: a flush of src (any layout's flush reaches vd_dev_flush(src))
 *   also flushes every target of the batch, so everything a flush made
 *   durable on src is durable on the targets.  A dst flush failure marks the move failed (it is abandoned;
 *   src stays authoritative, so the flush itself succeeded).
 * switch (END): the copier flushes the targets (the copied bytes),
 *   commits the batch's ENDs in one record; each END's apply (its
 *   volume's map_lock exclusive) waits for every write using the old
 *   mapping (they wrote both), then maps dst; the batch stops being
 *   active (hooks of writes off) once the last END of the record applied,
 *   and a write to an extent whose END applied cannot be in flight (its
 *   volume's map_lock), so the write hook skips ended extents; writes stop going to both,
 *   but flushes of src still flush dst (switching) until the copier,
 *   still holding the admin lock, has flushed dst once more and only then
 *   clears the hook: a flush (the mirror cleaner's, a layout's) that took
 *   its device set before the switch and reaches src later finds either
 *   the hook or dst already flushed past every pre-switch write.  The old
 *   PE is freed by END's apply, i.e. only once the switch is durable, and
 *   is not given out again before the hook is gone (admin lock).
 * device failure: src read error, dst write/flush error (copier or a
 *   writer) or a device not usable: failed is set, the copier commits
 *   ABORT, the volume keeps src; the error is logged and shown by status.
 *   Before the switch is decided a writer's result is src's: a failing
 *   dst does not fail a write (src stays the extent).
 * dst failing while the switch is decided (sealed; vdsim seed 23691):
 *   finish checks !failed and sets sealed in one m->lock section, then
 *   commits END, which can take seconds (a metadata copy timing out).
 *   A writer's dst write failing in that time can no longer stop the
 *   switch: before, it only set failed and returned src's success, END
 *   applied, and dst, now the extent, missed an acknowledged write (a
 *   mirror leg moved from d3 to d0 while d0 went away: the last in-sync
 *   leg lost write #33).  Now a writer (and a src flush reaching dst)
 *   reads sealed in the same m->lock section in which it records the
 *   failure: either finish saw failed first (no switch; ABORT), or the
 *   writer sees sealed and fails its request (-EIO after writing src):
 *   a write that dst lacks is never acknowledged once dst may become the
 *   extent.  While sealed, writers and flushes reach dst even when failed
 *   is set (another writer's failure must not make this one skip dst).
 *   The layout above handles the error as any device error (a mirror
 *   fails the leg and its bitmap records the region; the last in-sync
 *   leg or a linear volume returns the error).  A failed END commit keeps
 *   sealed until ABORT applies: a commit below the write quorum may still
 *   have reached a copy that the next open picks up.  sealed is cleared
 *   by ABORT apply and, after END, by end_switch (dst flushed again).
 * crash before END: the BEGINs (and PROGRESS) replay: src is
 *   authoritative, the targets reserved.  Bytes before done were on the
 *   targets at the checkpoint and every later write to them went to both,
 *   but a write that was never flushed may have reached one device's media
 *   and not the other's; bytes after done may be on a target already (a
 *   kill -9 of the process leaves what it wrote in the page cache) or
 *   not.  So after an open the copier compares the whole batch, chunk by
 *   chunk under the range FIFO like a copy (reads both, writes the target
 *   only where they differ: the compare costs reads; a repaired chunk ends
 *   equal to src exactly as a copied one).  No byte that reached a target
 *   is copied again: only chunks that differ, i.e. the chunk in flight at
 *   a kill (and after a power loss what the targets' media lost), whatever
 *   the batch size.  A compare that finds a chunk equal is as good as a
 *   copy: the flush before END makes it durable.
 * crash between the END record and the targets' second flush: the ENDs
 *   replay, the targets are the extents; the first flush before the END
 *   record made every copied byte and every write acknowledged before it
 *   durable there; a write acknowledged before the END applied went to
 *   both (an FUA write with its FUA on both), and a flush after it
 *   reached the targets through the hook; a write after the END applied
 *   goes to the target only (the new mapping), and so do its flushes.
 * crash after END: the targets are authoritative; the sources are free.
 * ABORT: its apply clears the batch (no new write sees the hook), then
 *   takes each extent's volume's map_lock exclusive once (a write that
 *   saw the hook holds it shared and may still write a target), then
 *   frees the targets: no target PE is given out while a write to it is
 *   in flight (and the admin lock keeps it until the apply is over).
 * volume removed or its mapping changed (mirror leg replacement) during a
 *   move: the hook keeps dst equal to src whoever writes there (dst is
 *   reserved, nobody else uses it); END checks every extent's mapping and
 *   aborts the batch instead.  A checkpoint leaves out an extent whose
 *   volume no longer maps src (its dst is then free at the next open)
 *   and then writes no PROGRESS (the stream offsets moved; the open
 *   compares the whole batch anyway).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "move_batch.h"
#include "pool_int.h"

/* The copy unit: one range-FIFO entry, one read of src and one write of
 * dst.  A writer into the chunk being copied waits for at most this much
 * page-cache or device I/O. */
#define MOVE_CHUNK (1u << 20)
/* The compare-and-repair unit after an open (a chunk that differs is
 * rewritten whole; small, so that a repair copies little). */
#define MOVE_VERIFY_CHUNK (256u << 10)
/* A checkpoint (flush dst, commit MOVE_PROGRESS) once this many bytes or
 * this much time went by since the last one, and when the copier stops
 * with the extent unfinished (pool close, a caller's byte budget): what a
 * crash makes the copier do again is at most one such interval (and the
 * compare of what came before it).  A
 * flush of dst and a metadata commit cost a journal commit each on a
 * file system: per 1 MiB (before) they kept the copy at a fifth of dd's
 * rate.  With the default 4 MiB extents an unlimited move makes none: the
 * extent's BEGIN and END are its checkpoints. */
#define MOVE_CKPT_BYTES (32ull << 20)
#define MOVE_CKPT_NS    (1000000000LL)
#define MOVE_TICK_NS    (2000000000LL)

/* A batch: up to this many extents of one source device move together:
 * one BEGIN commit (a BEGIN op each), one copy pass, one flush of the
 * targets, one END commit (an END op each).  With a rate limit a batch
 * holds about MOVE_CKPT_NS worth of extents (at least one). */
#ifndef MOVE_BATCH
#define MOVE_BATCH 8
#endif

struct mvr {
    uint64_t start, end;
    struct mvr *prev, *next;
};

/* One extent of the batch. */
struct mvslot {
    uint32_t vol, leg, dst;
    uint64_t le, spe, dpe;
    uint64_t soff, doff; /* byte offsets of the PEs on their devices */
    bool ended;          /* its END applied */
};

struct vd_move {
    vd_pool *p;
    pthread_mutex_t lock; /* every field below */
    pthread_cond_t cond;  /* ranges, copier_busy */
    /* persisted (metadata apply) */
    bool active;
    uint32_t n; /* extents in the batch (kept after END for switching) */
    struct mvslot s[MOVE_BATCH];
    uint32_t src, evac;  /* src: every extent of the batch is on it */
    uint64_t done, rate; /* done: bytes of the batch's stream (extent i's
                            byte b is stream byte i * extent_size + b) */
    /* runtime (m->lock; the copier's) */
    uint64_t cursor;     /* next stream byte to copy (>= done) */
    uint64_t verify_end; /* [cursor, verify_end): compare first (after open) */
    bool failed;
    bool sealed;    /* finish decided to switch (checked !failed) and the
                       END commit runs or ran: a dst write or flush failing
                       now fails its request (see the header) */
    bool switching; /* END applied, dst not flushed again yet: flushes
                       of src still flush dst (finish) */
    char error[200];
    bool copier_busy;
    struct mvr *rhead, *rtail;
    /* evacuation (memory; evac above survives a restart) */
    bool evac_to[VD_MAX_DEVS];
    bool evac_to_set;
    uint64_t evac_total, evac_moved;
    /* rebalance (persisted by VD_OP_MOVE_JOB like evac, evac_to, rate) */
    bool rebal;
    uint64_t reb_total, reb_moved;
    /* statistics */
    struct vd_move_stats st;
    int64_t t0_ns; /* start of the current move (rate) */
    uint64_t t0_bytes;
    uint64_t rate_bps;
    uint64_t ckpt_bytes; /* copied since the last checkpoint */
    int64_t ckpt_ns;     /* time of the last checkpoint (or BEGIN) */
    /* the copier's own (copier_busy): the earliest start of its next
     * chunk under a rate limit */
    int64_t rl_next_ns;
};

bool g_move_test_hold; /* tests: the background thread leaves moves alone */
/* tests: called at named points of the copier ("end-commit": the switch
 * is decided, the END commit not yet made; no lock held but the admin
 * lock) */
void (*g_move_test_hook)(vd_pool *p, const char *event);

static int64_t mono_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

int vd_move_init(vd_pool *p)
{
    struct vd_move *m = calloc(1, sizeof(*m));
    if (!m)
        return -ENOMEM;
    m->p = p;
    m->evac = VD_NO_DEV;
    pthread_mutex_init(&m->lock, NULL);
    pthread_cond_init(&m->cond, NULL);
    p->move = m;
    return 0;
}

void vd_move_free(vd_pool *p)
{
    struct vd_move *m = p->move;
    if (!m)
        return;
    pthread_mutex_destroy(&m->lock);
    pthread_cond_destroy(&m->cond);
    free(m);
    p->move = NULL;
}

/* ---- ranges of the source device ------------------------------------------ */
static bool ov(uint64_t a0, uint64_t a1, uint64_t b0, uint64_t b1)
{
    return a0 < b1 && b0 < a1;
}

static bool blocked_locked(struct vd_move *m, struct mvr *e)
{
    for (struct mvr *x = m->rhead; x && x != e; x = x->next)
        if (ov(x->start, x->end, e->start, e->end))
            return true;
    return false;
}

static void range_get_locked(struct vd_move *m, struct mvr *e, uint64_t s,
                             uint64_t end)
{
    e->start = s;
    e->end = end;
    e->next = NULL;
    e->prev = m->rtail;
    if (m->rtail)
        m->rtail->next = e;
    else
        m->rhead = e;
    m->rtail = e;
    while (blocked_locked(m, e))
        pthread_cond_wait(&m->cond, &m->lock);
}

static void range_put_locked(struct vd_move *m, struct mvr *e)
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

static void fail_locked(struct vd_move *m, const char *fmt, const char *what)
{
    if (!m->failed) {
        m->failed = true;
        snprintf(m->error, sizeof(m->error), fmt, what);
    }
}

/* ---- the I/O hooks (pool/dev.c) -------------------------------------------- */
/* Does [off, off + len) of device d overlap an extent of the batch (not
 * switched yet)?  m->lock held. */
static bool hits_locked(const struct vd_move *m, const struct vd_dev *d,
                        uint64_t off, uint64_t len)
{
    const vd_pool *p = m->p;

    if (!m->active || &p->devs[m->src] != d)
        return false;
    for (uint32_t i = 0; i < m->n; i++)
        if (!m->s[i].ended &&
            ov(off, off + len, m->s[i].soff, m->s[i].soff + p->extent_size))
            return true;
    return false;
}

int vd_move_dev_pwrite(struct vd_dev *d, const void *buf, size_t len,
                       uint64_t off, unsigned flags)
{
    struct vd_move *m = __atomic_load_n(&d->move, __ATOMIC_ACQUIRE);
    vd_pool *p = m->p;
    uint64_t es = p->extent_size;
    struct {
        struct vd_dev *t;
        uint64_t a, b, toff;
    } tg[MOVE_BATCH];
    uint32_t nt = 0;
    struct mvr e;
    bool mine = false;
    int r;

    pthread_mutex_lock(&m->lock);
    if (hits_locked(m, d, off, len)) {
        range_get_locked(m, &e, off, off + len);
        mine = true;
        /* the extents this write touches are those of its volume, whose
         * BEGIN and END apply under its map_lock exclusive (this write
         * holds it shared): they did not change while we waited.  After
         * an ABORT dst is not needed (its PE is not given out before
         * this write ends: the ABORT apply waits for the map_lock) */
        for (uint32_t i = 0; m->active && i < m->n && (!m->failed || m->sealed);
             i++) {
            const struct mvslot *x = &m->s[i];
            if (x->ended || !ov(off, off + len, x->soff, x->soff + es))
                continue;
            tg[nt].a = off > x->soff ? off : x->soff;
            tg[nt].b = off + len < x->soff + es ? off + len : x->soff + es;
            tg[nt].t = &p->devs[x->dst];
            tg[nt].toff = x->doff + (tg[nt].a - x->soff);
            nt++;
        }
    }
    pthread_mutex_unlock(&m->lock);
    if (!mine)
        return vd_dev_pwrite(d, buf, len, off, flags | VD_IO_MOVER);
    bool lost = false; /* a target misses this write and will be the extent */
    const char *lost_on = NULL;
    /* src first: a write that fails there (not acknowledged) leaves the
     * targets as they were, equal to what src held before it (vdsim seed
     * 661: the target took a write its source refused, in a part already
     * copied; the mirror's resync copied the source's old data to the
     * other leg, and the switch then made the legs differ in a clean
     * region).  The move is abandoned too (src may hold part of it). */
    r = vd_dev_pwrite(d, buf, len, off, flags | VD_IO_MOVER);
    if (r < 0 && nt) {
        pthread_mutex_lock(&m->lock);
        fail_locked(m, "write to the source device '%s' failed", d->name);
        pthread_mutex_unlock(&m->lock);
        vd_bg_kick(p);
        nt = 0;
    }
    for (uint32_t i = 0; i < nt; i++) {
        struct vd_dev *t = tg[i].t;
        int rt = -EIO;
        if (t->bdev &&
            __atomic_load_n(&t->state, __ATOMIC_ACQUIRE) == VD_DEV_OK)
            rt = vd_dev_pwrite(t, (const char *)buf + (tg[i].a - off),
                               tg[i].b - tg[i].a, tg[i].toff,
                               flags | VD_IO_MOVER);
        if (rt < 0) {
            pthread_mutex_lock(&m->lock);
            fail_locked(m, "write to the target device '%s' failed", t->name);
            if (m->sealed) {
                lost = true;
                lost_on = t->name;
            }
            pthread_mutex_unlock(&m->lock);
            vd_bg_kick(p);
        }
    }
    if (lost && r == 0) {
        vd_log(VD_LOG_ERR,
               "device '%s': a write to an extent being switched to device "
               "'%s' failed there: the write fails",
               d->name, lost_on);
        r = -EIO;
    }
    pthread_mutex_lock(&m->lock);
    range_put_locked(m, &e);
    pthread_mutex_unlock(&m->lock);
    return r;
}

bool vd_move_nowait_ok(struct vd_dev *d, uint64_t off, size_t len)
{
    struct vd_move *m = __atomic_load_n(&d->move, __ATOMIC_ACQUIRE);
    bool ok;

    if (!m)
        return true;
    if (pthread_mutex_trylock(&m->lock))
        return false;
    ok = !hits_locked(m, d, off, len);
    pthread_mutex_unlock(&m->lock);
    return ok;
}

/* The batch's distinct target devices into t (MOVE_BATCH at most); m->lock
 * held. */
static uint32_t targets_locked(struct vd_move *m, struct vd_dev **t)
{
    uint32_t nt = 0;

    for (uint32_t i = 0; i < m->n; i++) {
        struct vd_dev *x = &m->p->devs[m->s[i].dst];
        uint32_t k = 0;
        while (k < nt && t[k] != x)
            k++;
        if (k == nt)
            t[nt++] = x;
    }
    return nt;
}

int vd_move_dev_flush(struct vd_dev *d)
{
    struct vd_move *m = __atomic_load_n(&d->move, __ATOMIC_ACQUIRE);
    struct vd_dev *t[MOVE_BATCH];
    uint32_t nt = 0;
    bool lost = false;

    pthread_mutex_lock(&m->lock);
    if ((m->active || m->switching) && &m->p->devs[m->src] == d &&
        (!m->failed || m->sealed))
        nt = targets_locked(m, t);
    pthread_mutex_unlock(&m->lock);
    for (uint32_t i = 0; i < nt; i++)
        if (!t[i]->bdev || vd_dev_flush(t[i]) < 0) {
            pthread_mutex_lock(&m->lock);
            fail_locked(m, "flush of the target device '%s' failed",
                        t[i]->name);
            lost |= m->sealed;
            pthread_mutex_unlock(&m->lock);
            vd_bg_kick(m->p);
        }
    return lost ? -EIO : 0;
}

/* ---- metadata ------------------------------------------------------------ */
#define BAD(...)                         \
    do {                                 \
        vd_log(VD_LOG_ERR, __VA_ARGS__); \
        return -EINVAL;                  \
    } while (0)

static bool pe_used(const struct vd_dev *d, uint64_t pe)
{
    return d->used[pe / 8] & (1u << (pe % 8));
}

static void pe_set(struct vd_dev *d, uint64_t pe, bool on)
{
    if (on) {
        d->used[pe / 8] |= 1u << (pe % 8);
        d->used_count++;
    } else {
        d->used[pe / 8] &= ~(1u << (pe % 8));
        d->used_count--;
    }
}

static bool dev_ok(const vd_pool *p, uint32_t dev)
{
    return dev < p->ndevs && p->devs[dev].used;
}

static void end_switch(vd_pool *p)
{
    struct vd_move *m = p->move;

    pthread_mutex_lock(&m->lock);
    if (m->switching) {
        m->switching = false;
        __atomic_store_n(&p->devs[m->src].move, NULL, __ATOMIC_RELEASE);
    }
    m->sealed = false;
    pthread_mutex_unlock(&m->lock);
}

/* A BEGIN starts a batch when none runs, else adds an extent to the
 * running one (the ops of one commit; a batch never grows once copying
 * started). */
static int apply_begin(vd_pool *p, const struct vd_op_move *o)
{
    struct vd_move *m = p->move;
    struct vd_vol *v = vd_vol_find_id(p, o->vol);
    const struct vd_pe *e;

    if (m->active &&
        (m->n >= MOVE_BATCH || o->src != m->src || m->done || m->cursor))
        BAD("pool '%s': metadata starts a move while one runs", p->name);
    if (!v)
        BAD("pool '%s': metadata moves an extent of unknown volume %u", p->name,
            o->vol);
    if (o->leg >= v->copies || o->le >= v->le_count)
        BAD("pool '%s': volume '%s': move of extent %" PRIu64
            " leg %u out of range",
            p->name, v->name, o->le, o->leg);
    e = &v->map[o->le * v->copies + o->leg];
    if (e->dev != o->src || e->pe != o->spe)
        BAD("pool '%s': volume '%s': move source does not match the mapping",
            p->name, v->name);
    for (uint32_t i = 0; m->active && i < m->n; i++)
        if (m->s[i].spe == o->spe)
            BAD("pool '%s': volume '%s': extent %" PRIu64
                " moves twice in one batch",
                p->name, v->name, o->le);
    if (!dev_ok(p, o->dst) || o->dst == o->src ||
        o->dpe >= p->devs[o->dst].pe_count || pe_used(&p->devs[o->dst], o->dpe))
        BAD("pool '%s': volume '%s': move target %u/%" PRIu64
            " is not a free extent",
            p->name, v->name, o->dst, o->dpe);
    if (o->evac != VD_NO_DEV && !dev_ok(p, o->evac))
        BAD("pool '%s': move names unknown device %u", p->name, o->evac);
    if (!m->active)
        end_switch(p); /* a replayed END before this BEGIN */
    pthread_rwlock_wrlock(&v->map_lock);
    pthread_mutex_lock(&m->lock);
    pe_set(&p->devs[o->dst], o->dpe, true);
    if (!m->active) {
        m->n = 0;
        m->src = o->src;
        m->done = 0;
        m->cursor = 0;
        m->verify_end = 0;
        m->failed = false;
        m->sealed = false;
        m->error[0] = 0;
        m->ckpt_bytes = 0;
        m->ckpt_ns = mono_ns();
        m->t0_ns = mono_ns();
        m->t0_bytes = m->st.bytes_copied;
    }
    struct mvslot *x = &m->s[m->n];
    memset(x, 0, sizeof(*x));
    x->vol = o->vol;
    x->leg = o->leg;
    x->le = o->le;
    x->spe = o->spe;
    x->dst = o->dst;
    x->dpe = o->dpe;
    x->soff = p->devs[o->src].data_offset + o->spe * p->extent_size;
    x->doff = p->devs[o->dst].data_offset + o->dpe * p->extent_size;
    m->n++;
    m->rate = o->rate;
    m->evac = o->evac;
    m->active = true;
    if (o->evac != VD_NO_DEV)
        p->devs[o->evac].no_alloc = true; /* also after a restart */
    __atomic_store_n(&p->devs[o->src].move, m, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&m->lock);
    pthread_rwlock_unlock(&v->map_lock);
    return 0;
}

static int apply_progress(vd_pool *p, const struct vd_op_move_progress *o)
{
    struct vd_move *m = p->move;

    if (!m->active || o->done > m->n * p->extent_size || o->done < m->done)
        BAD("pool '%s': metadata move progress %" PRIu64 " does not fit",
            p->name, o->done);
    pthread_mutex_lock(&m->lock);
    m->done = o->done;
    m->rate = o->rate;
    m->evac = o->evac;
    pthread_mutex_unlock(&m->lock);
    return 0;
}

/* Clear the move (m->lock not held).  After END the hook stays for
 * flushes (switching) until finish flushed the targets; the batch's
 * extents (m->n, m->s) stay for that. */
static void clear_move(vd_pool *p, struct vd_move *m, bool switching)
{
    pthread_mutex_lock(&m->lock);
    m->switching = switching;
    if (!switching) {
        __atomic_store_n(&p->devs[m->src].move, NULL, __ATOMIC_RELEASE);
        m->sealed = false;
    }
    m->active = false;
    m->done = m->cursor = m->verify_end = 0;
    pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->lock);
}

static int apply_end(vd_pool *p, const struct vd_op_move *o)
{
    struct vd_move *m = p->move;
    struct vd_vol *v = vd_vol_find_id(p, o->vol);
    struct mvslot *x = NULL;
    struct vd_pe *e;
    bool last = true;

    for (uint32_t i = 0; m->active && i < m->n; i++) {
        struct mvslot *y = &m->s[i];
        if (!y->ended && y->vol == o->vol && y->le == o->le &&
            y->leg == o->leg && y->dst == o->dst && y->dpe == o->dpe && !x)
            x = y;
        else if (!y->ended)
            last = false;
    }
    if (!x || !v || o->le >= v->le_count)
        BAD("pool '%s': metadata ends a move that is not running", p->name);
    e = &v->map[o->le * v->copies + o->leg];
    if (e->dev != m->src || e->pe != x->spe)
        BAD("pool '%s': volume '%s': move end does not match the mapping",
            p->name, v->name);
    pthread_rwlock_wrlock(&v->map_lock);
    pe_set(&p->devs[m->src], x->spe, false);
    e->pe = x->dpe;
    __atomic_store_n(&e->dev, x->dst, __ATOMIC_RELEASE);
    pthread_mutex_lock(&m->lock);
    x->ended = true;
    pthread_mutex_unlock(&m->lock);
    if (last)
        clear_move(p, m, true);
    pthread_rwlock_unlock(&v->map_lock);
    return 0;
}

static int apply_abort(vd_pool *p)
{
    struct vd_move *m = p->move;

    if (!m->active)
        return 0; /* a checkpoint left out a move whose volume went */
    /* the hook goes first; then every volume of the batch is waited for
     * (its map_lock exclusive): no write that saw the hook still writes a
     * target when its PE is free again */
    clear_move(p, m, false);
    for (uint32_t i = 0; i < m->n; i++) {
        struct vd_vol *v = vd_vol_find_id(p, m->s[i].vol);
        if (v) {
            pthread_rwlock_wrlock(&v->map_lock);
            pthread_rwlock_unlock(&v->map_lock);
        }
        if (!m->s[i].ended)
            pe_set(&p->devs[m->s[i].dst], m->s[i].dpe, false);
    }
    return 0;
}

/* The job (VD_OP_MOVE_JOB): what the copier does when no move runs. */
static int apply_job(vd_pool *p, const struct vd_op_move_job *o)
{
    struct vd_move *m = p->move;

    if (o->kind > VD_MOVE_JOB_REBALANCE)
        BAD("pool '%s': metadata names an unknown mover job %u", p->name,
            o->kind);
    if (o->kind == VD_MOVE_JOB_EVACUATE && !dev_ok(p, o->dev))
        BAD("pool '%s': metadata evacuates unknown device %u", p->name, o->dev);
    pthread_mutex_lock(&m->lock);
    /* the device evacuated before stays out of allocation only if its
     * evacuation drained it (VD_DEVF_DRAIN; older metadata has no flag) */
    if (m->evac != VD_NO_DEV && dev_ok(p, m->evac))
        p->devs[m->evac].no_alloc = !!(p->devs[m->evac].flags & VD_DEVF_DRAIN);
    m->rebal = o->kind == VD_MOVE_JOB_REBALANCE;
    m->evac = o->kind == VD_MOVE_JOB_EVACUATE ? o->dev : VD_NO_DEV;
    m->evac_to_set = false;
    for (uint32_t i = 0; i < VD_MAX_DEVS; i++) {
        m->evac_to[i] = m->evac != VD_NO_DEV && (o->to[i / 8] & (1u << i % 8));
        m->evac_to_set |= m->evac_to[i];
    }
    if (o->kind != VD_MOVE_JOB_NONE)
        m->rate = o->rate;
    if (m->evac != VD_NO_DEV)
        p->devs[m->evac].no_alloc = true; /* also after a restart */
    pthread_mutex_unlock(&m->lock);
    return 0;
}

static void fill_job(const struct vd_move *m, struct vd_op_move_job *o)
{
    memset(o, 0, sizeof(*o));
    o->h.type = VD_OP_MOVE_JOB;
    o->h.len = sizeof(*o);
    o->kind = m->evac != VD_NO_DEV ? VD_MOVE_JOB_EVACUATE
              : m->rebal           ? VD_MOVE_JOB_REBALANCE
                                   : VD_MOVE_JOB_NONE;
    o->dev = m->evac;
    o->rate = m->rate;
    for (uint32_t i = 0; i < VD_MAX_DEVS; i++)
        if (m->evac != VD_NO_DEV && m->evac_to_set && m->evac_to[i])
            o->to[i / 8] |= (uint8_t)(1u << i % 8);
}

int vd_move_md_apply(vd_pool *p, const struct vd_op_hdr *h)
{
    switch (h->type) {
    case VD_OP_MOVE_JOB:
        if (h->len < sizeof(struct vd_op_move_job))
            BAD("pool '%s': metadata op move job too short", p->name);
        return apply_job(p, (const struct vd_op_move_job *)h);
    case VD_OP_MOVE_BEGIN:
    case VD_OP_MOVE_END:
        if (h->len < sizeof(struct vd_op_move))
            BAD("pool '%s': metadata op move too short", p->name);
        return h->type == VD_OP_MOVE_BEGIN
                   ? apply_begin(p, (const struct vd_op_move *)h)
                   : apply_end(p, (const struct vd_op_move *)h);
    case VD_OP_MOVE_PROGRESS:
        if (h->len < sizeof(struct vd_op_move_progress))
            BAD("pool '%s': metadata op move progress too short", p->name);
        return apply_progress(p, (const struct vd_op_move_progress *)h);
    case VD_OP_MOVE_ABORT:
        return apply_abort(p);
    }
    return -ENOENT;
}

static void fill_op(const struct vd_move *m, uint32_t i, struct vd_op_move *o,
                    uint16_t t)
{
    const struct mvslot *x = &m->s[i];

    memset(o, 0, sizeof(*o));
    o->h.type = t;
    o->vol = x->vol;
    o->leg = x->leg;
    o->le = x->le;
    o->src = m->src;
    o->spe = x->spe;
    o->dst = x->dst;
    o->dpe = x->dpe;
    o->rate = m->rate;
    o->evac = m->evac;
}

/* Does extent i of the batch still map the source? */
static bool slot_mapped(const vd_pool *p, const struct vd_move *m, uint32_t i)
{
    const struct mvslot *x = &m->s[i];
    const struct vd_vol *v = vd_vol_find_id(p, x->vol);

    return v && x->le < v->le_count &&
           v->map[x->le * v->copies + x->leg].dev == m->src &&
           v->map[x->le * v->copies + x->leg].pe == x->spe;
}

int vd_move_serialize(const vd_pool *p, struct vd_opbuf *b)
{
    struct vd_move *m = p->move;
    struct vd_op_move o;
    struct vd_op_move_progress pr = { .h.type = VD_OP_MOVE_PROGRESS };
    bool all = true;
    int r;

    if (m && (m->evac != VD_NO_DEV || m->rebal)) {
        struct vd_op_move_job j;
        fill_job(m, &j);
        if ((r = vd_opbuf_add(b, &j, sizeof(j))) < 0)
            return r;
    }
    if (!m || !m->active)
        return 0;
    /* the batch's extents whose volume still maps the source (the others
     * are left out: their targets are free at the next open) */
    for (uint32_t i = 0; i < m->n; i++) {
        if (!slot_mapped(p, m, i)) {
            all = false;
            continue;
        }
        fill_op(m, i, &o, VD_OP_MOVE_BEGIN);
        if ((r = vd_opbuf_add(b, &o, sizeof(o))) < 0)
            return r;
    }
    /* done counts the batch's stream: meaningless once an extent is left
     * out (the open compares the whole batch anyway) */
    if (!all || !m->done)
        return 0;
    pr.done = m->done;
    pr.rate = m->rate;
    pr.evac = m->evac;
    return vd_opbuf_add(b, &pr, sizeof(pr));
}

/* ---- planning -------------------------------------------------------------- */
/* May dev hold leg `leg` of extent le of v?  The mirror's rule: a leg's
 * extents stay off the nodes of the other legs (legs.c), or off their
 * devices when the legs share a node (allow_same_node). */
static bool leg_allows(const vd_pool *p, const struct vd_vol *v, uint32_t leg,
                       uint32_t dev)
{
    bool shared = false;

    if (v->copies < 2)
        return true;
    /* do the other legs share a node with this one already? */
    for (uint64_t le = 0; le < v->le_count; le++)
        for (uint32_t k = 0; k < v->copies; k++) {
            uint32_t a = v->map[le * v->copies + k].dev;
            if (k == leg || a == VD_NO_DEV)
                continue;
            for (uint64_t l2 = 0; l2 < v->le_count; l2++) {
                uint32_t b = v->map[l2 * v->copies + leg].dev;
                if (b != VD_NO_DEV && !strcmp(p->devs[a].node, p->devs[b].node))
                    shared = true;
            }
        }
    for (uint64_t le = 0; le < v->le_count; le++)
        for (uint32_t k = 0; k < v->copies; k++) {
            uint32_t a = v->map[le * v->copies + k].dev;
            if (k == leg || a == VD_NO_DEV)
                continue;
            if (a == dev)
                return false;
            if (!shared && !strcmp(p->devs[a].node, p->devs[dev].node))
                return false;
        }
    return true;
}

static uint64_t first_free(const struct vd_dev *d)
{
    for (uint64_t pe = 0; pe < d->pe_count; pe++)
        if (!pe_used(d, pe))
            return pe;
    return UINT64_MAX;
}

/* The target for leg `leg` of extent le of v, now on src: a usable device
 * other than src (and not being evacuated), allowed by to (NULL: any) and
 * the leg rule, least used by percentage.  -ENOSPC when none. */
static int choose_dst(const vd_pool *p, const struct vd_vol *v, uint32_t leg,
                      uint32_t src, const bool *to, uint32_t *dst,
                      uint64_t *dpe)
{
    uint32_t best = VD_NO_DEV;
    double best_use = 2;

    for (uint32_t i = 0; i < p->ndevs; i++) {
        const struct vd_dev *d = &p->devs[i];
        if (!d->used || i == src || d->state != VD_DEV_OK || !d->bdev ||
            d->no_alloc || (to && !to[i]) || d->used_count >= d->pe_count ||
            !leg_allows(p, v, leg, i))
            continue;
        double use = (double)d->used_count / (double)d->pe_count;
        if (use < best_use) {
            best_use = use;
            best = i;
        }
    }
    if (best == VD_NO_DEV)
        return -ENOSPC;
    *dst = best;
    *dpe = first_free(&p->devs[best]);
    return 0;
}

/* One extent of a batch being planned. */
struct mvplan {
    struct vd_vol *v;
    uint32_t leg, dst;
    uint64_t le, dpe;
};

/* Commit the BEGINs of a batch of n extents, all on one device (admin
 * lock held). */
static int begin_locked(vd_pool *p, const struct mvplan *pl, uint32_t n,
                        uint64_t rate, uint32_t evac)
{
    struct vd_move *m = p->move;
    struct vd_opbuf ops = { 0 };
    int r = 0;

    if (m->active)
        return -EBUSY;
    ops.keep_data = true;
    for (uint32_t i = 0; i < n && r == 0; i++) {
        const struct vd_pe *e =
            &pl[i].v->map[pl[i].le * pl[i].v->copies + pl[i].leg];
        struct vd_op_move o;
        memset(&o, 0, sizeof(o));
        o.h.type = VD_OP_MOVE_BEGIN;
        o.vol = pl[i].v->id;
        o.leg = pl[i].leg;
        o.le = pl[i].le;
        o.src = e->dev;
        o.spe = e->pe;
        o.dst = pl[i].dst;
        o.dpe = pl[i].dpe;
        o.rate = rate;
        o.evac = evac;
        r = vd_opbuf_add(&ops, &o, sizeof(o));
    }
    if (r == 0)
        r = vd_md_commit(p, &ops);
    vd_opbuf_free(&ops);
    if (r == 0)
        for (uint32_t i = 0; i < n; i++)
            vd_log(VD_LOG_INFO,
                   "pool '%s': moving extent %" PRIu64 " leg %u of volume "
                   "'%s' from '%s' to '%s'%s",
                   p->name, pl[i].le, pl[i].leg, pl[i].v->name,
                   p->devs[m->src].name, p->devs[pl[i].dst].name,
                   n > 1 ? " (a batch)" : "");
    return r;
}

int vd_move_extent(vd_pool *p, const char *vol, uint32_t leg, uint64_t le,
                   const char *to, uint64_t rate)
{
    struct vd_vol *v;
    uint32_t dst;
    uint64_t dpe;
    bool only[VD_MAX_DEVS] = { false };
    int r;

    vd_admin_lock(p);
    v = vd_vol_find(p, vol);
    if (!v) {
        vd_log(VD_LOG_ERR, "volume '%s/%s': not found", p->name, vol);
        r = -ENOENT;
        goto out;
    }
    if (leg >= v->copies || le >= v->le_count ||
        v->map[le * v->copies + leg].dev == VD_NO_DEV) {
        vd_log(VD_LOG_ERR,
               "volume '%s/%s': extent %" PRIu64 " leg %u is not mapped",
               p->name, vol, le, leg);
        r = -EINVAL;
        goto out;
    }
    if (to) {
        uint32_t i;
        for (i = 0; i < p->ndevs; i++)
            if (p->devs[i].used && !strcmp(p->devs[i].name, to))
                break;
        if (i == p->ndevs) {
            vd_log(VD_LOG_ERR, "pool '%s': no device '%s'", p->name, to);
            r = -EINVAL;
            goto out;
        }
        only[i] = true;
    }
    if (p->move->active) {
        vd_log(VD_LOG_ERR, "pool '%s': a move is already running", p->name);
        r = -EBUSY;
        goto out;
    }
    r = choose_dst(p, v, leg, v->map[le * v->copies + leg].dev,
                   to ? only : NULL, &dst, &dpe);
    if (r < 0) {
        vd_log(VD_LOG_ERR,
               "volume '%s/%s': no device can take extent %" PRIu64
               " leg %u (free space, other legs' nodes, --to)",
               p->name, vol, le, leg);
        goto out;
    }
    struct mvplan pl = { v, leg, dst, le, dpe };
    r = begin_locked(p, &pl, 1, rate, VD_NO_DEV);
out:
    vd_admin_unlock(p);
    if (r == 0)
        vd_bg_kick(p);
    return r;
}

uint32_t vd_move_batch_max(void)
{
    return MOVE_BATCH;
}

uint32_t vd_move_targets_on(vd_pool *p, uint32_t dev)
{
    struct vd_move *m = p->move;
    uint32_t n = 0;

    pthread_mutex_lock(&m->lock);
    for (uint32_t i = 0; m->active && i < m->n; i++)
        n += !m->s[i].ended && m->s[i].dst == dev;
    pthread_mutex_unlock(&m->lock);
    return n;
}

int vd_move_extents(vd_pool *p, const char *vol, const uint32_t *legs,
                    const uint64_t *les, uint32_t n, uint64_t rate)
{
    struct mvplan pl[MOVE_BATCH];
    struct vd_vol *v;
    uint32_t src = VD_NO_DEV, k = 0;
    int r = 0;

    vd_admin_lock(p);
    v = vd_vol_find(p, vol);
    if (!v) {
        vd_log(VD_LOG_ERR, "volume '%s/%s': not found", p->name, vol);
        r = -ENOENT;
        goto out;
    }
    if (n < 1 || n > MOVE_BATCH) {
        vd_log(VD_LOG_ERR, "pool '%s': a batch holds 1 to %u extents", p->name,
               MOVE_BATCH);
        r = -EINVAL;
        goto out;
    }
    for (uint32_t i = 0; i < n; i++) {
        const struct vd_pe *e = les[i] < v->le_count && legs[i] < v->copies
                                    ? &v->map[les[i] * v->copies + legs[i]]
                                    : NULL;
        bool twice = false;
        for (uint32_t j = 0; j < i; j++)
            twice |= les[j] == les[i] && legs[j] == legs[i];
        if (!e || e->dev == VD_NO_DEV || twice ||
            (src != VD_NO_DEV && e->dev != src)) {
            vd_log(VD_LOG_ERR,
                   "volume '%s/%s': extent %" PRIu64 " leg %u: not mapped, "
                   "named twice or not on the batch's device",
                   p->name, vol, les[i], legs[i]);
            r = -EINVAL;
            goto out;
        }
        src = e->dev;
    }
    if (p->move->active) {
        vd_log(VD_LOG_ERR, "pool '%s': a move is already running", p->name);
        r = -EBUSY;
        goto out;
    }
    for (k = 0; k < n; k++) {
        uint32_t dst;
        uint64_t dpe;
        if ((r = choose_dst(p, v, legs[k], src, NULL, &dst, &dpe)) < 0) {
            vd_log(VD_LOG_ERR,
                   "volume '%s/%s': no device can take extent %" PRIu64
                   " leg %u (free space, other legs' nodes)",
                   p->name, vol, les[k], legs[k]);
            break;
        }
        pe_set(&p->devs[dst], dpe, true); /* planned (as evac_next_locked) */
        pl[k] = (struct mvplan){ v, legs[k], dst, les[k], dpe };
    }
    for (uint32_t i = 0; i < k; i++)
        pe_set(&p->devs[pl[i].dst], pl[i].dpe, false);
    if (r == 0)
        r = begin_locked(p, pl, n, rate, VD_NO_DEV);
out:
    vd_admin_unlock(p);
    if (r == 0)
        vd_bg_kick(p);
    return r;
}

/* ---- the copier ----------------------------------------------------------- */
static int commit_one(vd_pool *p, const void *op, size_t len)
{
    struct vd_opbuf ops = { 0 };
    int r;

    ops.keep_data = true;
    if ((r = vd_opbuf_add(&ops, op, len)) == 0)
        r = vd_md_commit(p, &ops);
    vd_opbuf_free(&ops);
    return r;
}

static int abort_move(vd_pool *p, const char *why)
{
    struct vd_move *m = p->move;
    struct vd_op_hdr h = { .type = VD_OP_MOVE_ABORT, .len = 8 };
    int r = 0;

    vd_admin_lock(p);
    if (m->active) {
        for (uint32_t i = 0; i < m->n; i++) {
            struct vd_vol *v = vd_vol_find_id(p, m->s[i].vol);
            vd_log(VD_LOG_ERR,
                   "pool '%s': move of extent %" PRIu64 " leg %u of volume "
                   "'%s' from '%s' to '%s' abandoned (the volume keeps its "
                   "extent): %s",
                   p->name, m->s[i].le, m->s[i].leg, v ? v->name : "?",
                   p->devs[m->src].name, p->devs[m->s[i].dst].name, why);
        }
        pthread_mutex_lock(&m->lock);
        snprintf(m->st.last_error, sizeof(m->st.last_error), "%s", why);
        pthread_mutex_unlock(&m->lock);
        /* an evacuation or rebalance stops at an error (the operator
         * decides), in the same commit */
        struct vd_opbuf ops = { 0 };
        struct vd_op_move_job j;
        bool job = m->evac != VD_NO_DEV || m->rebal;
        memset(&j, 0, sizeof(j));
        j.h.type = VD_OP_MOVE_JOB;
        j.dev = VD_NO_DEV;
        ops.keep_data = true;
        if ((r = vd_opbuf_add(&ops, &h, sizeof(h))) == 0 && job)
            r = vd_opbuf_add(&ops, &j, sizeof(j));
        if (r == 0)
            r = vd_md_commit(p, &ops);
        vd_opbuf_free(&ops);
        if (r == 0) {
            pthread_mutex_lock(&m->lock);
            m->st.moves_aborted++;
            pthread_mutex_unlock(&m->lock);
        }
    }
    vd_admin_unlock(p);
    return r;
}

/* Copy (or, below verify_end, compare and repair) one chunk at the cursor.
 * No lock held.  0, 1 when the extent is fully on dst, or -EIO. */
static int copy_chunk(vd_pool *p, uint8_t *a, uint8_t *b)
{
    struct vd_move *m = p->move;
    uint64_t es = p->extent_size, at, n;
    struct vd_dev *s, *t;
    struct mvr e;
    bool verify;
    int r = 0;

    pthread_mutex_lock(&m->lock);
    if (!m->active || m->failed) {
        pthread_mutex_unlock(&m->lock);
        return -EIO;
    }
    /* the cursor walks the batch's stream: extent cursor / es, byte
     * cursor % es of it; a chunk never spans two extents */
    if (m->cursor >= m->n * es) {
        pthread_mutex_unlock(&m->lock);
        return 1;
    }
    const struct mvslot *x = &m->s[m->cursor / es];
    uint64_t at0 = m->cursor;
    at = at0 % es;
    n = es - at < MOVE_CHUNK ? es - at : MOVE_CHUNK;
    verify = at0 < m->verify_end;
    if (verify && n > MOVE_VERIFY_CHUNK)
        n = MOVE_VERIFY_CHUNK;
    if (verify && at0 + n > m->verify_end)
        n = m->verify_end - at0;
    s = &p->devs[m->src];
    t = &p->devs[x->dst];
    range_get_locked(m, &e, x->soff + at, x->soff + at + n);
    uint64_t so = x->soff + at, to = x->doff + at;
    pthread_mutex_unlock(&m->lock);

    const char *why = NULL, *who = NULL;
    if (!s->bdev || __atomic_load_n(&s->state, __ATOMIC_ACQUIRE) != VD_DEV_OK ||
        vd_dev_pread(s, a, n, so) < 0) {
        why = "reading the source device '%s' failed";
        who = s->name;
    } else if (!t->bdev ||
               __atomic_load_n(&t->state, __ATOMIC_ACQUIRE) != VD_DEV_OK) {
        why = "the target device '%s' is unavailable";
        who = t->name;
    } else {
        bool write = true;
        if (verify) {
            if (vd_dev_pread(t, b, n, to) < 0) {
                why = "reading the target device '%s' failed";
                who = t->name;
            }
            write = !why && memcmp(a, b, n) != 0;
        }
        if (!why && write) {
            if (vd_dev_pwrite(t, a, n, to, VD_IO_MOVER) < 0) {
                why = "write to the target device '%s' failed";
                who = t->name;
            }
        }
        pthread_mutex_lock(&m->lock);
        if (verify)
            m->st.bytes_compared += n;
        if (!why && write) {
            m->st.bytes_copied += n;
            m->ckpt_bytes += n;
        }
        pthread_mutex_unlock(&m->lock);
    }
    pthread_mutex_lock(&m->lock);
    range_put_locked(m, &e);
    if (why) {
        fail_locked(m, why, who);
        r = -EIO;
    } else {
        m->cursor = at0 + n;
        r = m->cursor >= m->n * es;
    }
    pthread_mutex_unlock(&m->lock);
    return r;
}

/* The batch's distinct targets (the copier's view: the batch changes
 * only by the copier's own commits, or at an open). */
static uint32_t targets(vd_pool *p, struct vd_dev **t)
{
    struct vd_move *m = p->move;

    pthread_mutex_lock(&m->lock);
    uint32_t nt = targets_locked(m, t);
    pthread_mutex_unlock(&m->lock);
    return nt;
}

/* Flush every target of the batch: NULL, or the one that failed. */
static struct vd_dev *flush_targets(vd_pool *p)
{
    struct vd_dev *t[MOVE_BATCH];
    uint32_t nt = targets(p, t);

    for (uint32_t i = 0; i < nt; i++)
        if (vd_dev_flush(t[i]) < 0)
            return t[i];
    return NULL;
}

/* Flush the targets, then commit MOVE_PROGRESS at the cursor (admin lock
 * taken). */
static int checkpoint(vd_pool *p)
{
    struct vd_move *m = p->move;
    struct vd_op_move_progress o = { .h.type = VD_OP_MOVE_PROGRESS };
    int r;

    pthread_mutex_lock(&m->lock);
    m->ckpt_bytes = 0;
    m->ckpt_ns = mono_ns();
    pthread_mutex_unlock(&m->lock);
    if (flush_targets(p))
        return -EIO;
    vd_admin_lock(p);
    pthread_mutex_lock(&m->lock);
    o.done = m->cursor < m->verify_end ? m->done : m->cursor;
    o.rate = m->rate;
    o.evac = m->evac;
    bool go = m->active && !m->failed && o.done > m->done;
    pthread_mutex_unlock(&m->lock);
    r = go ? commit_one(p, &o, sizeof(o)) : 0;
    vd_admin_unlock(p);
    return r;
}

/* The switch: flush the targets, commit the batch's MOVE_ENDs (one
 * record), flush the targets again. */
static int finish(vd_pool *p)
{
    struct vd_move *m = p->move;
    struct vd_opbuf ops = { 0 };
    struct vd_op_move o[MOVE_BATCH];
    struct vd_dev *bad;
    uint32_t n;
    int r = 0;

    if ((bad = flush_targets(p)) != NULL) {
        pthread_mutex_lock(&m->lock);
        fail_locked(m, "flush of the target device '%s' failed", bad->name);
        pthread_mutex_unlock(&m->lock);
        return -EIO;
    }
    vd_admin_lock(p);
    pthread_mutex_lock(&m->lock);
    bool ok = m->active && !m->failed;
    for (uint32_t i = 0; ok && i < m->n; i++)
        ok = slot_mapped(p, m, i);
    if (!ok && !m->failed)
        fail_locked(m, "%s", "the volume's mapping changed during the move");
    /* from here a dst write or flush failing fails its request (it can
     * no longer stop the switch) */
    m->sealed = ok;
    n = m->n;
    for (uint32_t i = 0; i < n; i++)
        fill_op(m, i, &o[i], VD_OP_MOVE_END);
    pthread_mutex_unlock(&m->lock);
    if (ok && g_move_test_hook)
        g_move_test_hook(p, "end-commit");
    ops.keep_data = true;
    for (uint32_t i = 0; ok && i < n && r == 0; i++)
        r = vd_opbuf_add(&ops, &o[i], sizeof(o[i]));
    r = !ok ? -EIO : r < 0 ? r : vd_md_commit(p, &ops);
    vd_opbuf_free(&ops);
    /* a failed END commit keeps sealed until the ABORT is applied: the
     * record may have reached a copy that a crash-and-open picks up */
    if (r == 0) {
        pthread_mutex_lock(&m->lock);
        m->st.moves_done += n;
        if (m->evac != VD_NO_DEV)
            m->evac_moved += n;
        if (m->rebal)
            m->reb_moved += n;
        pthread_mutex_unlock(&m->lock);
        for (uint32_t i = 0; i < n; i++) {
            struct vd_vol *v = vd_vol_find_id(p, o[i].vol);
            vd_log(VD_LOG_INFO,
                   "pool '%s': extent %" PRIu64 " leg %u of volume '%s' now "
                   "on '%s'",
                   p->name, o[i].le, o[i].leg, v ? v->name : "?",
                   p->devs[o[i].dst].name);
        }
    }
    /* still under the admin lock (the old PEs are not given out before
     * the hook is gone): the targets durable, then flushes of src stop
     * reaching them */
    if (r == 0 && (bad = flush_targets(p)) != NULL)
        vd_log(VD_LOG_ERR,
               "pool '%s': device '%s': flush after a move failed: writes "
               "flushed during the move may not be durable there",
               p->name, bad->name);
    if (r == 0)
        end_switch(p);
    vd_admin_unlock(p);
    return r;
}

/* How many extents a batch takes: MOVE_BATCH unlimited, else about
 * MOVE_CKPT_NS worth at the rate (at least one). */
static uint32_t batch_size(const vd_pool *p, uint64_t rate)
{
    uint64_t k;

    if (!rate)
        return MOVE_BATCH;
    k = (uint64_t)((double)rate * (double)MOVE_CKPT_NS / 1e9) / p->extent_size;
    return k < 1 ? 1 : k > MOVE_BATCH ? MOVE_BATCH : (uint32_t)k;
}

/* The next extents on the evacuated device: start their move (a batch).
 * Admin lock held.  1 started, 0 nothing left (the evacuation is over),
 * <0 error. */
static int evac_next_locked(vd_pool *p)
{
    struct vd_move *m = p->move;
    uint32_t dev = m->evac, n = 0, want = batch_size(p, m->rate);
    struct mvplan pl[MOVE_BATCH];
    int r = 0;

    for (uint32_t i = 0; i < p->nvols && n < want && r == 0; i++) {
        struct vd_vol *v = p->vols[i];
        for (uint64_t le = 0; le < v->le_count && n < want && r == 0; le++)
            for (uint32_t leg = 0; leg < v->copies && n < want; leg++) {
                const struct vd_pe *e = &v->map[le * v->copies + leg];
                uint32_t dst;
                uint64_t dpe;
                if (e->dev != dev)
                    continue;
                r = choose_dst(p, v, leg, dev,
                               m->evac_to_set ? m->evac_to : NULL, &dst, &dpe);
                if (r < 0) {
                    if (n)
                        break; /* the batch so far; this one next time */
                    vd_log(VD_LOG_ERR,
                           "pool '%s': evacuating '%s': no device can take "
                           "extent %" PRIu64 " leg %u of volume '%s' (free "
                           "space, other legs' nodes, --to); evacuation "
                           "stopped",
                           p->name, p->devs[dev].name, le, leg, v->name);
                    snprintf(m->st.last_error, sizeof(m->st.last_error),
                             "no device can take extent %" PRIu64
                             " of volume '%s'",
                             le, v->name);
                    break;
                }
                /* reserved while planning (choose_dst and first_free
                 * see it); the BEGIN's apply reserves it for good */
                pe_set(&p->devs[dst], dpe, true);
                pl[n++] = (struct mvplan){ v, leg, dst, le, dpe };
            }
    }
    for (uint32_t i = 0; i < n; i++)
        pe_set(&p->devs[pl[i].dst], pl[i].dpe, false);
    if (!n)
        return r;
    r = begin_locked(p, pl, n, m->rate, dev);
    return r < 0 ? r : 1;
}

/* The job is over (done) or stopped: VD_OP_MOVE_JOB none.  Admin lock
 * held.  Should the commit fail, the job stops in memory all the same
 * (and goes on after a restart: the next open finds it). */
static void job_stop_locked(vd_pool *p, bool done)
{
    struct vd_move *m = p->move;
    struct vd_op_move_job j;

    if (m->evac == VD_NO_DEV && !m->rebal)
        return;
    if (done && m->evac != VD_NO_DEV)
        vd_log(VD_LOG_INFO,
               "pool '%s': device '%s' evacuated: it holds no "
               "extent",
               p->name, p->devs[m->evac].name);
    else if (done)
        vd_log(VD_LOG_INFO,
               "pool '%s': rebalanced (%" PRIu64 " extents moved): every "
               "device's use is within one extent of the mean",
               p->name, m->reb_moved);
    memset(&j, 0, sizeof(j));
    j.h.type = VD_OP_MOVE_JOB;
    j.dev = VD_NO_DEV;
    if (commit_one(p, &j, sizeof(j)) < 0)
        vd_log(VD_LOG_ERR,
               "pool '%s': recording the end of the %s failed (it may "
               "start again after a restart)",
               p->name, m->rebal ? "rebalance" : "evacuation");
    pthread_mutex_lock(&m->lock);
    m->evac = VD_NO_DEV;
    m->evac_to_set = false;
    m->rebal = false;
    pthread_mutex_unlock(&m->lock);
}

/* The next rebalance move: start it.  Admin lock held.  1 started, 0
 * balanced, <0 error. */
static int rebal_next_locked(vd_pool *p)
{
    struct vd_rebal_move mv;
    struct vd_vol *v;
    int r = vd_rebalance_next(p, &mv);

    if (r <= 0)
        return r;
    v = vd_vol_find_id(p, mv.vol);
    if (!v)
        return -ENOENT;
    struct mvplan pl = { v, mv.leg, mv.dst, mv.le, mv.dpe };
    r = begin_locked(p, &pl, 1, p->move->rate, VD_NO_DEV);
    return r < 0 ? r : 1;
}

/* Run the mover for up to budget_ns (or until max_bytes were copied, 0: no
 * limit).  One caller at a time (copier_busy).  Returns 1 when work is
 * left, 0 when idle, -EBUSY when another caller runs it. */
int vd_move_run(vd_pool *p, int64_t budget_ns, uint64_t max_bytes)
{
    struct vd_move *m = p->move;
    int64_t t_end = mono_ns() + budget_ns;
    uint64_t copied0;
    uint8_t *a = NULL, *b = NULL;
    int ret = 0;

    pthread_mutex_lock(&m->lock);
    if (m->copier_busy) {
        pthread_mutex_unlock(&m->lock);
        return -EBUSY;
    }
    m->copier_busy = true;
    copied0 = m->st.bytes_copied;
    pthread_mutex_unlock(&m->lock);
    if (posix_memalign((void **)&a, 4096, MOVE_CHUNK) ||
        posix_memalign((void **)&b, 4096, MOVE_CHUNK)) {
        ret = 1;
        goto out;
    }
    for (;;) {
        bool active, failed;
        pthread_mutex_lock(&m->lock);
        active = m->active;
        failed = m->failed;
        char why[sizeof(m->error)];
        snprintf(why, sizeof(why), "%s", m->error);
        pthread_mutex_unlock(&m->lock);
        if (active && failed) {
            if (abort_move(p, why) < 0) {
                ret = 1; /* metadata unreachable: again at a later call */
                break;
            }
            continue;
        }
        if (!active) {
            vd_admin_lock(p);
            int r = 0;
            if (m->evac != VD_NO_DEV) {
                r = evac_next_locked(p);
                if (r <= 0)
                    job_stop_locked(p, r == 0);
            } else if (m->rebal) {
                r = rebal_next_locked(p);
                if (r < 0) {
                    vd_log(VD_LOG_ERR,
                           "pool '%s': rebalance stopped: starting a move "
                           "failed: %s",
                           p->name, strerror(-r));
                    pthread_mutex_lock(&m->lock);
                    snprintf(m->st.last_error, sizeof(m->st.last_error),
                             "rebalance stopped: starting a move failed: %s",
                             strerror(-r));
                    pthread_mutex_unlock(&m->lock);
                }
                if (r <= 0)
                    job_stop_locked(p, r == 0);
            }
            vd_admin_unlock(p);
            if (r <= 0) {
                ret = 0;
                break;
            }
            continue;
        }
        bool stop = vd_bg_stopping(p) ||
                    (max_bytes && m->st.bytes_copied - copied0 >= max_bytes);
        if (stop || mono_ns() >= t_end) {
            /* stopped mid-extent (the pool closes, the caller's byte
             * budget): what was copied becomes a checkpoint.  Not at the
             * end of a time budget: the copier goes on within 250 ms and
             * the 1 s rule covers it. */
            pthread_mutex_lock(&m->lock);
            bool ck = stop && m->active && !m->failed && m->ckpt_bytes;
            pthread_mutex_unlock(&m->lock);
            if (ck && checkpoint(p) < 0) {
                pthread_mutex_lock(&m->lock);
                fail_locked(m, "%s", "a checkpoint could not be committed");
                pthread_mutex_unlock(&m->lock);
            }
            ret = 1;
            break;
        }
        /* the rate limit: no chunk starts before its time (rl_next_ns
         * carries over from one extent to the next, so a limit holds
         * over a whole evacuation; a burst is at most one chunk) */
        pthread_mutex_lock(&m->lock);
        uint64_t rate = m->rate;
        pthread_mutex_unlock(&m->lock);
        int64_t now = mono_ns();
        if (rate && m->rl_next_ns > now) {
            int64_t w = m->rl_next_ns - now;
            if (w > t_end - now)
                w = t_end - now;
            vd_bg_sleep(p, w < 500000000LL ? w : 500000000LL);
            continue;
        }
        pthread_mutex_lock(&m->lock);
        uint64_t before = m->st.bytes_copied;
        pthread_mutex_unlock(&m->lock);
        int r = copy_chunk(p, a, b);
        if (r < 0)
            continue; /* failed: aborted above */
        pthread_mutex_lock(&m->lock);
        uint64_t done = m->st.bytes_copied - m->t0_bytes;
        uint64_t n = m->st.bytes_copied - before;
        int64_t t0 = m->t0_ns, t1 = mono_ns();
        if (t1 > t0)
            m->rate_bps = (uint64_t)((double)done * 1e9 / (double)(t1 - t0));
        bool ck =
            r == 0 && (m->ckpt_bytes >= MOVE_CKPT_BYTES ||
                       (m->ckpt_bytes && t1 - m->ckpt_ns >= MOVE_CKPT_NS));
        pthread_mutex_unlock(&m->lock);
        if (rate && n)
            m->rl_next_ns = (m->rl_next_ns > now ? m->rl_next_ns : now) +
                            (int64_t)((double)n * 1e9 / (double)rate);
        if (r == 1) {
            /* the extent is on dst: the switch (its flush of dst is the
             * last checkpoint's) */
            if (finish(p) < 0) {
                pthread_mutex_lock(&m->lock);
                if (!m->failed)
                    fail_locked(m, "%s", "the switch could not be committed");
                pthread_mutex_unlock(&m->lock);
            }
            continue;
        }
        if (ck && checkpoint(p) < 0) {
            pthread_mutex_lock(&m->lock);
            fail_locked(m, "%s", "a checkpoint could not be committed");
            pthread_mutex_unlock(&m->lock);
        }
    }
out:
    free(a);
    free(b);
    pthread_mutex_lock(&m->lock);
    m->copier_busy = false;
    pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->lock);
    return ret;
}

void vd_move_opened(vd_pool *p)
{
    struct vd_move *m = p->move;

    end_switch(p); /* a replayed END: nothing to flush before any I/O */
    pthread_mutex_lock(&m->lock);
    if (m->active) {
        /* compare the whole batch: what the checkpoint says is copied
         * (durable on the targets), and what was copied after it (still
         * in the targets' caches after a crash of the process, so not
         * copied again); write only what differs */
        m->cursor = 0;
        m->verify_end = m->n * p->extent_size;
        m->t0_ns = mono_ns();
        m->t0_bytes = m->st.bytes_copied;
        vd_log(VD_LOG_INFO,
               "pool '%s': resuming the move of extent %" PRIu64 " leg %u "
               "from '%s' to '%s' (a batch of %u extents, compared first) "
               "at %" PRIu64 " bytes",
               p->name, m->s[0].le, m->s[0].leg, p->devs[m->src].name,
               p->devs[m->s[0].dst].name, m->n, m->done);
    }
    pthread_mutex_unlock(&m->lock);
}

void vd_move_tick(vd_pool *p)
{
    if (!p->move || __atomic_load_n(&g_move_test_hold, __ATOMIC_ACQUIRE))
        return;
    vd_move_run(p, MOVE_TICK_NS, 0);
}

/* ---- rebalance planning ---------------------------------------------------
 * The devices that take part: in the pool, usable (OK, open), not being
 * evacuated (no_alloc), with extents.  With U extents used on them and T
 * in all, device i's fair share is U * pe_i / T; its excess, scaled by T
 * to stay in integers, is E_i = used_i * T - U * pe_i (sum 0).  A node's
 * excess is the sum of its devices'.  Moving one extent from s to d
 * changes the sum of squared excesses (in extents) by 2 - 2 (e_s - e_d):
 * a move is made only when it lowers the nodes' sum, or keeps it (same
 * node, or nodes exactly one extent apart) and lowers the devices' sum;
 * the best such move first (the nodes' gain, then the devices').  The
 * pair (nodes' sum, devices' sum) falls with each move, so the plan ends;
 * with one node it ends with every device within one extent of its share
 * (a device more than one over implies one under with room, and the pair
 * qualifies).  Mirror legs: an extent moves only where leg_allows. */
struct rb_state {
    uint32_t n;                 /* devices taking part */
    uint32_t idx[VD_MAX_DEVS];  /* pool index */
    uint32_t node[VD_MAX_DEVS]; /* node number (first device's slot) */
    int64_t used[VD_MAX_DEVS], pe[VD_MAX_DEVS];
    int64_t U, T;
};

struct rb_pair {
    uint32_t s, d; /* slots in rb_state */
    __int128 node_gain, dev_gain;
};

static void rb_init(const vd_pool *p, struct rb_state *st)
{
    memset(st, 0, sizeof(*st));
    for (uint32_t i = 0; i < p->ndevs; i++) {
        const struct vd_dev *d = &p->devs[i];
        if (!d->used || d->state != VD_DEV_OK || !d->bdev || d->no_alloc ||
            !d->pe_count)
            continue;
        uint32_t k = st->n++;
        st->idx[k] = i;
        st->node[k] = k;
        for (uint32_t j = 0; j < k; j++)
            if (!strcmp(p->devs[st->idx[j]].node, d->node)) {
                st->node[k] = st->node[j];
                break;
            }
        st->used[k] = (int64_t)d->used_count;
        st->pe[k] = (int64_t)d->pe_count;
        st->U += st->used[k];
        st->T += st->pe[k];
    }
}

static __int128 rb_ex(const struct rb_state *st, uint32_t k)
{
    return (__int128)st->used[k] * st->T - (__int128)st->U * st->pe[k];
}

static __int128 rb_node_ex(const struct rb_state *st, uint32_t node)
{
    __int128 e = 0;
    for (uint32_t k = 0; k < st->n; k++)
        if (st->node[k] == node)
            e += rb_ex(st, k);
    return e;
}

/* Pairs that qualify, best first; returns how many. */
static int pair_cmp(const void *a, const void *b)
{
    const struct rb_pair *x = a, *y = b;
    if (x->node_gain != y->node_gain)
        return x->node_gain > y->node_gain ? -1 : 1;
    if (x->dev_gain != y->dev_gain)
        return x->dev_gain > y->dev_gain ? -1 : 1;
    if (x->s != y->s)
        return x->s < y->s ? -1 : 1;
    return x->d < y->d ? -1 : (x->d > y->d);
}

static size_t rb_pairs(const struct rb_state *st, struct rb_pair *out,
                       size_t max)
{
    __int128 nex[VD_MAX_DEVS];
    size_t n = 0;

    for (uint32_t k = 0; k < st->n; k++)
        nex[k] = st->node[k] == k ? rb_node_ex(st, k) : 0;
    for (uint32_t s = 0; s < st->n; s++) {
        if (!st->used[s])
            continue;
        for (uint32_t d = 0; d < st->n && n < max; d++) {
            if (d == s || st->used[d] >= st->pe[d])
                continue;
            /* gains, scaled by T: (e_s - e_d) - 1 in extents */
            __int128 dg = rb_ex(st, s) - rb_ex(st, d) - st->T, ng = 0;
            if (st->node[s] != st->node[d])
                ng = nex[st->node[s]] - nex[st->node[d]] - st->T;
            if (ng < 0 || (ng == 0 && dg <= 0))
                continue;
            out[n++] = (struct rb_pair){ s, d, ng, dg };
        }
    }
    qsort(out, n, sizeof(*out), pair_cmp);
    return n;
}

/* An extent on pool device src that may go to dst: 1 and *vol..; 0. */
static int rb_extent(const vd_pool *p, uint32_t src, uint32_t dst,
                     struct vd_rebal_move *mv)
{
    for (uint32_t i = 0; i < p->nvols; i++) {
        const struct vd_vol *v = p->vols[i];
        for (uint64_t k = v->le_count * v->copies; k-- > 0;) {
            if (v->map[k].dev != src ||
                !leg_allows(p, v, (uint32_t)(k % v->copies), dst))
                continue;
            mv->vol = v->id;
            mv->le = k / v->copies;
            mv->leg = (uint32_t)(k % v->copies);
            mv->src = src;
            mv->dst = dst;
            mv->dpe = first_free(&p->devs[dst]);
            return mv->dpe != UINT64_MAX;
        }
    }
    return 0;
}

int vd_rebalance_next(const vd_pool *p, struct vd_rebal_move *mv)
{
    struct rb_state *st = malloc(sizeof(*st));
    size_t max = VD_MAX_DEVS * VD_MAX_DEVS, n;
    struct rb_pair *pr = malloc(max * sizeof(*pr));
    int r = 0;

    if (!st || !pr) {
        r = -ENOMEM;
        goto out;
    }
    rb_init(p, st);
    n = rb_pairs(st, pr, max);
    for (size_t i = 0; i < n && !r; i++)
        r = rb_extent(p, st->idx[pr[i].s], st->idx[pr[i].d], mv);
out:
    free(st);
    free(pr);
    return r;
}

uint64_t vd_rebalance_count(const vd_pool *p)
{
    struct rb_state *st = malloc(sizeof(*st));
    size_t max = VD_MAX_DEVS * VD_MAX_DEVS;
    struct rb_pair *pr = malloc(max * sizeof(*pr));
    uint64_t moves = 0;

    if (st && pr) {
        rb_init(p, st);
        /* extents only: legs are not checked, so this is an upper bound
         * of the moves (bounded by the extents in use) */
        while (moves <= (uint64_t)st->U && rb_pairs(st, pr, max)) {
            st->used[pr[0].s]--;
            st->used[pr[0].d]++;
            moves++;
        }
    }
    free(st);
    free(pr);
    return moves;
}

int vd_pool_rebalance(vd_pool *p, uint64_t rate, uint64_t *moves)
{
    struct vd_move *m = p->move;
    struct vd_op_move_job j;
    uint64_t n;
    int r = 0;

    vd_admin_lock(p);
    if (m->evac != VD_NO_DEV) {
        vd_log(VD_LOG_ERR,
               "pool '%s': device '%s' is being evacuated; rebalance when "
               "it is done (vdlvm status %s)",
               p->name, p->devs[m->evac].name, p->name);
        r = -EBUSY;
        goto out;
    }
    n = vd_rebalance_count(p);
    if (moves)
        *moves = n;
    if (!n && !m->rebal) {
        vd_log(VD_LOG_INFO, "pool '%s': already balanced", p->name);
        goto out;
    }
    memset(&j, 0, sizeof(j));
    j.h.type = VD_OP_MOVE_JOB;
    j.kind = VD_MOVE_JOB_REBALANCE;
    j.dev = VD_NO_DEV;
    j.rate = rate;
    if ((r = commit_one(p, &j, sizeof(j))) < 0)
        goto out;
    pthread_mutex_lock(&m->lock);
    m->reb_total = n;
    m->reb_moved = 0;
    m->st.last_error[0] = 0;
    pthread_mutex_unlock(&m->lock);
    vd_log(VD_LOG_INFO,
           "pool '%s': rebalancing: about %" PRIu64 " extents to move", p->name,
           n);
out:
    vd_admin_unlock(p);
    if (r == 0)
        vd_bg_kick(p);
    return r;
}

/* ---- evacuation and status -------------------------------------------------- */
static int dev_index(const vd_pool *p, const char *name)
{
    for (uint32_t i = 0; i < p->ndevs; i++)
        if (p->devs[i].used && !strcmp(p->devs[i].name, name))
            return (int)i;
    return -1;
}

static uint64_t extents_on(const vd_pool *p, uint32_t dev)
{
    uint64_t n = 0;
    for (uint32_t i = 0; i < p->nvols; i++) {
        const struct vd_vol *v = p->vols[i];
        for (uint64_t k = 0; k < v->le_count * v->copies; k++)
            n += v->map[k].dev == dev;
    }
    return n;
}

int vd_dev_evacuate(vd_pool *p, const char *dev, const char *const *to,
                    size_t nto, uint64_t rate)
{
    struct vd_move *m = p->move;
    bool allowed[VD_MAX_DEVS] = { false };
    int di, r = 0;

    vd_admin_lock(p);
    di = dev_index(p, dev);
    if (di < 0) {
        vd_log(VD_LOG_ERR, "pool '%s': no device '%s'; see 'vdlvm status %s'",
               p->name, dev, p->name);
        r = -ENOENT;
        goto out;
    }
    for (size_t i = 0; i < nto; i++) {
        int t = dev_index(p, to[i]);
        if (t < 0 || t == di) {
            vd_log(VD_LOG_ERR, "pool '%s': --to: %s '%s'", p->name,
                   t < 0 ? "no device" : "cannot move to the device evacuated,",
                   to[i]);
            r = -EINVAL;
            goto out;
        }
        allowed[t] = true;
    }
    if (m->evac != VD_NO_DEV && m->evac != (uint32_t)di) {
        vd_log(VD_LOG_ERR,
               "pool '%s': device '%s' is being evacuated; wait "
               "for it to finish",
               p->name, p->devs[m->evac].name);
        r = -EBUSY;
        goto out;
    }
    /* room: the extents on dev must fit on the allowed devices */
    uint64_t need = extents_on(p, (uint32_t)di), have = 0;
    for (uint32_t i = 0; i < p->ndevs; i++) {
        const struct vd_dev *d = &p->devs[i];
        if (i == (uint32_t)di || !d->used || d->state != VD_DEV_OK ||
            d->no_alloc || (nto && !allowed[i]))
            continue;
        have += d->pe_count - d->used_count;
    }
    if (need > have) {
        vd_log(VD_LOG_ERR,
               "pool '%s': device '%s' holds %" PRIu64 " extents but the "
               "other devices have %" PRIu64 " free; add a device first "
               "(vdlvm pool apply)",
               p->name, dev, need, have);
        r = -ENOSPC;
        goto out;
    }
    if (m->rebal) {
        vd_log(VD_LOG_ERR,
               "pool '%s': a rebalance is running; wait for it to finish "
               "(vdlvm status %s)",
               p->name, p->name);
        r = -EBUSY;
        goto out;
    }
    /* the job is in the metadata before anything moves: it goes on after
     * a restart, with its rate and --to */
    struct vd_op_move_job j;
    memset(&j, 0, sizeof(j));
    j.h.type = VD_OP_MOVE_JOB;
    j.kind = VD_MOVE_JOB_EVACUATE;
    j.dev = (uint32_t)di;
    j.rate = rate;
    for (uint32_t i = 0; i < VD_MAX_DEVS; i++)
        if (allowed[i])
            j.to[i / 8] |= (uint8_t)(1u << i % 8);
    /* and the device is drained (VD_DEVF_DRAIN, in the same commit): it
     * takes no new extent until it leaves, also after a restart */
    struct vd_op_dev_set fl = { .h.type = VD_OP_DEV_FLAGS,
                                .h.len = sizeof(fl),
                                .idx = (uint32_t)di,
                                .flags = p->devs[di].flags | VD_DEVF_DRAIN };
    struct vd_opbuf ops = { 0 };
    ops.keep_data = true;
    if ((r = vd_opbuf_add(&ops, &j, sizeof(j))) == 0 &&
        !(p->devs[di].flags & VD_DEVF_DRAIN))
        r = vd_opbuf_add(&ops, &fl, sizeof(fl));
    if (r == 0)
        r = vd_md_commit(p, &ops);
    vd_opbuf_free(&ops);
    if (r < 0)
        goto out;
    pthread_mutex_lock(&m->lock);
    m->evac_total = need;
    m->evac_moved = 0;
    m->st.last_error[0] = 0;
    pthread_mutex_unlock(&m->lock);
    vd_log(VD_LOG_INFO,
           "pool '%s': evacuating device '%s': %" PRIu64 " extents to move",
           p->name, dev, need);
out:
    vd_admin_unlock(p);
    if (r == 0)
        vd_bg_kick(p);
    return r;
}

int vd_pool_move_status(vd_pool *p, struct vd_move_status *s)
{
    struct vd_move *m = p->move;
    uint64_t es = p->extent_size;

    memset(s, 0, sizeof(*s));
    vd_admin_lock(p);
    pthread_mutex_lock(&m->lock);
    s->active = m->active;
    s->stats = m->st;
    s->rate_limit = m->rate;
    s->rate_bps = m->rate_bps;
    uint64_t bd = 0; /* bytes of the batch done */
    if (m->active) {
        bd = m->cursor < m->verify_end ? m->done : m->cursor;
        uint32_t i = (uint32_t)(bd / es < m->n ? bd / es : m->n - 1);
        struct vd_vol *v = vd_vol_find_id(p, m->s[i].vol);
        snprintf(s->vol, sizeof(s->vol), "%s", v ? v->name : "?");
        snprintf(s->src, sizeof(s->src), "%s", p->devs[m->src].name);
        snprintf(s->dst, sizeof(s->dst), "%s", p->devs[m->s[i].dst].name);
        s->le = m->s[i].le;
        s->leg = m->s[i].leg;
        s->done = bd - i * es; /* of the extent shown */
        s->total = es;
        s->failed = m->failed;
        snprintf(s->error, sizeof(s->error), "%s", m->error);
    }
    if (m->evac != VD_NO_DEV) {
        s->evacuating = 1;
        snprintf(s->evac_dev, sizeof(s->evac_dev), "%s", p->devs[m->evac].name);
        uint64_t left = extents_on(p, m->evac);
        s->evac_left_bytes = left * es - bd;
        s->evac_total_bytes =
            (m->evac_total > left ? m->evac_total : left) * es;
        if (s->rate_bps)
            s->eta_s = s->evac_left_bytes / s->rate_bps;
    } else if (m->rebal) {
        uint64_t left = vd_rebalance_count(p);
        s->rebalancing = 1;
        s->reb_done_bytes = m->reb_moved * es + bd;
        s->reb_total_bytes = (m->reb_moved + left) * es;
        if (m->active && left == 0)
            s->reb_total_bytes += es; /* the last move */
        if (s->reb_total_bytes < s->reb_done_bytes)
            s->reb_total_bytes = s->reb_done_bytes;
        if (s->rate_bps)
            s->eta_s = (s->reb_total_bytes - s->reb_done_bytes) / s->rate_bps;
    } else if (m->active && s->rate_bps) {
        s->eta_s = (m->n * es - bd) / s->rate_bps;
    }
    pthread_mutex_unlock(&m->lock);
    size_t dl = 0;
    for (uint32_t i = 0; i < p->ndevs; i++) {
        if (p->devs[i].used && p->devs[i].no_alloc &&
            (m->evac != i || !s->evacuating))
            s->no_alloc_devs++;
        if (p->devs[i].used && (p->devs[i].flags & VD_DEVF_DRAIN) &&
            dl < sizeof(s->drained))
            dl += (size_t)snprintf(s->drained + dl, sizeof(s->drained) - dl,
                                   "%s%s", dl ? ", " : "", p->devs[i].name);
    }
    vd_admin_unlock(p);
    return 0;
}

bool vd_move_evacuating(const vd_pool *p, uint32_t dev)
{
    return p->move && p->move->evac == dev;
}

uint64_t vd_pool_dev_extents(vd_pool *p, const char *dev)
{
    uint64_t n;
    int di;

    vd_admin_lock(p);
    di = dev_index(p, dev);
    n = di < 0 ? UINT64_MAX : extents_on(p, (uint32_t)di);
    vd_admin_unlock(p);
    return n;
}

/* Wait (bounded by timeout_ms, 0: none) until no move runs and no
 * evacuation is pending, running the copier in this thread when the
 * background thread is not doing it.  0, -ETIMEDOUT, or -EIO when the
 * last move was abandoned. */
int vd_move_wait(vd_pool *p, int64_t timeout_ms)
{
    struct vd_move *m = p->move;
    int64_t end = vd_now_ms() + timeout_ms;
    uint64_t aborted0 = m->st.moves_aborted;

    for (;;) {
        pthread_mutex_lock(&m->lock);
        bool idle = !m->active && m->evac == VD_NO_DEV && !m->rebal;
        uint64_t ab = m->st.moves_aborted;
        pthread_mutex_unlock(&m->lock);
        if (idle)
            return ab != aborted0 ? -EIO : 0;
        if (timeout_ms && vd_now_ms() >= end)
            return -ETIMEDOUT;
        if (!p->bg || __atomic_load_n(&g_move_test_hold, __ATOMIC_ACQUIRE)) {
            if (vd_move_run(p, 200000000LL, 0) == -EBUSY)
                vd_bg_sleep(p, 50000000LL);
        } else {
            vd_bg_kick(p);
            struct timespec ts = { 0, 50000000L };
            nanosleep(&ts, NULL);
        }
    }
}
