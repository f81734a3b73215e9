/* vdlvm replica internals: the state the mirror's files share (mirror.c,
 * bitmap.c, resync.c, verify.c, legs.c), the mirror's on-disk records, and
 * what tests and the fault simulator see.  Not a public header: only
 * replica/ and tests include it; replica/ reaches the pool only through
 * pool/layout.h.
 *
 * ---- Locks (in this order) -----------------------------------------------
 *
 *   vol->write_lock (pool/vol.c: writes shared, COMPARE AND WRITE exclusive;
 *                    replica/ never takes it)
 *   -> a range (m->ranges; waits on m->cond)
 *   -> the pool's admin_lock (mirror_fail_legs, commits, replace)
 *   -> vol->map_lock (shared for I/O; exclusive in metadata apply and in
 *                     mirror_probe_failed_legs)
 *   -> bm_busy[b] (claimed only with map_lock held shared)
 *   -> m->lock (mutex; never held across device I/O or any wait but
 *               m->cond)
 * No range is waited for with map_lock or admin_lock held; admin_lock is
 * never taken with map_lock held (except mirror_probe_failed_legs, which
 * takes admin_lock first, then map_lock exclusive, and commits a leg
 * state: no map change, so the commit takes no map_lock); device flushes
 * run with no lock held (mirror_leg_flush); map_lock is never taken shared
 * twice by one thread (the pool's rwlocks prefer writers: a recursive read
 * lock would deadlock behind a waiting writer); tgtd's main thread (NOWAIT)
 * only try-locks map_lock and takes m->lock, which is never held across
 * I/O, so it never waits on a device.
 *
 * Fields and their owners: every field of struct vd_mirror is protected
 * by m->lock, except region_shift and v (constant) and last_probe
 * (the pool's background thread only, pool/bg.c).  excl/bg_busy make a
 * leg replacement exclusive with the background thread's passes.  Leg
 * states are changed under the admin_lock with atomic stores and read
 * atomically.  Each field below says its lock and the file that owns its
 * protocol.
 */
#ifndef MIRROR_INT_H
#define MIRROR_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "../pool/layout.h"
#include "vdreplica.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the mirror's metadata records and volume flags (on disk) -----------
 * Layout records (pool/layout.h): they start with struct vd_op_lhdr. */
enum {
    VD_OP_LEG_STATE = 7, /* struct vd_op_leg */
    VD_OP_RESYNC = 8,    /* struct vd_op_resync: persistent progress */
};
struct vd_op_leg {
    struct vd_op_hdr h; /*  0 */
    uint32_t vol;       /*  8 */
    uint32_t leg;       /* 12 */
    uint32_t state;     /* 16: enum vd_leg_state */
    uint32_t pad0;      /* 20 */
};
_Static_assert(sizeof(struct vd_op_leg) == 24, "op leg");
struct vd_op_resync {
    struct vd_op_hdr h; /*  0 */
    uint32_t vol;       /*  8 */
    uint32_t running;   /* 12: 1 while a resync is under way */
    uint64_t total;     /* 16: bytes to copy in this resync */
    uint64_t done;      /* 24: bytes copied so far */
};
_Static_assert(sizeof(struct vd_op_resync) == 32, "op resync");
/* struct vd_op_vol.flags bits 0-7 hold log2(region size); logical extent 0
 * of every leg holds that leg's copy of the write-intent bitmap, data
 * starts at logical extent 1 (VD_MIRROR_LE0). */
#define VD_VOLF_REGION_SHIFT_MASK 0xffu
#define VD_MIRROR_LE0             1u

/* The state (enum vd_leg_state) of leg `leg` of mirror volume v, read
 * atomically (any thread); VD_LEG_INSYNC (0) for a volume that is not a
 * mirror.  For tests and the fault simulator (the leg states live in the
 * mirror's private per-volume state). */
uint32_t vd_mirror_leg_state(const struct vd_vol *v, uint32_t leg);

/* When set (by a test, before the pool is opened), called at points where
 * a mirror operation starts waiting for another: "range-wait" (a leg
 * writer or verify queues behind an overlapping range), "replace-wait" (a
 * leg replacement waits for a resync or clean pass to end).  Called with
 * the mirror's lock held: it must only record. */
extern void (*g_mirror_test_hook)(struct vd_vol *v, const char *event);

/* ---- the mirror's runtime state (below: not for tests) ----------------- */
/* The bitmap's blocks on disk (bitmap.c). */
#define BM_BLOCK       4096u
#define BITS_PER_BLOCK (BM_BLOCK * 8u)
#define BM_WORDS       (BM_BLOCK / 8u)
#define BM_MAGIC       "VDLVMBM1"

/* One owner (or waiter) of a byte range of the volume: a leg writer or
 * verify.  On the owner's stack; linked in m->ranges in arrival order
 * (mirror.c), under m->lock. */
struct mrange {
    uint64_t start, end; /* bytes [start, end) */
    uint64_t ticket;     /* arrival order */
    struct mrange *prev, *next;
};

/* A NOWAIT write that reached some legs and not others (mirror.c); in
 * m->partials, under m->lock, freed by the leg writer that settles it. */
struct partial {
    uint64_t off, len, ticket;
    struct partial *next;
};

/* The runtime state of an attached mirror volume (mirror_vol.rt): from
 * mirror_attach to mirror_detach (mirror.c). */
struct vd_mirror {
    struct vd_vol *v;      /* constant */
    uint32_t region_shift; /* constant */
    bool legacy;           /* constant: a 1.0 bitmap with more regions
                                than a 1.1 header leaves room for */
    /* lock protects every field below except last_probe; cond signals any
     * change of ranges, inflight, bm_busy, excl and bg_busy. */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    /* ---- the bitmap (bitmap.c), lock */
    uint64_t nregions;    /* lock: regions the arrays cover (the volume's
                             size, grown by mirror_cover_region_locked) */
    uint64_t cap_regions; /* lock: regions the arrays are allocated for */
    uint64_t *bits;       /* lock: the bitmap in memory */
    uint64_t *dbits;      /* lock: bit set on every non-failed leg's copy */
    uint64_t *bm_ver;     /* lock: per block: bumped when its bits change */
    uint64_t *bm_done;    /* lock: per block: version on every non-failed
                             leg */
    uint8_t *bm_busy;     /* lock: per block: a writer is writing it
                             (claimed only with map_lock held shared) */
    uint64_t dirty;       /* lock: set bits */
    /* ---- per region, leg writers (mirror.c) and the clearing rule
     * (bitmap.c), lock */
    uint32_t *inflight;  /* lock: leg writers between their start and
                             their end */
    uint32_t *gen;       /* lock: bumped by every leg writer when it
                             starts */
    uint32_t *seen_gen;  /* lock: gen as the cleaner saw it on its
                             previous pass (bitmap.c) */
    uint16_t *unsettled; /* lock: NOWAIT partial writes not redone yet */
    uint8_t *diverged;   /* lock: legs may differ with no leg failed:
                             never cleared by the cleaner, resync copies */
    /* ---- I/O (mirror.c), lock */
    uint32_t read_rr;             /* lock: spreads clean reads over the
                                      in-sync legs */
    struct mrange *rhead, *rtail; /* lock: the range FIFO */
    uint64_t next_ticket;         /* lock: its arrival order */
    struct partial *partials;     /* lock: see struct partial */
    /* ---- exclusion of leg replacement (legs.c) with the background
     * thread's passes (resync.c, bitmap.c), lock */
    int excl;    /* lock: a leg replacement is pending or running */
    int bg_busy; /* lock: the background thread is in a pass */
    /* ---- resync (resync.c), lock */
    int rs_requested;    /* lock: start/resume wanted */
    int rs_active;       /* lock: a resync is under way (maybe waiting for its
                         rate) */
    uint64_t rate_limit; /* lock: bytes/s, 0 = unlimited */
    uint64_t rate_bps;   /* lock: measured */
    uint32_t rs_targets; /* lock: legs being written by the running resync */
    uint64_t rs_cursor;  /* lock: next region to look at */
    uint64_t rs_total, rs_done, rs_done0;       /* lock: progress */
    int64_t rs_t0_ns, rs_next_ns, rs_commit_ns; /* lock: rate and commits */
    time_t last_probe; /* no lock: background thread only (tick) */
};

/* The mirror's per-volume state (v->priv), from the volume's creation in
 * the in-memory state (mirror_init, metadata apply) to its end
 * (mirror_fini): what the metadata records (leg states, resync progress:
 * changed only by md_apply, under the admin lock; leg states stored
 * atomically and read atomically from any thread), and the runtime state
 * rt (NULL until vd_mirror_attach). */
struct mirror_vol {
    uint32_t leg_state[3]; /* enum vd_leg_state; atomic reads */
    uint32_t rs_running;   /* persisted resync progress (admin_lock) */
    uint64_t rs_total, rs_done;
    struct vd_mirror *rt; /* runtime state, set/cleared under admin_lock */
};

extern const struct vd_layout_ops vd_mirror_layout;

static inline struct mirror_vol *mv_of(const struct vd_vol *v)
{
    return (struct mirror_vol *)v->priv;
}

/* The runtime state of v, or NULL (not a mirror, or not attached). */
static inline struct vd_mirror *mirror_of(const struct vd_vol *v)
{
    return v->lops == &vd_mirror_layout && v->priv ? mv_of(v)->rt : NULL;
}

/* Bytes of the volume the mirror holds data for: its size, or under an
 * upper layout (thin) its data extents so far, (le_count - data_le0)
 * extents, which may exceed v->size by the upper layout's own metadata
 * (the mirror has io_beyond_size).  le_count only grows, under map_lock
 * exclusive; read without it, a stale value leaves out only the newest
 * extent, which was zeroed on every leg before it was mapped (legs equal
 * there). */
static inline uint64_t mirror_space(const struct vd_vol *v)
{
    if (v->upper) {
        uint64_t le = __atomic_load_n(&v->le_count, __ATOMIC_ACQUIRE);
        return (le - v->data_le0) * v->pool->extent_size;
    }
    return vd_vol_size(v);
}

/* Bytes the mirror addresses: I/O bounds and the region arrays.  Its size,
 * and under an upper layout also its data extents beyond it.  The upper
 * layout maps an extent (le_count grows) before its first I/O there, in
 * the same thread, so the I/O sees the larger bound. */
static inline uint64_t mirror_bound(const struct vd_vol *v)
{
    uint64_t size = vd_vol_size(v), space = mirror_space(v);

    return space > size ? space : size;
}

static inline void mirror_hook(struct vd_vol *v, const char *event)
{
    void (*fn)(struct vd_vol *, const char *) = g_mirror_test_hook;
    if (fn)
        fn(v, event);
}

static inline int64_t mono_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* ---- leg states (any thread: atomic reads) */
static inline uint32_t leg_state(struct vd_vol *v, uint32_t leg)
{
    return __atomic_load_n(&mv_of(v)->leg_state[leg], __ATOMIC_ACQUIRE);
}

static inline uint32_t all_legs(struct vd_vol *v)
{
    return (1u << v->copies) - 1;
}

static inline uint32_t nonfailed_legs(struct vd_vol *v)
{
    uint32_t mask = 0;
    for (uint32_t leg = 0; leg < v->copies; leg++)
        if (leg_state(v, leg) != VD_LEG_FAILED)
            mask |= 1u << leg;
    return mask;
}

static inline bool all_insync(struct vd_vol *v)
{
    for (uint32_t leg = 0; leg < v->copies; leg++)
        if (leg_state(v, leg) != VD_LEG_INSYNC)
            return false;
    return true;
}

static inline int source_leg(struct vd_vol *v)
{
    for (uint32_t leg = 0; leg < v->copies; leg++)
        if (leg_state(v, leg) == VD_LEG_INSYNC)
            return (int)leg;
    return -1;
}

/* ---- regions and bits (m->lock held for bit_get, dbit_get) */
static inline uint64_t region_size(const struct vd_mirror *m)
{
    return 1ull << m->region_shift;
}

static inline uint64_t nwords(uint64_t regions)
{
    return (regions + 63) / 64;
}
static inline uint64_t nblocks(uint64_t regions)
{
    return vd_div_up(regions, BITS_PER_BLOCK);
}

static inline bool bit_get(const struct vd_mirror *m, uint64_t r)
{
    return m->bits[r / 64] >> (r % 64) & 1;
}

static inline bool dbit_get(const struct vd_mirror *m, uint64_t r)
{
    return m->dbits[r / 64] >> (r % 64) & 1;
}

/* A leg writer (mirror.c: the steps at its top): its range and regions. */
struct lw {
    struct mrange e;
    uint64_t r0, r1;
};

/* How a leg writer ended (mirror_lw_end). */
enum {
    LW_RESOLVE = 1,  /* succeeded on every non-failed leg: settles partials */
    LW_DIVERGED = 2, /* non-failed legs may differ: keep the bit, resync */
};

/* Regions whose bits may be cleared (bitmap.c: the clearing rule). */
struct cand {
    uint64_t r;
    uint32_t gen;
};
struct batch {
    struct cand *c;
    size_t n, cap;
};

/* ---- mirror.c: per-leg I/O, leg failure, ranges, leg writers, admin */
/* Read or write [off, off+len) of one leg, split at extent boundaries;
 * map_lock held shared.  0 or -EIO (-EAGAIN with VD_IO_NOWAIT). */
int mirror_leg_io(struct vd_vol *v, uint32_t leg, void *buf, size_t len,
                  uint64_t off, bool write, unsigned flags);
/* Flush every device of a leg; no lock held.  0: every write to the leg
 * completed before the call is durable. */
int mirror_leg_flush(struct vd_vol *v, uint32_t leg);
/* Mark legs failed, durably, never the last in-sync leg; no lock held (a
 * range may be owned).  0, or -EIO: nothing may be acknowledged. */
int mirror_fail_legs(struct vd_vol *v, uint32_t mask);
/* m->lock held: queue e for [start, end) and wait until no earlier entry
 * overlaps it; remove it (wakes the waiters). */
void mirror_range_wait_locked(struct vd_mirror *m, struct mrange *e,
                              uint64_t start, uint64_t end);
void mirror_range_remove_locked(struct vd_mirror *m, struct mrange *e);
/* A leg writer's steps (see mirror.c): begin (1, 2: own the range, count
 * it, set the bits), write (3, 4), end (5, how: LW_*).  No lock held. */
int mirror_lw_begin(struct vd_mirror *m, struct lw *w, uint64_t off,
                    uint64_t len);
int mirror_lw_write(struct vd_vol *v, struct lw *w, const void *buf, size_t len,
                    uint64_t off, unsigned flags, uint32_t only, bool *io);
void mirror_lw_end(struct vd_mirror *m, struct lw *w, unsigned how);
/* m->lock held: regions r0..r1 may differ between non-failed legs until a
 * copy (a running resync goes back over them). */
void mirror_diverged_locked(struct vd_mirror *m, uint64_t r0, uint64_t r1);
/* Admin calls, admin_lock held: the attached mirror volume name (NULL,
 * errno ENOENT or EINVAL, logged); drop the reference (open_count) an
 * admin call took (mirror_put takes the admin_lock itself). */
struct vd_vol *mirror_find(vd_pool *p, const char *name);
void mirror_put(struct vd_vol *v);
/* ---- bitmap.c */
/* Regions a bitmap extent with a header holds (one without: es * 8). */
uint64_t mirror_bm_capacity(uint64_t extent_size);
/* Regions the arrays may cover (the bitmap extent, less its header). */
uint64_t mirror_max_regions(const struct vd_mirror *m);
/* m->lock held: set or clear bit r (clearing also clears its dbit). */
void mirror_bit_set_locked(struct vd_mirror *m, uint64_t r, bool on);
/* map_lock held shared, m->lock not held: set the bits of r0..r1 and make
 * them durable on every non-failed leg.  0 or the mask of failed legs. */
uint32_t mirror_bits_durable(struct vd_mirror *m, uint64_t r0, uint64_t r1);
/* map_lock held shared: write every block not yet on every non-failed leg
 * (cleared bits).  0 or the mask of failed legs. */
uint32_t mirror_bm_flush(struct vd_mirror *m);
/* Grow the arrays to n regions (m->lock held, or m not published);
 * cover region r (m->lock held; the volume may have grown).  -ENOMEM,
 * -EFBIG (beyond the bitmap extent). */
int mirror_alloc_arrays(struct vd_mirror *m, uint64_t n);
int mirror_cover_region_locked(struct vd_mirror *m, uint64_t r);
/* Read the legs' copies of the bitmap into a new m (mirror_attach, before
 * m is published): bits their union, dbits their intersection.  0 or
 * -ENOMEM. */
int mirror_bm_load(struct vd_mirror *m, uint64_t nregions);
/* The clearing rule: add a candidate (m->lock held, r with inflight 0
 * when gen was read); flush the legs, then clear the candidates whose gen
 * did not move (no lock held).  0 or -EIO (legs marked failed). */
void mirror_batch_add_locked(struct batch *b, uint64_t r, uint32_t gen);
int mirror_batch_commit(struct vd_vol *v, struct batch *b, bool cleaner);
/* The cleaner's pass (background thread). */
void mirror_clean_volume(struct vd_vol *v);
/* ---- resync.c */
/* The background thread's resync pass: 0 finished, -EAGAIN paused (goes
 * on at a later call), -EIO (legs marked failed). */
int mirror_resync_volume(struct vd_vol *v);
/* Background thread: failed legs whose devices answer again become stale
 * and are resynced. */
void mirror_probe_failed_legs(struct vd_vol *v);
/* ---- verify.c */
/* After a read error on the legs in bad, rewrite them from leg good as a
 * leg writer (if good is still in sync then).  No lock held. */
void mirror_read_repair(struct vd_vol *v, size_t len, uint64_t off,
                        uint32_t good, uint32_t bad);
/* ---- legs.c: the layout's placement ops */
int mirror_check(vd_pool *p, const char *name, const struct vd_vol_opts *opts,
                 struct vd_op_vol *ov);
int mirror_plan(vd_pool *p, const char *name, const struct vd_vol_opts *opts,
                const struct vd_op_vol *ov, struct vd_opbuf *ops);
int mirror_check_extend(struct vd_vol *v, uint64_t new_size);
int mirror_plan_extend(struct vd_vol *v, uint64_t le_count,
                       struct vd_opbuf *ops);
#ifdef __cplusplus
}
#endif
#endif
