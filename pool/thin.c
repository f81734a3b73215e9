/* vdlvm: thin volumes — chunks allocated on first write, freed by discard.
 *
 * A thin volume is the thin layout stacked (VD_OP_STACK, layout.h) on a
 * lower layout, linear or mirror.  The lower layout's extents are the
 * volume's "data space": v->le_count extents, starting empty and grown by
 * one or more extents at a time when no chunk is free (the same RESIZE + MAP commit
 * as vol extend; the pool zeroes the new extents durably before it
 * commits).  Every byte thin reads or writes, data and chunk map, goes
 * through lops->pread/pwrite/flush, so a thin volume on a mirror gets the
 * mirror's legs, bitmap and resync for its data and its map alike.
 *
 * Chunk map: each data extent carries its own reverse map (physical chunk
 * -> virtual chunk + 1, 0 = free) in its first `rsv` chunks: nblk map
 * blocks of 4 KiB (1016 entries each), in two slots (slot s, block b at
 * extent byte (s * nblk + b) * 4096).  A block carries magic, crc32c,
 * volume id, extent and block number and a sequence number (one per group
 * commit, growing); a write goes to the slot that does not hold the valid
 * copy, so a torn write leaves the previous state readable.  Why this and
 * not the pool's metadata log: the map grows with the data space and is
 * allocated with it, so metadata can never run out before data does, and a
 * checkpoint of the pool log stays independent of the number of chunks.
 * At open (ctr) the map areas are read and the virtual -> physical table
 * is rebuilt in RAM; a chunk that was allocated but whose mapping never
 * became durable is simply free (reclaimed).  Two durable entries naming
 * the same virtual chunk (a free and a re-map in one torn commit): the
 * block with the higher sequence number wins.
 * Family maps (THIN_FAM, every thin volume created since snapshots
 * exist; pool/snap.c has the design): each entry is (virtual chunk + 1,
 * generation), 508 per block; with 4 KiB chunks and 4 MiB extents 1018
 * chunks per extent, 24 KiB of map (24.1 bytes per chunk), and 8 more
 * bytes of RAM per chunk (cgen, sref).  The numbers below are for the
 * older map, which volumes created before keep.
 * Cost, 4 KiB chunks and 4 MiB extents: 1020 chunks per extent, 16 KiB of
 * map, 16.1 bytes of metadata per chunk; RAM 12 bytes per allocated chunk
 * (forward 4, reverse 4, durable reverse 4) plus a 4 KiB forward leaf
 * per 1024 virtual chunks touched (so scattered single-chunk writes cost
 * up to 4 KiB each until their neighbours fill).  64 KiB chunks: 63 per
 * extent (one reserved for the 8 KiB map).  Measured by
 * tests/unit/pool/thin_test.cc (Thin.MillionChunks_*: 12.5 bytes of heap
 * per chunk over a whole pool open, 16.1 bytes of map, 1 million chunks
 * written in order with VDLVM_THIN_MILLION=1).
 *
 * Ordering (crash safety):
 *   - A first write to a chunk writes the whole chunk (zero padded), then
 *     joins a group commit; the rule is data durable -> map entry durable
 *     -> acknowledgement, on every healthy copy (a mirror's flush returns
 *     only when every in-sync leg has it).  So a durable map entry never
 *     exposes bytes that were not written for it (stale or foreign), and
 *     an acknowledged write is mapped after a crash.
 *   - Group commit is a pipeline (commit_locked, one step at a time, run
 *     by whichever waiter finds no step running).  Groups: Q (t->queue,
 *     filling: data written), A (t->mapped: data durable, map blocks
 *     written, not flushed).  A step takes B := Q and
 *       1. one lower flush (when A or B needs one): it makes A's map and
 *          B's data durable together;
 *       2. completes A: acknowledged if the flush succeeded, else failed;
 *       3. builds B's map blocks (seq + 1) and writes them;
 *       4. A := B (if it wrote anything; else B is complete at once).
 *     So every flush serves two groups: a stream of first writes pays one
 *     flush per group (not two), and a group fills while the one before
 *     it is flushed.  Each write still waits for two flushes after its
 *     data: the one that makes its data durable, the one that makes its
 *     map durable.  At most one map write is ever outstanding (A's blocks
 *     are settled, slot flipped, before B's are built), so a block is never
 *     rewritten while its previous copy is unsure: B's copy goes to the
 *     slot A did not write, or, when A's flush failed, to the very slot A
 *     wrote (the valid copy is never written over).
 *   - A discard removes the chunks from the forward table at once (reads
 *     see zeroes), then its frees pass through the same pipeline and it
 *     returns after the flush of their map: an acknowledged discard never
 *     resurrects.  Freed chunks are reusable only after that flush (rev =
 *     R_FREEING until then).  A reused chunk is written whole before it is
 *     mapped again.
 *
 * Shared state (struct thin, v->upper_priv; set by stack, freed by fini):
 *   - geometry (cshift, cs, cpe, rsv, nblk): constant.
 *   - lock (mutex, never held across device I/O, taken after the admin
 *     lock, never before it) protects dir and leaves (forward table),
 *     ext[] and every array in it, next, ahint, nalloc, queue, mapped,
 *     mblks, nmblk, mseq, mlimbo, dirty and limbo lists, committing,
 *     growing, gstep, gwait, seq, nospc_log_ms and the profile counters.
 *     The step running (committing set) alone builds and writes blocks and
 *     changes bslot, bseq, mapped; drev is changed under lock by the step
 *     and by failures/releases (which mark the block dirty: the next
 *     build writes it).
 *   - cond: a pending chunk resolved, a step ended, a grow ended.
 *   - io_lock (rwlock, writer-preferring): shared by every read and write
 *     for its whole duration (device I/O and the wait for its group
 *     included), exclusive by discard only while it moves chunks out of
 *     the forward table (no device I/O under it).  So a chunk is never
 *     freed (and then reused) while a read or write of it is in flight.
 *     VD_IO_NOWAIT try-locks it.
 *
 * Interleavings:
 *   - first write vs first write of the same chunk: the second finds the
 *     entry pending (F_PEND, cleared only when its group is complete) and
 *     waits (NOWAIT: -EAGAIN); a read of a pending chunk returns zeroes
 *     (the write is not acknowledged yet).  An overwrite of it waits too,
 *     so no write lands in place on a chunk whose map is not durable.
 *   - write vs write of other chunks: a writer whose data is written
 *     after step k's flush started is in Q, not in B: B's flush covered
 *     every member's data (members enqueue only after their pwrite
 *     returned, and the lower flush covers every write completed before
 *     it started: pool/dev.c's flush generations).
 *   - first write vs discard (UNMAP of a chunk in a committing group): the
 *     discard waits for io_lock exclusive, which every writer holds shared
 *     until its group is complete (through both stages); pending chunks
 *     thus never meet a discard.  The discard queues its frees before it
 *     releases io_lock, so a first write of the same virtual chunk that
 *     follows joins the same group (its block image applies the free
 *     first) or a later one (higher seq, written only after the free's
 *     map is durable): after a crash the old chunk never wins.  A discard
 *     that frees nothing still waits when a step runs or A exists (an
 *     earlier discard of the range may be in it).
 *   - a failed flush (a device going away, a mirror without any healthy
 *     leg): A's map is unsure: its members fail, their chunks go to limbo
 *     (R_FREEING, free only after a later map write of them as free is
 *     durable) and its blocks are rewritten to the same slot; B's data is
 *     unsure: B fails likewise (its map was never written).  A failed map
 *     write fails B the same way.  Nothing that was not durable is
 *     acknowledged; the limbo entries a map write carries (mlimbo) are
 *     released only when that write's flush succeeded.
 *   - first write vs flush (SYNCHRONIZE CACHE): vd_vol_flush flushes the
 *     lower layout; the mapping of every acknowledged write is already
 *     durable.
 *   - crash: before a step's flush, B's data and A's map may be partly on
 *     disk: no member of either is acknowledged; a map entry on disk whose
 *     data is not durable cannot exist (B's map is written only after the
 *     flush).  Between a map write and its flush, each block holds its
 *     old or its new copy (two slots, crc, seq) and nothing of A is
 *     acknowledged; chunks mapped by neither are free at open.
 *   - resync of the lower mirror: thin's map blocks and data are ordinary
 *     mirror writes (bitmap marked before, cleared after), so a resync
 *     copies them like any data.
 *   - grow (data space) vs I/O: the grower holds io_lock shared like any
 *     writer and takes the admin lock; the core's apply takes map_lock
 *     exclusive (lower I/O holds it shared without waiting for anything
 *     thin holds); growing serialises growers; the writers that waited
 *     for a grow make the next one larger (gstep, up to GROW_MAX extents
 *     in one metadata commit).  Extents grown ahead stay (spare_until)
 *     until a chunk is taken from them or SPARE_KEEP ms passed.
 *   - the background tick returns an extent only when no step runs, no A
 *     exists, no grow runs, and the extent has no dirty block and no chunk
 *     in use, pending, freeing or in limbo.

 * Space: a data extent whose chunks are all free goes back to the pool
 * from the background thread (thin_tick; single-copy volumes only: the
 * mirror expects every logical extent mapped), leaving a hole in the data
 * space that the next grow maps again first.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <time.h>

#include "layout.h"
#include "snap_int.h"
#include "tier.h" /* vd_heat_count_lower: tiering of data extents */

#define THIN_MAGIC    "VDTHINM1"
#define MBLK          4096u
#define MENT          ((MBLK - 32) / 4) /* entries per map block: 1016 */
#define MENT_FAM      ((MBLK - 32) / 8) /* family map: (vc + 1, gen): 508 */
#define F_PEND        0x80000000u       /* forward entry: not durable yet */
#define F_FREE        0x80000000u       /* queue entry: a free, not a map */
#define R_FREEING     0xffffffffu       /* reverse: freed, not durable yet */
#define LEAF_SHIFT    10
#define LEAF_N        (1u << LEAF_SHIFT)
#define CHUNK_DEFAULT (64u << 10)
/* VD_OP_STACK.flags: bits 0-7 log2 chunk size; THIN_FAM: a family map
 * (entries carry a generation: snapshots possible; the format minor
 * that added snapshots, docs/format.md section 8). */
#define THIN_FAM 0x100u

/* One map block on disk (little-endian). */
struct thin_mblk {
    char magic[8];      /*  0 */
    uint32_t crc;       /*  8: crc32c of the 4 KiB, this field 0 */
    uint32_t vol;       /* 12: volume id */
    uint64_t seq;       /* 16: group commit number */
    uint32_t de;        /* 24: data extent */
    uint16_t blk;       /* 28: block within the extent's map */
    uint16_t nent;      /* 30 */
    uint32_t ent[MENT]; /* 32: virtual chunk + 1, 0 = free; a family map
                           (THIN_FAM) holds pairs (virtual chunk + 1,
                           generation) */
};
_Static_assert(sizeof(struct thin_mblk) == MBLK, "thin map block");

struct text {
    uint32_t *rev;   /* cpe: 0 free, vc + 1, R_FREEING */
    uint32_t *drev;  /* what the next map write records (committer) */
    uint64_t *bseq;  /* nblk: seq of the valid copy on disk, 0 none */
    uint8_t *bslot;  /* nblk: slot holding it */
    uint8_t *bdirty; /* nblk: in the dirty list */
    uint32_t *cgen;  /* family: generation the chunk was written in */
    uint32_t *sref;  /* family: snapshots whose map names the chunk */
    uint32_t nfree;  /* chunks with rev 0 (0 unless X_LIVE) */
    uint8_t state;   /* X_LIVE, X_RETURNING, X_HOLE */
    /* grown ahead of need (grow_data): not given back (thin_tick) before
     * this time unless a chunk was taken from it (then 0) */
    int64_t spare_until;
};
/* A data extent whose chunks are all free goes back to the pool (tick):
 * X_RETURNING while its unmap commits, then X_HOLE (logical extent
 * unmapped) until a grow maps it again. */
enum { X_LIVE = 0, X_RETURNING, X_HOLE };

/* One request's chunks in a group commit (on the requester's stack). */
struct twait {
    struct twait *next;
    const uint32_t *pc; /* chunk numbers; F_FREE marks a free */
    size_t n;
    int done, r;
    /* a clone's chunks (pool/snap.c): the commit leaves the head's map
     * alone; the writer updates the clone's (set after enqueue) */
    bool memb;
};

struct thin {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_rwlock_t io_lock;
    uint32_t cshift, cpe, rsv, nblk;
    uint64_t cs;
    uint64_t vchunks, ndir;
    uint32_t **dir;   /* forward leaves: pc + 1 (| F_PEND), 0 unmapped */
    struct text *ext; /* next data extents */
    uint64_t next, ahint;
    uint64_t nalloc; /* chunks in the forward table */
    struct twait *queue, **qtail;
    /* chunks whose map state on disk is unsure after a failed commit
     * (R_FREEING): free after the next successful one */
    uint32_t *limbo;
    size_t nlimbo, lcap;
    uint64_t *dirty; /* (de << 16) | blk, ndirty of dcap */
    size_t ndirty, dcap;
    bool committing, growing;
    /* the pipeline's group A (commit_locked): its map blocks written
     * (mblks, nmblk; sequence mseq), not yet flushed; the first mlimbo
     * limbo entries are written free by it.  Set and cleared by the
     * committer under lock. */
    struct twait *mapped;
    uint64_t *mblks, mseq;
    size_t nmblk, mlimbo;
    /* a profile (logged at debug level when the pool closes): pipeline
     * steps, requests in them, ms in their flushes, grows, ms in them */
    uint64_t ncommits, ngrouped, flush_ms, grow_ms;
    /* data space growth: extents per grow (doubled while writers wait
     * for a grow, back to 1 when none did), writers waiting now */
    uint32_t gstep, gwait;
    uint64_t ngrows;
    /* the chunk map could not be read at open: every I/O fails (-EIO)
     * until a later open reads it; set by ctr before any I/O */
    bool failed;
    uint64_t seq;
    int64_t nospc_log_ms;
    /* Snapshots (pool/snap.c has the design).  fam: the map is a family
     * map (constant).  The rest under lock, changed by md_apply (admin
     * lock) and by COW writes (cow list, sref).  gen: the head's
     * generation; nodes: the generation tree, ascending by gen; maxgen:
     * the highest generation ever given (never reused). */
    bool fam, loaded;
    uint32_t ment;
    uint32_t gen, maxgen;
    struct tnode *nodes;
    size_t nnodes;
    struct tsnap **snaps; /* each allocated once: a view keeps its pointer */
    size_t nsnaps;
    /* copy-on-write writes in flight: the old chunk serves reads of vc
     * until the new one is committed (forward entry F_PEND meanwhile) */
    struct tcow *cow;
    size_t ncow, ccap;
    /* a map prepared (before its commit) for the next SNAP_CREATE or
     * SNAP_REVERT apply; owned by the admin thread holding io_lock
     * exclusive */
    uint32_t **prep;
    uint64_t nprep;
    uint64_t reclaimed; /* chunks no member referenced at open */
};

struct tnode {
    uint32_t gen, parent; /* parent 0: the root */
};
struct tsnap {
    uint32_t id, gen;
    uint64_t size;
    int64_t ctime;
    uint32_t **dir; /* forward leaves as the head's (no F_PEND) */
    uint64_t ndir;
    uint32_t opens; /* exported or open read-only (admin lock) */
    char name[VD_SNAP_NAME_MAX + 1];
    /* a clone: a writable member (its name a volume name); its writes
     * in flight keep the chunk they replace here (thin's lock) */
    bool clone;
    struct tcow *cow;
    size_t ncow, ccap;
};
struct tcow {
    uint64_t vc;
    uint32_t old; /* the shared chunk */
};

extern const struct vd_layout_ops vd_thin_layout;

/* Tests only (tests/unit/pool/snap_test.cc): called at the named step of a
 * snapshot operation or copy-on-write with no thin lock held, to copy the
 * device images as a crash at that point would leave them.  NULL in
 * production. */
void (*vd_snap_crash_hook)(const char *step);
#define CRASH_POINT(step)             \
    do {                              \
        if (vd_snap_crash_hook)       \
            vd_snap_crash_hook(step); \
    } while (0)
static void enqueue_locked(struct thin *t, struct twait *w, const uint32_t *pc,
                           size_t n);
static int wait_locked(struct vd_vol *v, struct thin *t, struct twait *w);

static struct thin *thin_of(const struct vd_vol *v)
{
    return v->upper_priv;
}

/* ---- geometry ------------------------------------------------------------ */
static void geometry(struct thin *t, uint64_t es, uint32_t cshift, bool fam)
{
    t->fam = fam;
    t->ment = fam ? MENT_FAM : MENT;
    t->cshift = cshift;
    t->cs = 1ull << cshift;
    t->cpe = (uint32_t)(es >> cshift);
    t->nblk = (t->cpe + t->ment - 1) / t->ment;
    t->rsv = (uint32_t)vd_div_up(2ull * t->nblk * MBLK, t->cs);
}

static uint64_t chunk_off(const struct vd_vol *v, const struct thin *t,
                          uint32_t pc)
{
    return (uint64_t)(pc / t->cpe) * v->pool->extent_size +
           ((uint64_t)(pc % t->cpe) << t->cshift);
}

static uint32_t leaf_get(uint32_t *const *dir, uint64_t vc)
{
    const uint32_t *l = dir[vc >> LEAF_SHIFT];
    return l ? l[vc & (LEAF_N - 1)] : 0;
}

static int leaf_set(uint32_t **dir, uint64_t vc, uint32_t val)
{
    uint32_t **l = &dir[vc >> LEAF_SHIFT];
    if (!*l) {
        if (!val)
            return 0;
        if (!(*l = calloc(LEAF_N, sizeof(uint32_t))))
            return -ENOMEM;
    }
    (*l)[vc & (LEAF_N - 1)] = val;
    return 0;
}

static uint32_t fwd_get(const struct thin *t, uint64_t vc)
{
    const uint32_t *l = t->dir[vc >> LEAF_SHIFT];
    return l ? l[vc & (LEAF_N - 1)] : 0;
}

static int fwd_set(struct thin *t, uint64_t vc, uint32_t val)
{
    uint32_t **l = &t->dir[vc >> LEAF_SHIFT];
    if (!*l) {
        if (!val)
            return 0;
        if (!(*l = calloc(LEAF_N, sizeof(uint32_t))))
            return -ENOMEM;
    }
    (*l)[vc & (LEAF_N - 1)] = val;
    return 0;
}

/* pc's map entry on disk is unsure: keep it out of use (R_FREEING) until
 * a commit has written it free. */
static void limbo_locked(struct thin *t, uint32_t pc)
{
    if (t->nlimbo == t->lcap) {
        size_t nc = t->lcap ? t->lcap * 2 : 16;
        uint32_t *nl = realloc(t->limbo, nc * sizeof(*nl));
        if (!nl)
            return; /* leaked until the pool reopens */
        t->limbo = nl;
        t->lcap = nc;
    }
    t->ext[pc / t->cpe].rev[pc % t->cpe] = R_FREEING;
    t->limbo[t->nlimbo++] = pc;
}

static void mark_dirty_locked(struct thin *t, uint32_t pc)
{
    uint64_t de = pc / t->cpe;
    uint32_t b = (pc % t->cpe) / t->ment;
    if (t->ext[de].bdirty[b])
        return;
    if (t->ndirty == t->dcap) {
        size_t nc = t->dcap ? t->dcap * 2 : 64;
        uint64_t *nd = realloc(t->dirty, nc * sizeof(*nd));
        if (!nd)
            return; /* stays clean in RAM: rewritten with its next change */
        t->dirty = nd;
        t->dcap = nc;
    }
    t->ext[de].bdirty[b] = 1;
    t->dirty[t->ndirty++] = de << 16 | b;
}

static bool le_mapped(struct vd_vol *v, uint64_t de)
{
    pthread_rwlock_rdlock(&v->map_lock);
    bool m = v->map[(v->data_le0 + de) * v->copies].dev != VD_NO_DEV;
    pthread_rwlock_unlock(&v->map_lock);
    return m;
}

static void ext_reset(struct thin *t, struct text *x, bool live)
{
    memset(x->rev, 0, (size_t)t->cpe * 4);
    memset(x->drev, 0, (size_t)t->cpe * 4);
    memset(x->bseq, 0, (size_t)t->nblk * 8);
    memset(x->bslot, 1, t->nblk); /* first write to slot 0 */
    memset(x->bdirty, 0, t->nblk);
    if (t->fam) {
        memset(x->cgen, 0, (size_t)t->cpe * 4);
        memset(x->sref, 0, (size_t)t->cpe * 4);
    }
    x->nfree = live ? t->cpe - t->rsv : 0;
    x->state = live ? X_LIVE : X_HOLE;
}

/* Cover v->size (forward table) and the data space (ext[]); lock held
 * (takes map_lock shared inside: lock order thin lock, then map_lock). */
static int resize_locked(struct vd_vol *v, struct thin *t)
{
    uint64_t vch = v->size >> t->cshift, nd = vd_div_up(vch, LEAF_N);
    uint64_t ne = v->le_count - v->data_le0;

    if (nd > t->ndir) {
        uint32_t **d = realloc(t->dir, nd * sizeof(*d));
        if (!d)
            return -ENOMEM;
        memset(d + t->ndir, 0, (nd - t->ndir) * sizeof(*d));
        t->dir = d;
        t->ndir = nd;
    }
    t->vchunks = vch;
    if (ne > t->next) {
        struct text *e = realloc(t->ext, ne * sizeof(*e));
        if (!e)
            return -ENOMEM;
        t->ext = e;
        for (uint64_t i = t->next; i < ne; i++) {
            struct text *x = &e[i];
            memset(x, 0, sizeof(*x));
            x->rev = calloc(t->cpe, 4);
            x->drev = calloc(t->cpe, 4);
            x->bseq = calloc(t->nblk, 8);
            x->bslot = calloc(t->nblk, 1);
            x->bdirty = calloc(t->nblk, 1);
            if (t->fam) {
                x->cgen = calloc(t->cpe, 4);
                x->sref = calloc(t->cpe, 4);
            }
            if (!x->rev || !x->drev || !x->bseq || !x->bslot || !x->bdirty ||
                (t->fam && (!x->cgen || !x->sref))) {
                free(x->cgen);
                free(x->sref);
                free(x->rev);
                free(x->drev);
                free(x->bseq);
                free(x->bslot);
                free(x->bdirty);
                return -ENOMEM;
            }
            ext_reset(t, x, le_mapped(v, i));
            t->next = i + 1;
        }
    }
    return 0;
}

/* ---- create, apply ------------------------------------------------------- */
static int chunk_shift(const vd_pool *p, const char *name,
                       const struct vd_vol_opts *opts, uint32_t *shift)
{
    uint64_t cs = opts->chunk_size ? opts->chunk_size
                  : p->chunk_size  ? p->chunk_size
                                   : CHUNK_DEFAULT;
    if ((cs & (cs - 1)) || cs < 4096 || cs > p->extent_size / 2) {
        vd_log(VD_LOG_ERR,
               "volume '%s/%s': chunk size %" PRIu64 " must be a power of "
               "two from 4KiB to half the extent size (%" PRIu64 ": each "
               "extent keeps its chunk map)",
               p->name, name, cs, p->extent_size / 2);
        return -EINVAL;
    }
    *shift = (uint32_t)__builtin_ctzll(cs);
    return 0;
}

static int thin_check(vd_pool *p, const char *name,
                      const struct vd_vol_opts *opts, struct vd_op_vol *ov)
{
    uint32_t sh;
    int r = chunk_shift(p, name, opts, &sh);
    if (r < 0)
        return r;
    if ((ov->size >> sh) >= F_PEND - 1) {
        vd_log(VD_LOG_ERR,
               "volume '%s/%s': size %" PRIu64 " has too many chunks of "
               "%" PRIu64 " bytes; use a larger chunk size",
               p->name, name, ov->size, (uint64_t)1 << sh);
        return -EFBIG;
    }
    return 0;
}

static int thin_plan(vd_pool *p, const char *name,
                     const struct vd_vol_opts *opts, const struct vd_op_vol *ov,
                     struct vd_opbuf *ops)
{
    struct vd_op_stack o = { .h.h.type = VD_OP_STACK };
    uint32_t sh;
    int r = chunk_shift(p, name, opts, &sh);
    if (r < 0)
        return r;
    o.h.h.len = sizeof(o);
    o.h.vol = ov->id;
    o.layout = VD_LAYOUT_THIN;
    o.flags = sh | THIN_FAM;
    return vd_opbuf_add(ops, &o, sizeof(o));
}

/* The data space grows on demand (grow_data), never with the size. */
static int thin_plan_extend(struct vd_vol *v, uint64_t le_count,
                            struct vd_opbuf *ops)
{
    return 0;
}

/* Thin's chunk map lives in its data extents (VD_OP_STACK is the
 * core's); the pool's log holds only the snapshot records (snap_apply). */
static int snap_apply(struct vd_vol *v, struct thin *t,
                      const struct vd_op_hdr *op);
static int snap_serialize(const struct vd_vol *v, struct thin *t,
                          struct vd_opbuf *b);
static void snaps_free(struct thin *t);

static int thin_md_apply(struct vd_vol *v, const struct vd_op_hdr *op)
{
    if (op->type < VD_OP_SNAP_CREATE || op->type > VD_OP_SNAP_LAST)
        return -ENOENT;
    return snap_apply(v, thin_of(v), op);
}

static int thin_md_serialize(const struct vd_vol *v, struct vd_opbuf *b)
{
    struct thin *t = thin_of(v);
    struct vd_op_stack o = { .h.h.type = VD_OP_STACK };
    o.h.h.len = sizeof(o);
    o.h.vol = v->id;
    o.layout = VD_LAYOUT_THIN;
    o.flags = t->cshift | (t->fam ? THIN_FAM : 0);
    int r = vd_opbuf_add(b, &o, sizeof(o));
    if (r == 0 && t->fam)
        r = snap_serialize(v, t, b);
    return r;
}

static void thin_fini(struct vd_vol *v)
{
    struct thin *t = thin_of(v);
    if (!t)
        return;
    for (uint64_t i = 0; i < t->ndir; i++)
        free(t->dir[i]);
    free(t->dir);
    for (uint64_t i = 0; i < t->next; i++) {
        free(t->ext[i].rev);
        free(t->ext[i].drev);
        free(t->ext[i].bseq);
        free(t->ext[i].bslot);
        free(t->ext[i].bdirty);
        free(t->ext[i].cgen);
        free(t->ext[i].sref);
    }
    free(t->ext);
    snaps_free(t);
    free(t->dirty);
    free(t->limbo);
    free(t->mblks);
    pthread_mutex_destroy(&t->lock);
    pthread_cond_destroy(&t->cond);
    pthread_rwlock_destroy(&t->io_lock);
    free(t);
    v->upper_priv = NULL;
}

static int thin_stack(struct vd_vol *v, const struct vd_op_stack *o)
{
    uint64_t es = v->pool->extent_size;
    struct thin *t;

    uint32_t sh = o->flags & 0xff;
    if ((o->flags & ~(0xffu | THIN_FAM)) || sh < 12 || (1ull << sh) > es / 2) {
        vd_log(VD_LOG_ERR,
               "pool '%s': volume '%s': bad thin flags 0x%x (chunk size "
               "2^%u; written by a newer vdlvm?)",
               v->pool->name, v->name, o->flags, sh);
        return -EINVAL;
    }
    if (!(t = calloc(1, sizeof(*t))))
        return -ENOMEM;
    geometry(t, es, sh, o->flags & THIN_FAM);
    if (t->fam) {
        /* the head starts in generation 1, the root's child */
        if (!(t->nodes = malloc(sizeof(*t->nodes)))) {
            free(t);
            return -ENOMEM;
        }
        t->nodes[0] = (struct tnode){ 1, 0 };
        t->nnodes = 1;
        t->gen = t->maxgen = 1;
    }
    pthread_mutex_init(&t->lock, NULL);
    pthread_cond_init(&t->cond, NULL);
    pthread_rwlockattr_t ra;
    pthread_rwlockattr_init(&ra);
    pthread_rwlockattr_setkind_np(&ra,
                                  PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&t->io_lock, &ra);
    pthread_rwlockattr_destroy(&ra);
    t->qtail = &t->queue;
    v->upper_priv = t;
    return 0;
}

/* ---- snapshots: generation tree, member maps (design: pool/snap.c) -------- */
static struct tnode *node_find(const struct thin *t, uint32_t gen)
{
    size_t lo = 0, hi = t->nnodes;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (t->nodes[mid].gen == gen)
            return &t->nodes[mid];
        if (t->nodes[mid].gen < gen)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* gen is new (above maxgen: the array stays ascending); parent exists. */
static int node_add(struct thin *t, uint32_t gen, uint32_t parent)
{
    struct tnode *n = realloc(t->nodes, (t->nnodes + 1) * sizeof(*n));
    if (!n)
        return -ENOMEM;
    t->nodes = n;
    n[t->nnodes++] = (struct tnode){ gen, parent };
    if (gen > t->maxgen)
        t->maxgen = gen;
    return 0;
}

static struct tsnap *snap_find_id(const struct thin *t, uint32_t id)
{
    for (size_t i = 0; i < t->nsnaps; i++)
        if (t->snaps[i]->id == id)
            return t->snaps[i];
    return NULL;
}

static struct tsnap *snap_find_name(const struct thin *t, const char *name)
{
    for (size_t i = 0; i < t->nsnaps; i++)
        if (!t->snaps[i]->clone && !strcmp(t->snaps[i]->name, name))
            return t->snaps[i];
    return NULL;
}

static struct tsnap *clone_find_name(const struct thin *t, const char *name)
{
    for (size_t i = 0; i < t->nsnaps; i++)
        if (t->snaps[i]->clone && !strcmp(t->snaps[i]->name, name))
            return t->snaps[i];
    return NULL;
}

static void dir_free(uint32_t **dir, uint64_t ndir)
{
    if (!dir)
        return;
    for (uint64_t i = 0; i < ndir; i++)
        free(dir[i]);
    free(dir);
}

static void snaps_free(struct thin *t)
{
    for (size_t i = 0; i < t->nsnaps; i++) {
        dir_free(t->snaps[i]->dir, t->snaps[i]->ndir);
        free(t->snaps[i]->cow);
        free(t->snaps[i]);
    }
    free(t->snaps);
    free(t->nodes);
    free(t->cow);
    dir_free(t->prep, t->nprep);
    t->snaps = NULL;
    t->nodes = NULL;
    t->cow = NULL;
    t->prep = NULL;
    t->nsnaps = t->nnodes = t->ncow = 0;
}

/* Drop the generations no member descends from (their chunks are seen by
 * no one).  Deterministic: replay prunes exactly as the live apply did. */
static void prune_locked(struct thin *t)
{
    uint8_t *keep = calloc(t->nnodes ? t->nnodes : 1, 1);
    if (!keep)
        return; /* kept: harmless, pruned by a later apply */
    for (size_t m = 0; m <= t->nsnaps; m++) {
        uint32_t g = m < t->nsnaps ? t->snaps[m]->gen : t->gen;
        while (g) {
            struct tnode *n = node_find(t, g);
            if (!n || keep[n - t->nodes])
                break;
            keep[n - t->nodes] = 1;
            g = n->parent;
        }
    }
    size_t k = 0;
    for (size_t i = 0; i < t->nnodes; i++)
        if (keep[i])
            t->nodes[k++] = t->nodes[i];
    t->nnodes = k;
    free(keep);
}

/* dep[i] = distance from gen up to its ancestor t->nodes[i], -1 for the
 * other nodes (dep has nnodes entries: its size does not depend on how
 * many generations were ever given). */
static void ancestry(const struct thin *t, uint32_t gen, int32_t *dep)
{
    for (size_t i = 0; i < t->nnodes; i++)
        dep[i] = -1;
    int32_t d = 0;
    const struct tnode *n;
    while (gen && (n = node_find(t, gen)) && dep[n - t->nodes] < 0) {
        dep[n - t->nodes] = d++;
        gen = n->parent;
    }
}

/* The distance of generation g on the member's path, -1 if off it. */
static int32_t gdep(const struct thin *t, const int32_t *dep, uint32_t g)
{
    const struct tnode *n = node_find(t, g);
    return n ? dep[n - t->nodes] : -1;
}

static uint64_t blk_seq(const struct thin *t, uint32_t pc)
{
    return t->ext[pc / t->cpe].bseq[(pc % t->cpe) / t->ment];
}

/* The map of the member in generation gen, vch virtual chunks: for each
 * virtual chunk the chunk of the nearest ancestor generation (the same
 * generation twice, after a torn commit: the newer block, then the higher
 * chunk number; every member decides alike). */
static int build_map_locked(struct thin *t, uint32_t gen, uint32_t **dir,
                            uint64_t vch, int32_t *dep)
{
    ancestry(t, gen, dep);
    for (uint64_t de = 0; de < t->next; de++) {
        const struct text *x = &t->ext[de];
        if (x->state != X_LIVE)
            continue;
        for (uint32_t i = t->rsv; i < t->cpe; i++) {
            uint32_t val = x->rev[i];
            if (!val || val == R_FREEING || val - 1 >= vch)
                continue;
            int32_t dg = gdep(t, dep, x->cgen[i]);
            if (dg < 0)
                continue;
            uint32_t pc = (uint32_t)(de * t->cpe + i);
            uint32_t cur = leaf_get(dir, val - 1);
            if (cur) {
                uint32_t opc = cur - 1;
                int32_t dog =
                    gdep(t, dep, t->ext[opc / t->cpe].cgen[opc % t->cpe]);
                if (dog < dg)
                    continue;
                if (dog == dg &&
                    (blk_seq(t, opc) > blk_seq(t, pc) ||
                     (blk_seq(t, opc) == blk_seq(t, pc) && opc > pc)))
                    continue;
            }
            if (leaf_set(dir, val - 1, pc + 1) < 0)
                return -ENOMEM;
        }
    }
    return 0;
}

/* Open (ctr, after every extent's map was read): each member's map from
 * the chunks' (virtual chunk, generation), the snapshots' references
 * (sref), and the chunks no member sees reclaimed (written free by the
 * next commit).  Lock held. */
static int fam_build_locked(struct vd_vol *v, struct thin *t)
{
    int32_t *dep = malloc((t->nnodes ? t->nnodes : 1) * sizeof(*dep));
    int r = 0;

    if (!dep)
        return -ENOMEM;
    r = build_map_locked(t, t->gen, t->dir, t->vchunks, dep);
    for (size_t m = 0; m < t->nsnaps && r == 0; m++) {
        struct tsnap *s = t->snaps[m];
        uint64_t vch = s->size >> t->cshift;
        s->ndir = vd_div_up(vch, LEAF_N);
        if (!(s->dir = calloc(s->ndir ? s->ndir : 1, sizeof(*s->dir))))
            r = -ENOMEM;
        else
            r = build_map_locked(t, s->gen, s->dir, vch, dep);
        for (uint64_t vc = 0; r == 0 && vc < vch; vc++) {
            if (!s->dir[vc >> LEAF_SHIFT]) {
                vc |= LEAF_N - 1;
                continue;
            }
            uint32_t e = leaf_get(s->dir, vc);
            if (e)
                t->ext[(e - 1) / t->cpe].sref[(e - 1) % t->cpe]++;
        }
    }
    free(dep);
    if (r < 0)
        return r;
    t->nalloc = 0;
    for (uint64_t de = 0; de < t->next; de++) {
        struct text *x = &t->ext[de];
        if (x->state != X_LIVE)
            continue;
        for (uint32_t i = t->rsv; i < t->cpe; i++) {
            uint32_t val = x->rev[i], pc = (uint32_t)(de * t->cpe + i);
            if (!val)
                continue;
            if (fwd_get(t, val - 1) == pc + 1) {
                t->nalloc++;
                continue;
            }
            if (x->sref[i])
                continue;
            x->rev[i] = x->drev[i] = 0;
            x->cgen[i] = 0;
            x->nfree++;
            mark_dirty_locked(t, pc);
            t->reclaimed++;
        }
    }
    if (t->reclaimed)
        vd_log(VD_LOG_INFO,
               "volume '%s/%s': %" PRIu64 " chunk(s) referenced by no "
               "snapshot or volume reclaimed (an interrupted write or "
               "snapshot removal)",
               v->pool->name, v->name, t->reclaimed);
    return 0;
}

/* A chunk no member references any more: free after a commit wrote it
 * free (limbo).  Lock held. */
static void release_locked(struct thin *t, uint32_t pc)
{
    t->ext[pc / t->cpe].drev[pc % t->cpe] = 0;
    mark_dirty_locked(t, pc);
    limbo_locked(t, pc);
}

/* Copy a forward table of ndir leaves into a new one of nd leaves
 * (F_PEND entries must not exist: the caller holds io_lock exclusive). */
static uint32_t **dir_copy(uint32_t *const *src, uint64_t nsrc, uint64_t nd)
{
    uint32_t **d = calloc(nd ? nd : 1, sizeof(*d));
    if (!d)
        return NULL;
    for (uint64_t i = 0; i < nd && i < nsrc; i++) {
        if (!src[i])
            continue;
        if (!(d[i] = malloc(LEAF_N * sizeof(uint32_t)))) {
            dir_free(d, nd);
            return NULL;
        }
        memcpy(d[i], src[i], LEAF_N * sizeof(uint32_t));
    }
    return d;
}

static int snap_rec_check(struct vd_vol *v, const struct vd_op_snap *o)
{
    if (o->h.h.len < sizeof(*o) || !memchr(o->name, 0, sizeof(o->name))) {
        vd_log(VD_LOG_ERR,
               "pool '%s': volume '%s': snapshot record type %u malformed",
               v->pool->name, v->name, o->h.h.type);
        return -EINVAL;
    }
    return 0;
}

#define SNAP_BAD(...)                    \
    do {                                 \
        vd_log(VD_LOG_ERR, __VA_ARGS__); \
        r = -EINVAL;                     \
        goto out;                        \
    } while (0)

static int clone_apply_locked(struct vd_vol *v, struct thin *t,
                              const struct vd_op_snap_clone *c);
static uint32_t clone_cow_old_locked(struct tsnap *c, uint64_t vc, bool del);

/* Apply a snapshot record (admin lock).  Before ctr (replay) only the tree
 * and the member list change; after it (t->loaded: a live commit, the
 * caller holding io_lock exclusive) the maps and references too. */
static int snap_apply(struct vd_vol *v, struct thin *t,
                      const struct vd_op_hdr *op)
{
    const struct vd_op_snap *o = (const void *)op;
    const char *pn = v->pool->name, *vn = v->name;
    int r = 0;

    if (!t->fam) {
        vd_log(VD_LOG_ERR,
               "pool '%s': volume '%s': snapshot record on a volume without "
               "a family map",
               pn, vn);
        return -EINVAL;
    }
    if ((r = snap_rec_check(v, o)) < 0)
        return r;
    pthread_mutex_lock(&t->lock);
    switch (op->type) {
    case VD_OP_SNAP_CREATE:
    case VD_OP_SNAP_MEMBER: {
        struct tsnap *s;
        bool create = op->type == VD_OP_SNAP_CREATE;
        bool isclone =
            !create && op->len >= sizeof(struct vd_op_snap_clone) &&
            (((const struct vd_op_snap_clone *)op)->flags & VD_SNAPF_CLONE);
        if (!o->id && !create) { /* the head, last of a checkpoint */
            if (!node_find(t, o->gen) || o->ngen < o->gen)
                SNAP_BAD("pool '%s': volume '%s': head generation %u "
                         "unknown",
                         pn, vn, o->gen);
            t->gen = o->gen;
            if (o->ngen > t->maxgen)
                t->maxgen = o->ngen;
            prune_locked(t);
            break;
        }
        if (!o->id || snap_find_id(t, o->id) ||
            (isclone ? clone_find_name(t, o->name)
                     : snap_find_name(t, o->name)) ||
            !o->name[0] || t->nsnaps >= VD_SNAP_MAX)
            SNAP_BAD("pool '%s': volume '%s': snapshot %u '%s' duplicate, "
                     "unnamed or one too many",
                     pn, vn, o->id, o->name);
        if (!node_find(t, o->gen) || o->size > v->size ||
            (create && (o->gen != t->gen || o->ngen <= t->maxgen)))
            SNAP_BAD("pool '%s': volume '%s': snapshot '%s' names generation "
                     "%u/%u (head %u, last %u) or size %" PRIu64 " (volume "
                     "%" PRIu64 ")",
                     pn, vn, o->name, o->gen, o->ngen, t->gen, t->maxgen,
                     o->size, v->size);
        struct tsnap **sa = realloc(t->snaps, (t->nsnaps + 1) * sizeof(*sa));
        if (!sa) {
            r = -ENOMEM;
            goto out;
        }
        t->snaps = sa;
        if (!(s = calloc(1, sizeof(*s)))) {
            r = -ENOMEM;
            goto out;
        }
        if (create && (r = node_add(t, o->ngen, o->gen)) < 0) {
            free(s);
            goto out;
        }
        t->snaps[t->nsnaps++] = s;
        s->id = o->id;
        s->gen = o->gen;
        s->size = o->size;
        s->ctime = o->ctime;
        s->clone = isclone;
        vd_name_copy(s->name, sizeof(s->name), o->name);
        if (!create)
            break;
        t->gen = o->ngen;
        if (!t->loaded)
            break;
        /* live: the map prepared before the commit (snap_create) */
        s->ndir = vd_div_up(s->size >> t->cshift, LEAF_N);
        if (t->prep && t->nprep == s->ndir) {
            s->dir = t->prep;
            t->prep = NULL;
        } else if (!(s->dir = dir_copy(t->dir, t->ndir, s->ndir))) {
            r = -ENOMEM; /* RAM only: the pool must be reopened */
            t->failed = true;
            goto out;
        }
        for (uint64_t vc = 0; vc < (s->size >> t->cshift); vc++) {
            if (!s->dir[vc >> LEAF_SHIFT]) {
                vc |= LEAF_N - 1;
                continue;
            }
            uint32_t e = leaf_get(s->dir, vc);
            if (e)
                t->ext[(e - 1) / t->cpe].sref[(e - 1) % t->cpe]++;
        }
        break;
    }
    case VD_OP_SNAP_REMOVE: {
        struct tsnap *s = snap_find_id(t, o->id);
        if (!s)
            SNAP_BAD("pool '%s': volume '%s': snapshot %u to remove unknown",
                     pn, vn, o->id);
        if (t->loaded && s->dir) {
            for (uint64_t vc = 0; vc < (s->size >> t->cshift); vc++) {
                if (!s->dir[vc >> LEAF_SHIFT]) {
                    vc |= LEAF_N - 1;
                    continue;
                }
                uint32_t e = leaf_get(s->dir, vc);
                if (!e)
                    continue;
                uint32_t pc = e - 1;
                if (--t->ext[pc / t->cpe].sref[pc % t->cpe] == 0 &&
                    (fwd_get(t, vc) & ~F_PEND) != e)
                    release_locked(t, pc);
            }
        }
        dir_free(s->dir, s->ndir);
        size_t k = 0;
        while (t->snaps[k] != s)
            k++;
        memmove(t->snaps + k, t->snaps + k + 1,
                (t->nsnaps - k - 1) * sizeof(*t->snaps));
        t->nsnaps--;
        free(s->cow); /* a clone's pending-write table (empty: I/O drained) */
        free(s);
        prune_locked(t);
        break;
    }
    case VD_OP_SNAP_REVERT: {
        struct tsnap *s = snap_find_id(t, o->id);
        if (!s || o->ngen <= t->maxgen)
            SNAP_BAD("pool '%s': volume '%s': revert to snapshot %u "
                     "(generation %u) unknown or stale",
                     pn, vn, o->id, o->ngen);
        uint32_t **nd = NULL;
        if (t->loaded) {
            if (t->prep && t->nprep == t->ndir) {
                nd = t->prep;
                t->prep = NULL;
            } else if (!(nd = dir_copy(s->dir, s->ndir, t->ndir))) {
                r = -ENOMEM;
                t->failed = true;
                goto out;
            }
        }
        if ((r = node_add(t, o->ngen, s->gen)) < 0) {
            dir_free(nd, t->ndir);
            goto out;
        }
        t->gen = o->ngen;
        if (t->loaded) {
            uint64_t n = 0;
            for (uint64_t vc = 0; vc < t->vchunks; vc++) {
                if (!t->dir[vc >> LEAF_SHIFT] && !nd[vc >> LEAF_SHIFT]) {
                    vc |= LEAF_N - 1;
                    continue;
                }
                uint32_t e = fwd_get(t, vc) & ~F_PEND, ne = leaf_get(nd, vc);
                n += ne != 0;
                if (e && e != ne &&
                    !t->ext[(e - 1) / t->cpe].sref[(e - 1) % t->cpe])
                    release_locked(t, e - 1);
            }
            dir_free(t->dir, t->ndir);
            t->dir = nd;
            t->nalloc = n;
        }
        prune_locked(t);
        break;
    }
    case VD_OP_SNAP_CLONE:
        r = clone_apply_locked(v, t, (const void *)op);
        break;
    case VD_OP_SNAP_NODE: {
        struct tnode *n = node_find(t, o->gen);
        if (n && n->parent == o->ngen)
            break; /* generation 1, made by the stack record */
        if (n || o->gen <= t->maxgen || (o->ngen && !node_find(t, o->ngen)))
            SNAP_BAD("pool '%s': volume '%s': generation %u (parent %u) "
                     "duplicate or out of order",
                     pn, vn, o->gen, o->ngen);
        r = node_add(t, o->gen, o->ngen);
        break;
    }
    default:
        r = -ENOENT;
    }
out:
    pthread_mutex_unlock(&t->lock);
    return r;
}

/* Checkpoint: the generation tree (ascending: parents first), the
 * snapshots, then the head (which prunes a stack-made generation 1). */
static int snap_serialize(const struct vd_vol *v, struct thin *t,
                          struct vd_opbuf *b)
{
    struct vd_op_snap_clone oc;
    struct vd_op_snap *o = &oc.s;
    int r = 0;

    pthread_mutex_lock(&t->lock);
    for (size_t i = 0; i <= t->nnodes + t->nsnaps && r == 0; i++) {
        size_t len = sizeof(*o);
        memset(&oc, 0, sizeof(oc));
        o->h.vol = v->id;
        if (i < t->nnodes) {
            o->h.h.type = VD_OP_SNAP_NODE;
            o->gen = t->nodes[i].gen;
            o->ngen = t->nodes[i].parent;
        } else if (i < t->nnodes + t->nsnaps) {
            const struct tsnap *s = t->snaps[i - t->nnodes];
            o->h.h.type = VD_OP_SNAP_MEMBER;
            o->id = s->id;
            o->gen = s->gen;
            o->size = s->size;
            o->ctime = s->ctime;
            vd_name_copy(o->name, sizeof(o->name), s->name);
            if (s->clone) {
                oc.flags = VD_SNAPF_CLONE;
                len = sizeof(oc);
            }
        } else {
            o->h.h.type = VD_OP_SNAP_MEMBER;
            o->gen = t->gen;
            o->ngen = t->maxgen;
        }
        o->h.h.len = (uint16_t)len;
        r = vd_opbuf_add(b, &oc, len);
    }
    pthread_mutex_unlock(&t->lock);
    return r;
}

/* ---- open: rebuild from the map blocks ----------------------------------- */
static bool mblk_valid(const struct vd_vol *v, const struct thin *t,
                       const struct thin_mblk *m, uint64_t de, uint32_t b)
{
    uint32_t want =
        t->cpe - b * t->ment < t->ment ? t->cpe - b * t->ment : t->ment;
    struct thin_mblk c;

    if (memcmp(m->magic, THIN_MAGIC, 8) || m->vol != v->id || m->de != de ||
        m->blk != b || m->nent != want || !m->seq)
        return false;
    memcpy(&c, m, sizeof(c));
    c.crc = 0;
    return vd_crc32c(0, &c, sizeof(c)) == m->crc;
}

static int load_extent_locked(struct vd_vol *v, struct thin *t, uint64_t de,
                              uint8_t *area)
{
    struct text *x = &t->ext[de];

    for (uint32_t b = 0; b < t->nblk; b++) {
        const struct thin_mblk *s0 = (const void *)(area + (size_t)b * MBLK);
        const struct thin_mblk *s1 =
            (const void *)(area + ((size_t)t->nblk + b) * MBLK);
        bool v0 = mblk_valid(v, t, s0, de, b), v1 = mblk_valid(v, t, s1, de, b);
        const struct thin_mblk *m;
        if (!v0 && !v1)
            continue;
        if (v0 && (!v1 || s0->seq > s1->seq)) {
            m = s0;
            x->bslot[b] = 0;
        } else {
            m = s1;
            x->bslot[b] = 1;
        }
        x->bseq[b] = m->seq;
        if (m->seq > t->seq)
            t->seq = m->seq;
        for (uint32_t j = 0; j < m->nent; j++) {
            uint32_t i = b * t->ment + j;
            uint32_t val = t->fam ? m->ent[2 * j] : m->ent[j];
            uint32_t pc = (uint32_t)(de * t->cpe + i);
            if (!val || i < t->rsv || val - 1 >= t->vchunks)
                continue;
            if (t->fam) {
                /* which member sees it is decided once every extent is
                 * read (fam_build_locked); a generation no longer in the
                 * tree is seen by no one: written free by the next
                 * commit */
                uint32_t g = m->ent[2 * j + 1];
                if (!node_find(t, g)) {
                    mark_dirty_locked(t, pc);
                    t->reclaimed++;
                    continue;
                }
                x->rev[i] = x->drev[i] = val;
                x->cgen[i] = g;
                x->nfree--;
                continue;
            }
            uint64_t vc = val - 1;
            uint32_t old = fwd_get(t, vc);
            if (old) {
                /* two durable entries: the newer block wins */
                uint32_t opc = old - 1;
                struct text *ox = &t->ext[opc / t->cpe];
                uint32_t ob = (opc % t->cpe) / t->ment;
                if (ox->bseq[ob] >= m->seq) {
                    mark_dirty_locked(t, pc);
                    continue;
                }
                ox->rev[opc % t->cpe] = ox->drev[opc % t->cpe] = 0;
                ox->nfree++;
                t->nalloc--;
                mark_dirty_locked(t, opc);
            }
            if (fwd_set(t, vc, pc + 1) < 0)
                return -ENOMEM;
            x->rev[i] = x->drev[i] = val;
            x->nfree--;
            t->nalloc++;
        }
    }
    return 0;
}

static int thin_ctr(struct vd_vol *v)
{
    struct thin *t = thin_of(v);
    size_t alen = (size_t)2 * t->nblk * MBLK;
    uint8_t *area = NULL;
    int r;

    pthread_mutex_lock(&t->lock);
    r = resize_locked(v, t);
    pthread_mutex_unlock(&t->lock);
    if (r < 0 || t->nalloc || t->seq || t->loaded)
        return r; /* loaded already (ctr after a failed start) */
    if (!(area = malloc(alen)))
        return -ENOMEM;
    for (uint64_t de = 0; de < t->next && r == 0; de++) {
        if (t->ext[de].state == X_HOLE)
            continue;
        r = v->lops->pread(v, area, alen, de * v->pool->extent_size, 0);
        if (r == -ENOMEM)
            break;
        if (r < 0) {
            /* Which virtual chunks it maps is unknown: serving the volume
             * could return zeroes for acknowledged data.  The pool opens,
             * this volume fails its I/O. */
            vd_log(VD_LOG_ERR,
                   "volume '%s/%s': reading the chunk map of data extent "
                   "%" PRIu64 " failed: %s; its I/O fails until the pool is "
                   "opened with the map readable (fix or replace the device)",
                   v->pool->name, v->name, de, strerror(-r));
            t->failed = true;
            r = 0;
            break;
        }
        pthread_mutex_lock(&t->lock);
        r = load_extent_locked(v, t, de, area);
        pthread_mutex_unlock(&t->lock);
    }
    free(area);
    pthread_mutex_lock(&t->lock);
    if (r == 0 && t->fam && !t->failed)
        r = fam_build_locked(v, t);
    if (r == 0)
        t->loaded = true;
    pthread_mutex_unlock(&t->lock);
    return r;
}

static int thin_grow(struct vd_vol *v)
{
    struct thin *t = thin_of(v);
    pthread_mutex_lock(&t->lock);
    int r = resize_locked(v, t);
    pthread_mutex_unlock(&t->lock);
    return r;
}

/* Background: give data extents whose chunks are all free back to the
 * pool, one per pass.  Only under a single copy: the mirror's resync and
 * leg replacement walk every logical extent and expect it mapped.  An
 * extent qualifies when no chunk is in use, in limbo or pending, no block
 * is dirty and no commit runs (so no map write can still target it);
 * X_RETURNING keeps allocation and grow away from it meanwhile. */
static void thin_tick(struct vd_vol *v)
{
    struct thin *t = thin_of(v);
    vd_pool *p = v->pool;
    uint64_t de = UINT64_MAX;

    if (v->copies != 1 || t->failed)
        return;
    pthread_mutex_lock(&t->lock);
    for (uint64_t i = 0; i < t->next && !t->committing && !t->mapped &&
                         !t->growing && de == UINT64_MAX;
         i++) {
        struct text *x = &t->ext[i];
        bool clean = x->state == X_LIVE && x->nfree == t->cpe - t->rsv &&
                     (!x->spare_until || vd_now_ms() >= x->spare_until);
        for (uint32_t b = 0; clean && b < t->nblk; b++)
            clean = !x->bdirty[b];
        if (clean) {
            de = i;
            x->state = X_RETURNING;
            x->nfree = 0;
        }
    }
    pthread_mutex_unlock(&t->lock);
    if (de == UINT64_MAX)
        return;
    struct vd_opbuf ops = { 0 };
    struct vd_op_map om = { .h.type = VD_OP_MAP };
    om.vol = v->id;
    om.leg = 0;
    om.le_start = v->data_le0 + de;
    om.count = 1;
    om.dev = VD_NO_DEV;
    vd_admin_lock(p);
    int r = vd_opbuf_add(&ops, &om, sizeof(om));
    if (r == 0)
        r = vd_md_commit(p, &ops);
    if (r == 0)
        vd_pool_check_thresholds(p);
    vd_admin_unlock(p);
    vd_opbuf_free(&ops);
    pthread_mutex_lock(&t->lock);
    if (r == 0) {
        t->ext[de].state = X_HOLE;
    } else {
        t->ext[de].state = X_LIVE;
        t->ext[de].nfree = t->cpe - t->rsv;
    }
    pthread_mutex_unlock(&t->lock);
}

/* Before the pool closes: blocks left dirty by a failed commit are written
 * (best effort), so a clean close leaves the map as RAM has it. */
static void thin_quiesce(struct vd_vol *v)
{
    struct thin *t = thin_of(v);
    pthread_mutex_lock(&t->lock);
    if (t->ncommits)
        vd_log(VD_LOG_DEBUG,
               "volume '%s/%s': %" PRIu64 " map commit steps for %" PRIu64
               " requests (%" PRIu64 " ms flushing), %" PRIu64 " data space "
               "grows (%" PRIu64 " ms)",
               v->pool->name, v->name, t->ncommits, t->ngrouped, t->flush_ms,
               t->ngrows, t->grow_ms);
    if (!t->failed && (t->ndirty || t->nlimbo)) {
        struct twait w;
        enqueue_locked(t, &w, NULL, 0);
        wait_locked(v, t, &w);
    }
    pthread_mutex_unlock(&t->lock);
}

static void thin_status(struct vd_vol *v, struct vd_vol_status *st)
{
    struct thin *t = thin_of(v);
    st->thin = 1;
    st->chunk_size = t->cs;
    pthread_mutex_lock(&t->lock);
    uint64_t n = t->nalloc;
    if (t->nsnaps) { /* and the chunks only snapshots hold */
        n = 0;
        for (uint64_t de = 0; de < t->next; de++)
            for (uint32_t i = t->rsv; i < t->cpe; i++) {
                uint32_t val = t->ext[de].rev[i];
                n += val && val != R_FREEING;
            }
    }
    st->allocated = n << t->cshift;
    pthread_mutex_unlock(&t->lock);
}

/* The shared chunk a copy-on-write of vc replaces, 0 if none in flight
 * (pc + 1).  Lock held. */
static uint32_t cow_old_locked(const struct thin *t, uint64_t vc)
{
    for (size_t i = 0; i < t->ncow; i++)
        if (t->cow[i].vc == vc)
            return t->cow[i].old + 1;
    return 0;
}

static int cow_add_locked(struct thin *t, uint64_t vc, uint32_t old)
{
    if (t->ncow == t->ccap) {
        size_t nc = t->ccap ? t->ccap * 2 : 16;
        struct tcow *n = realloc(t->cow, nc * sizeof(*n));
        if (!n)
            return -ENOMEM;
        t->cow = n;
        t->ccap = nc;
    }
    t->cow[t->ncow++] = (struct tcow){ vc, old };
    return 0;
}

/* The copy-on-write of vc ended: committed (the head left the old chunk:
 * free it if no snapshot still needs it) or not (the old chunk is mapped
 * again).  Lock held. */
static void cow_end_locked(struct thin *t, uint64_t vc, bool committed)
{
    for (size_t i = 0; i < t->ncow; i++) {
        if (t->cow[i].vc != vc)
            continue;
        uint32_t old = t->cow[i].old;
        t->cow[i] = t->cow[--t->ncow];
        if (!committed) {
            fwd_set(t, vc, old + 1);
            return;
        }
        t->nalloc--;
        if (!t->ext[old / t->cpe].sref[old % t->cpe])
            release_locked(t, old);
        return;
    }
}

/* ---- group commit ----------------------------------------------------------- */
static void build_block_locked(struct vd_vol *v, struct thin *t, uint64_t de,
                               uint32_t b, struct thin_mblk *m)
{
    uint32_t n =
        t->cpe - b * t->ment < t->ment ? t->cpe - b * t->ment : t->ment;
    memset(m, 0, sizeof(*m));
    memcpy(m->magic, THIN_MAGIC, 8);
    m->vol = v->id;
    m->seq = t->seq;
    m->de = (uint32_t)de;
    m->blk = (uint16_t)b;
    m->nent = (uint16_t)n;
    if (!t->fam) {
        memcpy(m->ent, t->ext[de].drev + (size_t)b * MENT, (size_t)n * 4);
    } else {
        const struct text *x = &t->ext[de];
        for (uint32_t j = 0; j < n; j++) {
            uint32_t i = b * t->ment + j;
            m->ent[2 * j] = x->drev[i];
            m->ent[2 * j + 1] = x->drev[i] ? x->cgen[i] : 0;
        }
    }
    m->crc = vd_crc32c(0, m, sizeof(*m));
}

/* Complete group g with result r: its map entries durable (r == 0) or
 * unsure on disk (lock held). */
static void finish_locked(struct thin *t, struct twait *g, int r)
{
    for (struct twait *w = g; w; w = w->next) {
        for (size_t i = 0; i < w->n; i++) {
            uint32_t pc = w->pc[i] & ~F_FREE;
            struct text *x = &t->ext[pc / t->cpe];
            uint32_t li = pc % t->cpe;
            if (w->pc[i] & F_FREE) {
                if (r == 0) {
                    x->rev[li] = 0; /* reusable now */
                    x->nfree++;
                } else {
                    x->drev[li] = 0;
                    mark_dirty_locked(t, pc);
                    limbo_locked(t, pc);
                }
            } else if (w->memb) {
                if (r != 0) { /* as below; the writer restores its map */
                    x->drev[li] = 0;
                    mark_dirty_locked(t, pc);
                    limbo_locked(t, pc);
                }
            } else if (r == 0) {
                fwd_set(t, x->rev[li] - 1, pc + 1);
                if (t->ncow)
                    cow_end_locked(t, x->rev[li] - 1, true);
            } else {
                /* the map may or may not name it on disk: not reused
                 * before a commit wrote it free (a copy-on-write maps the
                 * shared chunk again) */
                fwd_set(t, x->rev[li] - 1, 0);
                if (t->ncow)
                    cow_end_locked(t, x->rev[li] - 1, false);
                x->drev[li] = 0;
                t->nalloc--;
                mark_dirty_locked(t, pc);
                limbo_locked(t, pc);
            }
        }
    }
    /* done last: a waiter returns (and its twait leaves the stack) as soon
     * as it sees done */
    for (struct twait *w = g, *nx; w; w = nx) {
        nx = w->next;
        w->r = r;
        w->done = 1;
    }
}

/* The blocks of a map write: durable (r == 0: the slot written holds the
 * valid copy now) or unsure (rewritten by the next map write, to the same
 * slot: the valid copy is never overwritten).  Lock held. */
static void settle_locked(struct thin *t, const uint64_t *blks, size_t nb,
                          uint64_t seq, int r)
{
    for (size_t k = 0; k < nb; k++) {
        uint64_t de = blks[k] >> 16;
        uint32_t b = (uint32_t)(blks[k] & 0xffff);
        if (r == 0) {
            t->ext[de].bslot[b] = !t->ext[de].bslot[b];
            t->ext[de].bseq[b] = seq;
        } else {
            mark_dirty_locked(t,
                              (uint32_t)(de * t->cpe + (uint64_t)b * t->ment));
        }
    }
}

/* One step of the pipeline (the header comment has the protocol): lock
 * held on entry and on return, dropped for the I/O.  Group A (t->mapped:
 * map written, not yet flushed) and group B (t->queue: data written) share
 * one flush; then A is complete and B's map is written, B becoming the
 * next step's A. */
static void commit_locked(struct vd_vol *v, struct thin *t)
{
    struct twait *a = t->mapped, *b = t->queue, *w;
    uint64_t *ablks = t->mblks, aseq = t->mseq;
    size_t anb = t->nmblk, alimbo = t->mlimbo;
    struct thin_mblk *img = NULL;
    uint64_t *blks = NULL, *offs = NULL, seq = 0;
    size_t nb = 0, blimbo = 0;
    bool data = false;
    int r = 0, rb;

    t->mapped = NULL;
    t->mblks = NULL;
    t->nmblk = t->mlimbo = 0;
    t->queue = NULL;
    t->qtail = &t->queue;
    t->committing = true;
    t->ncommits++;
    for (w = b; w; w = w->next) {
        t->ngrouped++;
        for (size_t i = 0; i < w->n && !data; i++)
            data = !(w->pc[i] & F_FREE);
    }
    pthread_mutex_unlock(&t->lock);
    /* B's data durable before its map is written; A's map durable before
     * A is acknowledged: one flush for both */
    if (data || anb) {
        int64_t t0 = vd_now_ms();
        r = v->lops->flush(v);
        __atomic_add_fetch(&t->flush_ms, vd_now_ms() - t0, __ATOMIC_RELAXED);
    }
    if (data && r == 0)
        CRASH_POINT("commit-data-flushed");
    pthread_mutex_lock(&t->lock);
    if (a) {
        settle_locked(t, ablks, anb, aseq, r);
        finish_locked(t, a, r);
        if (r == 0 && alimbo) { /* written free by A's map */
            for (size_t i = 0; i < alimbo; i++) {
                struct text *x = &t->ext[t->limbo[i] / t->cpe];
                x->rev[t->limbo[i] % t->cpe] = 0;
                x->nfree++;
            }
            memmove(t->limbo, t->limbo + alimbo,
                    (t->nlimbo - alimbo) * sizeof(*t->limbo));
            t->nlimbo -= alimbo;
        }
    }
    free(ablks);
    rb = r;
    if (b && rb == 0) {
        for (w = b; w; w = w->next)
            for (size_t i = 0; i < w->n; i++) {
                uint32_t pc = w->pc[i] & ~F_FREE;
                struct text *x = &t->ext[pc / t->cpe];
                x->drev[pc % t->cpe] =
                    (w->pc[i] & F_FREE) ? 0 : x->rev[pc % t->cpe];
                mark_dirty_locked(t, pc);
                /* no room in the dirty list: the entry would not be
                 * written, so the group cannot be acknowledged */
                if (!x->bdirty[(pc % t->cpe) / t->ment])
                    rb = -ENOMEM;
            }
        seq = ++t->seq;
        nb = t->ndirty;
        img = malloc(nb * sizeof(*img) + 1);
        blks = malloc(nb * sizeof(*blks) + 1);
        offs = malloc(nb * sizeof(*offs) + 1);
        if (!img || !blks || !offs)
            rb = -ENOMEM;
        if (rb < 0)
            nb = 0; /* the blocks stay dirty */
        for (size_t k = 0; k < nb; k++) {
            uint64_t de = t->dirty[k] >> 16;
            uint32_t bk = (uint32_t)(t->dirty[k] & 0xffff);
            build_block_locked(v, t, de, bk, &img[k]);
            blks[k] = t->dirty[k];
            offs[k] = de * v->pool->extent_size +
                      ((uint64_t)!t->ext[de].bslot[bk] * t->nblk + bk) * MBLK;
            t->ext[de].bdirty[bk] = 0;
        }
        if (rb == 0) {
            t->ndirty = 0;
            blimbo = t->nlimbo; /* all written free by B's map */
        }
    }
    pthread_mutex_unlock(&t->lock);
    for (size_t k = 0; k < nb && rb == 0; k++)
        rb = v->lops->pwrite(v, &img[k], MBLK, offs[k], 0);
    if (nb)
        CRASH_POINT("commit-map-written");
    pthread_mutex_lock(&t->lock);
    if (b && rb < 0) {
        settle_locked(t, blks, nb, seq, rb);
        finish_locked(t, b, rb);
    } else if (b && !nb) {
        finish_locked(t, b, 0); /* nothing of it to make durable */
    } else if (b) {
        t->mapped = b;
        t->mblks = blks;
        blks = NULL;
        t->nmblk = nb;
        t->mseq = seq;
        t->mlimbo = blimbo;
    }
    free(img);
    free(blks);
    free(offs);
    t->committing = false;
    pthread_cond_broadcast(&t->cond);
}

/* Queue a request's chunks for the next group (lock held). */
static void enqueue_locked(struct thin *t, struct twait *w, const uint32_t *pc,
                           size_t n)
{
    memset(w, 0, sizeof(*w));
    w->pc = pc;
    w->n = n;
    *t->qtail = w;
    t->qtail = &w->next;
}

/* Wait until w's group is complete, running pipeline steps meanwhile when
 * no one else does (lock held). */
static int wait_locked(struct vd_vol *v, struct thin *t, struct twait *w)
{
    while (!w->done) {
        if (!t->committing)
            commit_locked(v, t);
        else
            pthread_cond_wait(&t->cond, &t->lock);
    }
    return w->r;
}

/* ---- data space growth --------------------------------------------------- */
#ifndef GROW_MAX
#define GROW_MAX 16u /* extents per grow at most */
#endif
#define SPARE_KEEP 10000u /* ms a grown extent no chunk was taken from stays */

/* More data extents (admin lock; the caller holds io_lock shared and no
 * thin lock): t->gstep of them (doubled after a grow that writers waited
 * for, back to 1 after one no one waited for, at most GROW_MAX, a quarter
 * of the pool's free extents, and what the volume can still map), so that
 * a stream of first writes pays one metadata commit (two flushes) per
 * gstep extents, not per extent.  0 (maybe grown by another thread
 * meanwhile), -ENOSPC. */
static int grow_data(struct vd_vol *v, struct thin *t)
{
    vd_pool *p = v->pool;
    struct vd_opbuf ops = { 0 };
    struct vd_op_vol ov = { .h.type = VD_OP_VOL_RESIZE };
    uint64_t n, old_next = 0;
    int r;

    pthread_mutex_lock(&t->lock);
    if (t->growing) {
        t->gwait++;
        while (t->growing)
            pthread_cond_wait(&t->cond, &t->lock);
        pthread_mutex_unlock(&t->lock);
        return 0;
    }
    t->growing = true;
    t->gwait = 0;
    int64_t t0 = vd_now_ms();
    n = t->gstep ? t->gstep : 1;
    /* no more than the volume can still map: its unmapped virtual chunks
     * beyond the free chunks it has */
    uint64_t freech = 0;
    for (uint64_t de = 0; de < t->next; de++)
        freech += t->ext[de].state == X_LIVE ? t->ext[de].nfree : 0;
    uint64_t left =
        t->vchunks > t->nalloc + freech ? t->vchunks - t->nalloc - freech : 1;
    uint64_t need = vd_div_up(left, t->cpe - t->rsv);
    if (n > need)
        n = need;
    pthread_mutex_unlock(&t->lock);

    vd_admin_lock(p);
    uint64_t fe = vd_extent_free_count(p, NULL);
    if (fe < v->copies) {
        r = -ENOSPC;
        goto out;
    }
    if (n > fe / v->copies / 4) /* most of a nearly full pool left to others */
        n = fe / v->copies / 4;
    if (n < 1)
        n = 1;
    /* a hole first (holes exist only under one copy: see thin_tick) */
    uint64_t hole = UINT64_MAX;
    pthread_mutex_lock(&t->lock);
    for (uint64_t de = 0; de < t->next && hole == UINT64_MAX; de++)
        if (t->ext[de].state == X_HOLE)
            hole = de;
    pthread_mutex_unlock(&t->lock);
    if (hole != UINT64_MAX) {
        if ((r = vd_extent_plan(p, v->id, 0, v->data_le0 + hole, 1, &ops)) < 0)
            goto out;
        if ((r = vd_md_commit(p, &ops)) < 0)
            goto out;
        pthread_mutex_lock(&t->lock);
        ext_reset(t, &t->ext[hole], true);
        t->ext[hole].spare_until = vd_now_ms() + SPARE_KEEP;
        pthread_mutex_unlock(&t->lock);
        vd_pool_check_thresholds(p);
        goto out;
    }
    if (!v->lops->io_beyond_size) {
        /* the lower layout addresses v->size bytes only */
        uint64_t most = v->size / p->extent_size + v->data_le0;
        if (v->le_count >= most) {
            r = -ENOSPC;
            goto out;
        }
        if (v->le_count + n > most)
            n = most - v->le_count;
    }
    ov.id = v->id;
    ov.le_count = v->le_count + n;
    ov.size = v->size;
    ov.copies = v->copies;
    ov.layout = v->layout;
    ov.flags = v->flags;
    vd_name_copy(ov.name, sizeof(ov.name), v->name);
    if ((r = vd_opbuf_add(&ops, &ov, sizeof(ov))) < 0)
        goto out;
    if ((r = v->lops->plan_extend(v, ov.le_count, &ops)) < 0)
        goto out;
    if ((r = vd_md_commit(p, &ops)) < 0)
        goto out;
    if (v->lops->grow && (r = v->lops->grow(v)) < 0)
        goto out;
    pthread_mutex_lock(&t->lock);
    old_next = t->next;
    pthread_mutex_unlock(&t->lock);
    r = thin_grow(v);
    pthread_mutex_lock(&t->lock);
    for (uint64_t de = old_next; de < t->next; de++)
        t->ext[de].spare_until = vd_now_ms() + SPARE_KEEP;
    pthread_mutex_unlock(&t->lock);
    vd_pool_check_thresholds(p);
out:
    vd_admin_unlock(p);
    vd_opbuf_free(&ops);
    pthread_mutex_lock(&t->lock);
    t->growing = false;
    t->ngrows++;
    t->grow_ms += vd_now_ms() - t0;
    if (r == 0 && t->gwait) {
        t->gstep = t->gstep ? t->gstep * 2 : 2;
        if (t->gstep > GROW_MAX)
            t->gstep = GROW_MAX;
    } else if (r == 0) {
        t->gstep = 1;
    }
    pthread_cond_broadcast(&t->cond);
    if (r == -ENOSPC) {
        int64_t now = vd_now_ms();
        if (now >= t->nospc_log_ms) {
            t->nospc_log_ms = now + 10000;
            vd_log(VD_LOG_ERR,
                   "volume '%s/%s': no space for a new chunk: pool '%s' is "
                   "full; writes to unallocated blocks fail until space is "
                   "freed (UNMAP, remove a volume) or a device is added",
                   p->name, v->name, p->name);
        }
    }
    pthread_mutex_unlock(&t->lock);
    return r;
}

/* A free chunk, or UINT32_MAX. */
static uint32_t alloc_chunk_locked(struct thin *t)
{
    for (uint64_t k = 0; k < t->next; k++) {
        uint64_t de = (t->ahint + k) % t->next;
        struct text *x = &t->ext[de];
        if (!x->nfree)
            continue;
        for (uint32_t i = t->rsv; i < t->cpe; i++)
            if (!x->rev[i]) {
                x->nfree--;
                x->spare_until = 0;
                t->ahint = de;
                return (uint32_t)(de * t->cpe + i);
            }
    }
    return UINT32_MAX;
}

/* ---- I/O -------------------------------------------------------------------- */
static int io_lock(struct thin *t, unsigned flags)
{
    if (flags & VD_IO_NOWAIT)
        return pthread_rwlock_tryrdlock(&t->io_lock) ? -EAGAIN : 0;
    pthread_rwlock_rdlock(&t->io_lock);
    return 0;
}

static int thin_pread(struct vd_vol *v, void *buf, size_t len, uint64_t off,
                      unsigned flags)
{
    struct thin *t = thin_of(v);
    uint64_t size = vd_vol_size(v);
    char *b = buf;
    int r;

    if (off > size || len > size - off)
        return -ERANGE;
    if (__atomic_load_n(&t->failed, __ATOMIC_ACQUIRE))
        return -EIO;
    if ((r = io_lock(t, flags)) < 0)
        return r;
    while (len && r == 0) {
        uint64_t vc = off >> t->cshift, within = off & (t->cs - 1);
        size_t n = len < t->cs - within ? len : t->cs - within;
        pthread_mutex_lock(&t->lock);
        uint32_t e = fwd_get(t, vc);
        bool m = e && !(e & F_PEND);
        if ((e & F_PEND) && t->ncow && (e = cow_old_locked(t, vc)))
            m = true; /* a copy-on-write in flight: the old data */
        /* one device call per run of physically consecutive chunks, one
         * memset per run of unmapped ones */
        for (uint64_t k = 1; n < len; k++) {
            uint32_t f = fwd_get(t, vc + k);
            if (m ? f != e + k : f && !(f & F_PEND))
                break;
            n += len - n < t->cs ? len - n : t->cs;
        }
        pthread_mutex_unlock(&t->lock);
        if (!m) {
            memset(b, 0, n);
        } else {
            vd_heat_count_lower(v, chunk_off(v, t, e - 1) + within, n, false);
            r = v->lops->pread(v, b, n, chunk_off(v, t, e - 1) + within,
                               flags & VD_IO_NOWAIT);
        }
        b += n;
        off += n;
        len -= n;
    }
    pthread_rwlock_unlock(&t->io_lock);
    return r;
}

/* Give back chunks allocated by a write that failed (lock held). */
static void undo_locked(struct thin *t, const uint64_t *vcs,
                        const uint32_t *pcs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct text *x = &t->ext[pcs[i] / t->cpe];
        fwd_set(t, vcs[i], 0);
        if (t->ncow)
            cow_end_locked(t, vcs[i], false);
        x->rev[pcs[i] % t->cpe] = 0;
        x->nfree++;
        t->nalloc--;
    }
    pthread_cond_broadcast(&t->cond);
}

static int thin_pwrite(struct vd_vol *v, const void *buf, size_t len,
                       uint64_t off, unsigned flags)
{
    struct thin *t = thin_of(v);
    uint64_t size = vd_vol_size(v), first, nch;
    uint32_t pc_st[16];
    uint64_t vc_st[16];
    uint32_t *npc = pc_st;
    uint64_t *nvc = vc_st;
    size_t nnew = 0;
    char *bounce = NULL;
    int r;

    if (off > size || len > size - off)
        return -ERANGE;
    if (!len)
        return 0;
    if (__atomic_load_n(&t->failed, __ATOMIC_ACQUIRE))
        return -EIO;
    if ((r = io_lock(t, flags)) < 0)
        return r;
    first = off >> t->cshift;
    nch = ((off + len - 1) >> t->cshift) - first + 1;
    if (nch > 16) {
        npc = malloc(nch * sizeof(*npc));
        nvc = malloc(nch * sizeof(*nvc));
        if (!npc || !nvc) {
            r = -ENOMEM;
            goto out;
        }
    }
    /* Map every chunk first: nothing is written when one cannot be had. */
    pthread_mutex_lock(&t->lock);
    for (;;) {
        bool wait = false, full = false;
        for (uint64_t vc = first; vc < first + nch && !wait; vc++)
            wait = fwd_get(t, vc) & F_PEND;
        if (wait) {
            if (flags & VD_IO_NOWAIT) {
                r = -EAGAIN;
                break;
            }
            pthread_cond_wait(&t->cond, &t->lock);
            continue;
        }
        for (uint64_t vc = first; vc < first + nch && r == 0; vc++) {
            uint32_t e = fwd_get(t, vc);
            /* a chunk a snapshot shares is copied, never written */
            bool shared =
                e && t->fam && t->ext[(e - 1) / t->cpe].sref[(e - 1) % t->cpe];
            if (e && !shared)
                continue;
            if (flags & VD_IO_NOWAIT) {
                r = -EAGAIN;
                break;
            }
            uint32_t pc = alloc_chunk_locked(t);
            if (pc == UINT32_MAX) {
                full = true;
                break;
            }
            if (shared && (r = cow_add_locked(t, vc, e - 1)) < 0) {
                t->ext[pc / t->cpe].nfree++;
                break;
            }
            if ((r = fwd_set(t, vc, (pc + 1) | F_PEND)) < 0) {
                t->ext[pc / t->cpe].nfree++;
                if (shared)
                    t->ncow--;
                break;
            }
            t->ext[pc / t->cpe].rev[pc % t->cpe] = (uint32_t)vc + 1;
            if (t->fam)
                t->ext[pc / t->cpe].cgen[pc % t->cpe] = t->gen;
            t->nalloc++;
            npc[nnew] = pc;
            nvc[nnew++] = vc;
        }
        if (r == 0 && !full)
            break;
        undo_locked(t, nvc, npc, nnew);
        nnew = 0;
        if (r < 0)
            break;
        pthread_mutex_unlock(&t->lock);
        r = grow_data(v, t);
        pthread_mutex_lock(&t->lock);
        if (r < 0)
            break;
    }
    pthread_mutex_unlock(&t->lock);
    if (r < 0)
        goto out;

    /* Data: new chunks whole (zero padded), others in place. */
    const char *b = buf;
    size_t k = 0;
    for (uint64_t vc = first; vc < first + nch && r == 0; vc++) {
        uint64_t within = vc == first ? off & (t->cs - 1) : 0;
        size_t n = len < t->cs - within ? len : t->cs - within;
        bool fresh = k < nnew && nvc[k] == vc;
        uint32_t pc;
        if (fresh) {
            pc = npc[k++];
        } else {
            pthread_mutex_lock(&t->lock);
            pc = fwd_get(t, vc) - 1; /* mapped: io_lock keeps it so */
            pthread_mutex_unlock(&t->lock);
        }
        uint64_t coff = chunk_off(v, t, pc);
        if (fresh && n != t->cs) {
            if (!bounce && !(bounce = malloc(t->cs))) {
                r = -ENOMEM;
                break;
            }
            uint32_t old = 0;
            if (t->ncow) {
                pthread_mutex_lock(&t->lock);
                old = cow_old_locked(t, vc);
                pthread_mutex_unlock(&t->lock);
            }
            /* copy-on-write: the untouched part from the shared chunk
             * (kept until the commit: a snapshot references it) */
            if (old)
                r = v->lops->pread(v, bounce, t->cs, chunk_off(v, t, old - 1),
                                   0);
            else
                memset(bounce, 0, t->cs);
            if (r < 0)
                break;
            memcpy(bounce + within, b, n);
            vd_heat_count_lower(v, coff, t->cs, true);
            r = v->lops->pwrite(v, bounce, t->cs, coff, 0);
        } else {
            vd_heat_count_lower(v, coff + within, n, true);
            r = v->lops->pwrite(v, b, n, coff + within,
                                fresh ? 0 : flags & (VD_IO_FUA | VD_IO_NOWAIT));
        }
        b += n;
        len -= n;
    }
    if (nnew && t->ncow)
        CRASH_POINT("cow-data-written");
    if (r < 0 && nnew) {
        pthread_mutex_lock(&t->lock);
        undo_locked(t, nvc, npc, nnew);
        pthread_mutex_unlock(&t->lock);
    } else if (nnew) {
        struct twait w;
        pthread_mutex_lock(&t->lock);
        enqueue_locked(t, &w, npc, nnew);
        r = wait_locked(v, t, &w);
        pthread_mutex_unlock(&t->lock);
    }
out:
    pthread_rwlock_unlock(&t->io_lock);
    free(bounce);
    if (npc != pc_st)
        free(npc);
    if (nvc != vc_st)
        free(nvc);
    return r;
}

static int thin_flush(struct vd_vol *v)
{
    return v->lops->flush(v);
}

static int thin_discard(struct vd_vol *v, uint64_t off, uint64_t len)
{
    struct thin *t = thin_of(v);
    uint64_t fc = vd_div_up(off, t->cs), lc = (off + len) >> t->cshift;
    uint32_t *pcs = NULL;
    size_t n = 0, cap = 0;
    int r = 0;

    if (fc >= lc)
        return 0;
    pthread_mutex_lock(&t->lock);
    bool snaps = t->nsnaps > 0;
    pthread_mutex_unlock(&t->lock);
    if (snaps) {
        /* Freeing a chunk would let an older generation's entry for the
         * same virtual chunk (a snapshot's) show through after a reopen:
         * with snapshots, a discard writes zeroes (copy-on-write where
         * shared).  Reads return zeroes either way. */
        char *z = calloc(1, t->cs);
        if (!z)
            return -ENOMEM;
        for (uint64_t vc = fc; vc < lc && r == 0; vc++) {
            pthread_mutex_lock(&t->lock);
            bool m = fwd_get(t, vc) != 0;
            pthread_mutex_unlock(&t->lock);
            if (m)
                r = thin_pwrite(v, z, t->cs, vc << t->cshift, 0);
        }
        free(z);
        return r;
    }
    pthread_rwlock_wrlock(&t->io_lock); /* no I/O of these chunks in flight */
    pthread_mutex_lock(&t->lock);
    if (t->failed) {
        pthread_mutex_unlock(&t->lock);
        pthread_rwlock_unlock(&t->io_lock);
        return -EIO;
    }
    for (uint64_t vc = fc; vc < lc; vc++) {
        if (!t->dir[vc >> LEAF_SHIFT]) {
            vc |= LEAF_N - 1;
            continue;
        }
        uint32_t e = fwd_get(t, vc);
        if (!e)
            continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 64;
            uint32_t *np = realloc(pcs, nc * sizeof(*np));
            if (!np) {
                r = -ENOMEM;
                break;
            }
            pcs = np;
            cap = nc;
        }
        uint32_t pc = (e & ~F_PEND) - 1;
        fwd_set(t, vc, 0);
        t->ext[pc / t->cpe].rev[pc % t->cpe] = R_FREEING;
        t->nalloc--;
        pcs[n++] = pc | F_FREE;
    }
    /* Queued before io_lock is released: a later first write of these
     * virtual chunks commits in this group or a later one, so the map
     * never shows the old and the new chunk with the same seq. */
    /* Nothing to free here may still need a commit: an earlier discard of
     * these chunks in flight, or one whose commit failed (dirty blocks,
     * limbo): this one is acknowledged only after a later group. */
    struct twait w;
    bool wait =
        n || t->queue || t->committing || t->mapped || t->ndirty || t->nlimbo;
    if (wait)
        enqueue_locked(t, &w, pcs, n);
    pthread_mutex_unlock(&t->lock);
    pthread_rwlock_unlock(&t->io_lock);
    if (wait) {
        pthread_mutex_lock(&t->lock);
        int c = wait_locked(v, t, &w);
        pthread_mutex_unlock(&t->lock);
        if (r == 0)
            r = c;
    }
    free(pcs);
    return r;
}

static int thin_lba_status(struct vd_vol *v, uint64_t off, uint64_t *len,
                           int *mapped)
{
    struct thin *t = thin_of(v);
    uint64_t size = vd_vol_size(v), vc, end;

    if (off >= size)
        return -ERANGE;
    if (__atomic_load_n(&t->failed, __ATOMIC_ACQUIRE))
        return -EIO;
    pthread_mutex_lock(&t->lock);
    vc = off >> t->cshift;
    uint32_t e = fwd_get(t, vc);
    int m = e && !(e & F_PEND);
    if ((e & F_PEND) && t->ncow && cow_old_locked(t, vc))
        m = 1; /* a copy-on-write in flight: still the old chunk */
    for (end = vc + 1; end < t->vchunks; end++) {
        if (!m && !t->dir[end >> LEAF_SHIFT]) {
            end |= LEAF_N - 1;
            continue;
        }
        uint32_t f = fwd_get(t, end);
        if ((f && !(f & F_PEND)) != m)
            break;
    }
    if (end > t->vchunks)
        end = t->vchunks;
    pthread_mutex_unlock(&t->lock);
    *mapped = m;
    *len = ((end << t->cshift) < size ? end << t->cshift : size) - off;
    return 0;
}

/* ---- snapshot operations (pool/snap.c; admin thread, no lock held) ------- */
/* Lock order for all of them: io_lock exclusive (the volume's writes
 * quiesced: none in flight, none pending), then the admin lock, then the
 * thin lock; the frees a record causes are committed after both are
 * released. */
static struct thin *fam_of(struct vd_vol *v)
{
    if (v->upper != &vd_thin_layout) {
        vd_log(VD_LOG_ERR,
               "volume '%s/%s': not a thin volume: snapshots need one "
               "(vdlvm vol create --thin)",
               v->pool->name, v->name);
        return NULL;
    }
    if (!thin_of(v)->fam) {
        vd_log(VD_LOG_ERR,
               "volume '%s/%s': its chunk map predates snapshots (vdlvm "
               "before snapshots existed); copy it to a new thin volume to "
               "take "
               "snapshots",
               v->pool->name, v->name);
        return NULL;
    }
    return thin_of(v);
}

bool vd_thin_is_family(struct vd_vol *v)
{
    return v->upper == &vd_thin_layout && thin_of(v)->fam;
}

/* Write the frees of released chunks (limbo) now. */
static int commit_frees(struct vd_vol *v, struct thin *t)
{
    int r = 0;
    pthread_mutex_lock(&t->lock);
    if (!t->failed && (t->ndirty || t->nlimbo)) {
        struct twait w;
        enqueue_locked(t, &w, NULL, 0);
        r = wait_locked(v, t, &w);
    }
    pthread_mutex_unlock(&t->lock);
    return r;
}

static int snap_commit(struct vd_vol *v, struct vd_op_snap *o)
{
    struct vd_opbuf ops = { 0 };
    o->h.h.len = sizeof(*o);
    o->h.vol = v->id;
    int r = vd_opbuf_add(&ops, o, sizeof(*o));
    if (r == 0)
        r = vd_md_commit(v->pool, &ops);
    vd_opbuf_free(&ops);
    return r;
}

int vd_thin_snap_create(struct vd_vol *v, const char *name)
{
    struct thin *t = fam_of(v);
    vd_pool *p = v->pool;
    struct vd_op_snap o = { .h.h.type = VD_OP_SNAP_CREATE };
    int r;

    if (!t)
        return -EINVAL;
    pthread_rwlock_wrlock(&t->io_lock);
    /* every write acknowledged so far durable in the chunks the snapshot
     * keeps (the head copies them from now on) */
    r = v->lops->flush(v);
    vd_admin_lock(p);
    pthread_mutex_lock(&t->lock);
    if (r == 0 && t->failed)
        r = -EIO;
    if (r == 0 && snap_find_name(t, name)) {
        vd_log(VD_LOG_ERR,
               "snapshot '%s/%s@%s': exists already; list them with 'vdlvm "
               "snap list %s/%s'",
               p->name, v->name, name, p->name, v->name);
        r = -EEXIST;
    }
    if (r == 0 && t->nsnaps >= VD_SNAP_MAX) {
        vd_log(VD_LOG_ERR,
               "volume '%s/%s': has %u snapshots, the most a volume can "
               "have; remove one first",
               p->name, v->name, VD_SNAP_MAX);
        r = -ENOSPC;
    }
    if (r == 0) {
        uint32_t id = 0;
        for (size_t i = 0; i < t->nsnaps; i++)
            if (t->snaps[i]->id > id)
                id = t->snaps[i]->id;
        o.id = id + 1;
        o.gen = t->gen;
        o.ngen = t->maxgen + 1;
        o.size = v->size;
        o.ctime = time(NULL);
        vd_name_copy(o.name, sizeof(o.name), name);
        t->nprep = vd_div_up(o.size >> t->cshift, LEAF_N);
        if (!(t->prep = dir_copy(t->dir, t->ndir, t->nprep)))
            r = -ENOMEM;
    }
    pthread_mutex_unlock(&t->lock);
    if (r == 0)
        CRASH_POINT("create-before-record");
    if (r == 0)
        r = snap_commit(v, &o);
    if (r == 0)
        CRASH_POINT("create-after-record");
    pthread_mutex_lock(&t->lock);
    dir_free(t->prep, t->nprep); /* left when the commit failed */
    t->prep = NULL;
    pthread_mutex_unlock(&t->lock);
    vd_admin_unlock(p);
    pthread_rwlock_unlock(&t->io_lock);
    return r;
}

int vd_thin_snap_remove(struct vd_vol *v, const char *name)
{
    struct thin *t = fam_of(v);
    vd_pool *p = v->pool;
    struct vd_op_snap o = { .h.h.type = VD_OP_SNAP_REMOVE };
    int r = 0;

    if (!t)
        return -EINVAL;
    pthread_rwlock_wrlock(&t->io_lock);
    vd_admin_lock(p);
    pthread_mutex_lock(&t->lock);
    struct tsnap *s = snap_find_name(t, name);
    if (!s) {
        vd_log(VD_LOG_ERR,
               "snapshot '%s/%s@%s': not found; list them with 'vdlvm snap "
               "list %s/%s'",
               p->name, v->name, name, p->name, v->name);
        r = -ENOENT;
    } else if (s->opens) {
        vd_log(VD_LOG_ERR,
               "snapshot '%s/%s@%s': in use (exported); delete its LUN first",
               p->name, v->name, name);
        r = -EBUSY;
    } else {
        o.id = s->id;
    }
    pthread_mutex_unlock(&t->lock);
    if (r == 0)
        r = snap_commit(v, &o);
    if (r == 0)
        CRASH_POINT("remove-after-record");
    vd_admin_unlock(p);
    pthread_rwlock_unlock(&t->io_lock);
    if (r == 0)
        commit_frees(v, t); /* else at the next commit or reopen */
    if (r == 0) {
        vd_admin_lock(p);
        vd_pool_check_thresholds(p);
        vd_admin_unlock(p);
    }
    return r;
}

int vd_thin_snap_revert(struct vd_vol *v, const char *name, bool force)
{
    struct thin *t = fam_of(v);
    vd_pool *p = v->pool;
    struct vd_op_snap o = { .h.h.type = VD_OP_SNAP_REVERT };
    int r = 0;

    if (!t)
        return -EINVAL;
    pthread_rwlock_wrlock(&t->io_lock);
    vd_admin_lock(p);
    pthread_mutex_lock(&t->lock);
    struct tsnap *s = snap_find_name(t, name);
    if (!s) {
        vd_log(VD_LOG_ERR,
               "snapshot '%s/%s@%s': not found; list them with 'vdlvm snap "
               "list %s/%s'",
               p->name, v->name, name, p->name, v->name);
        r = -ENOENT;
    } else if (v->open_count && !force) {
        vd_log(VD_LOG_ERR,
               "volume '%s/%s': exported: reverting changes its content "
               "under the initiator (a mounted filesystem sees its blocks "
               "change at once and may corrupt itself); stop the initiator "
               "and delete the LUN first, or use --force",
               p->name, v->name);
        r = -EBUSY;
    } else if (t->failed) {
        r = -EIO;
    } else {
        o.id = s->id;
        o.ngen = t->maxgen + 1;
        o.size = s->size;
        t->nprep = t->ndir;
        if (!(t->prep = dir_copy(s->dir, s->ndir, t->ndir)))
            r = -ENOMEM;
    }
    pthread_mutex_unlock(&t->lock);
    if (r == 0)
        r = snap_commit(v, &o);
    if (r == 0)
        CRASH_POINT("revert-after-record");
    pthread_mutex_lock(&t->lock);
    dir_free(t->prep, t->nprep);
    t->prep = NULL;
    pthread_mutex_unlock(&t->lock);
    vd_admin_unlock(p);
    pthread_rwlock_unlock(&t->io_lock);
    if (r == 0)
        commit_frees(v, t);
    return r;
}

int vd_thin_snap_count(struct vd_vol *v)
{
    if (v->upper != &vd_thin_layout)
        return 0;
    struct thin *t = thin_of(v);
    int n = 0;
    pthread_mutex_lock(&t->lock);
    for (size_t i = 0; i < t->nsnaps; i++)
        n += !t->snaps[i]->clone;
    pthread_mutex_unlock(&t->lock);
    return n;
}

bool vd_thin_has_snap(struct vd_vol *v, const char *name)
{
    if (v->upper != &vd_thin_layout || !thin_of(v)->fam)
        return false;
    struct thin *t = thin_of(v);
    pthread_mutex_lock(&t->lock);
    bool hit = snap_find_name(t, name) != NULL;
    pthread_mutex_unlock(&t->lock);
    return hit;
}

/* A new family volume's head is generation 1, the highest (thin_stack):
 * its first snapshot freezes 1 and moves the head to 2.  Applied in the
 * create's own commit, before ctr (t->loaded false), exactly as a replay
 * applies it, so ctr builds the (empty) snapshot's map. */
int vd_thin_first_snap_op(const struct vd_op_vol *ov, const char *name,
                          struct vd_opbuf *ops)
{
    struct vd_op_snap o = { .h.h.type = VD_OP_SNAP_CREATE };
    o.h.h.len = sizeof(o);
    o.h.vol = ov->id;
    o.id = 1;
    o.gen = 1;
    o.ngen = 2;
    o.size = ov->size;
    o.ctime = time(NULL);
    vd_name_copy(o.name, sizeof(o.name), name);
    return vd_opbuf_add(ops, &o, sizeof(o));
}

/* Chunks only snapshot s holds (freed by its removal).  Lock held. */
static uint64_t snap_exclusive_locked(const struct thin *t,
                                      const struct tsnap *s)
{
    uint64_t n = 0;
    for (uint64_t vc = 0; s->dir && vc < (s->size >> t->cshift); vc++) {
        if (!s->dir[vc >> LEAF_SHIFT]) {
            vc |= LEAF_N - 1;
            continue;
        }
        uint32_t e = leaf_get(s->dir, vc);
        if (e && t->ext[(e - 1) / t->cpe].sref[(e - 1) % t->cpe] == 1 &&
            (fwd_get(t, vc) & ~F_PEND) != e)
            n++;
    }
    return n;
}

int vd_thin_snap_list(struct vd_vol *v, struct vd_snap_info **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (!vd_thin_is_family(v))
        return 0;
    struct thin *t = thin_of(v);
    pthread_mutex_lock(&t->lock);
    struct vd_snap_info *a = calloc(t->nsnaps ? t->nsnaps : 1, sizeof(*a));
    if (!a) {
        pthread_mutex_unlock(&t->lock);
        return -ENOMEM;
    }
    size_t k = 0;
    for (size_t i = 0; i < t->nsnaps; i++) {
        const struct tsnap *s = t->snaps[i];
        if (s->clone)
            continue;
        a[k].id = s->id;
        vd_name_copy(a[k].name, sizeof(a[k].name), s->name);
        a[k].size = s->size;
        a[k].ctime = s->ctime;
        a[k].exclusive = snap_exclusive_locked(t, s) << t->cshift;
        a[k++].exported = s->opens > 0;
    }
    *n = k;
    pthread_mutex_unlock(&t->lock);
    *out = a;
    return 0;
}

/* Open / close a snapshot for reading (admin lock held). */
int vd_thin_snap_open(struct vd_vol *v, const char *name, void **h,
                      uint64_t *size)
{
    if (!vd_thin_is_family(v))
        return -ENOENT;
    struct thin *t = thin_of(v);
    pthread_mutex_lock(&t->lock);
    struct tsnap *s = snap_find_name(t, name);
    if (s) {
        s->opens++;
        *h = s;
        *size = s->size;
    }
    pthread_mutex_unlock(&t->lock);
    return s ? 0 : -ENOENT;
}

void vd_thin_snap_close(struct vd_vol *v, void *h)
{
    struct thin *t = thin_of(v);
    pthread_mutex_lock(&t->lock);
    struct tsnap *s = h;
    if (s->opens)
        s->opens--;
    pthread_mutex_unlock(&t->lock);
}

/* Read an open snapshot (h from vd_thin_snap_open: it cannot be removed
 * while open): one lookup per chunk in its own map, like the head. */
int vd_thin_snap_pread(struct vd_vol *v, void *h, void *buf, size_t len,
                       uint64_t off, unsigned flags)
{
    struct thin *t = thin_of(v);
    const struct tsnap *s = h;
    char *b = buf;
    int r;

    if (__atomic_load_n(&t->failed, __ATOMIC_ACQUIRE))
        return -EIO;
    if ((r = io_lock(t, flags)) < 0)
        return r;
    while (len && r == 0) {
        uint64_t vc = off >> t->cshift, within = off & (t->cs - 1);
        size_t n = len < t->cs - within ? len : t->cs - within;
        uint32_t e = 0;
        pthread_mutex_lock(&t->lock);
        if (off > s->size || n > s->size - off)
            r = -ERANGE;
        else
            e = leaf_get(s->dir, vc);
        if (e & F_PEND) /* a clone's write in flight: the old data */
            e = clone_cow_old_locked((struct tsnap *)s, vc, false);
        pthread_mutex_unlock(&t->lock);
        if (r < 0)
            break;
        if (!e) {
            memset(b, 0, n);
        } else {
            vd_heat_count_lower(v, chunk_off(v, t, e - 1) + within, n, false);
            r = v->lops->pread(v, b, n, chunk_off(v, t, e - 1) + within,
                               flags & VD_IO_NOWAIT);
        }
        b += n;
        off += n;
        len -= n;
    }
    pthread_rwlock_unlock(&t->io_lock);
    return r;
}

/* Verify every reference (pool check): each member's map names chunks
 * whose reverse entry names the same virtual chunk, the snapshots'
 * reference counts equal their maps' references, and no allocated chunk
 * is referenced by no one (a leak); repair frees leaks.  reclaimed: the
 * chunks the open found referenced by no one (an interrupted write or
 * removal: crash recovery, not a defect); repair (and any later commit)
 * writes them free. */
int vd_thin_check(struct vd_vol *v, bool repair, uint64_t *leaked,
                  uint64_t *bad, uint64_t *reclaimed)
{
    struct thin *t = thin_of(v);
    int r = 0;

    *leaked = *bad = *reclaimed = 0;
    if (v->upper != &vd_thin_layout)
        return 0;
    pthread_rwlock_wrlock(&t->io_lock);
    pthread_mutex_lock(&t->lock);
    if (t->failed) {
        pthread_mutex_unlock(&t->lock);
        pthread_rwlock_unlock(&t->io_lock);
        return -EIO;
    }
    uint32_t *cnt = NULL;
    uint64_t nch = (uint64_t)t->next * t->cpe;
    if (t->fam && !(cnt = calloc(nch ? nch : 1, 4))) {
        pthread_mutex_unlock(&t->lock);
        pthread_rwlock_unlock(&t->io_lock);
        return -ENOMEM;
    }
    for (size_t m = 0; m <= t->nsnaps; m++) {
        bool head = m == t->nsnaps;
        uint32_t *const *dir = head ? t->dir : t->snaps[m]->dir;
        uint64_t vch = head ? t->vchunks : t->snaps[m]->size >> t->cshift;
        for (uint64_t vc = 0; t->fam && vc < vch; vc++) {
            if (!dir[vc >> LEAF_SHIFT]) {
                vc |= LEAF_N - 1;
                continue;
            }
            uint32_t e = leaf_get(dir, vc) & ~F_PEND;
            if (!e)
                continue;
            uint32_t pc = e - 1;
            if (pc >= nch || t->ext[pc / t->cpe].rev[pc % t->cpe] != vc + 1) {
                vd_log(VD_LOG_ERR,
                       "volume '%s/%s': %s%s maps virtual chunk %" PRIu64
                       " to chunk %u, whose map entry disagrees",
                       v->pool->name, v->name,
                       head ? "the volume" : "snapshot ",
                       head ? "" : t->snaps[m]->name, vc, pc);
                ++*bad;
                continue;
            }
            if (!head)
                cnt[pc]++;
        }
    }
    for (uint64_t de = 0; de < t->next; de++) {
        struct text *x = &t->ext[de];
        for (uint32_t i = t->rsv; x->state == X_LIVE && i < t->cpe; i++) {
            uint32_t val = x->rev[i], pc = (uint32_t)(de * t->cpe + i);
            if (!val || val == R_FREEING)
                continue;
            bool inhead = (fwd_get(t, val - 1) & ~F_PEND) == pc + 1 ||
                          cow_old_locked(t, val - 1) == pc + 1;
            if (t->fam && cnt[pc] != x->sref[i]) {
                vd_log(VD_LOG_ERR,
                       "volume '%s/%s': chunk %u: reference count %u, "
                       "referenced by %u snapshot(s)",
                       v->pool->name, v->name, pc, x->sref[i], cnt[pc]);
                ++*bad;
            }
            if (!inhead && !(t->fam && cnt[pc])) {
                ++*leaked;
                if (repair) {
                    if (t->fam)
                        x->sref[i] = 0;
                    release_locked(t, pc);
                }
            }
        }
    }
    free(cnt);
    *reclaimed = t->reclaimed;
    pthread_mutex_unlock(&t->lock);
    pthread_rwlock_unlock(&t->io_lock);
    if (repair)
        r = commit_frees(v, t);
    return r;
}

const struct vd_layout_ops vd_thin_layout = {
    .name = "thin",
    .id = VD_LAYOUT_THIN,
    .meta_extents = 0,
    .stack_on = VD_LAYOUT_LINEAR,
    .check = thin_check,
    .plan = thin_plan,
    .plan_extend = thin_plan_extend,
    .fini = thin_fini,
    .ctr = thin_ctr,
    .grow = thin_grow,
    .pread = thin_pread,
    .pwrite = thin_pwrite,
    .flush = thin_flush,
    .discard = thin_discard,
    .lba_status = thin_lba_status,
    .md_apply = thin_md_apply,
    .md_serialize = thin_md_serialize,
    .status = thin_status,
    .tick = thin_tick,
    .quiesce = thin_quiesce,
    .stack = thin_stack,
};

/* vdpool.h (issue 11, `status`): the head's chunks no snapshot shares and
 * the ones it shares.  Admin lock, then thin's lock (the order of every
 * admin call); O(touched forward leaves). */
int vd_vol_get_sharing(const vd_pool *p, const char *name, uint64_t *exclusive,
                       uint64_t *shared)
{
    uint64_t ex = 0, sh = 0;
    int r = 0;

    vd_admin_lock((vd_pool *)p);
    struct vd_vol *v = vd_vol_find(p, name);
    if (!v) {
        r = -ENOENT;
    } else if (v->upper != &vd_thin_layout) {
        r = -EINVAL;
    } else {
        struct thin *t = thin_of(v);
        pthread_mutex_lock(&t->lock);
        for (uint64_t vc = 0; vc < t->vchunks; vc++) {
            if (!t->dir[vc >> LEAF_SHIFT]) {
                vc |= LEAF_N - 1;
                continue;
            }
            uint32_t e = fwd_get(t, vc) & ~F_PEND;
            if (!e)
                continue;
            const struct text *x = &t->ext[(e - 1) / t->cpe];
            if (t->fam && x->sref && x->sref[(e - 1) % t->cpe])
                sh++;
            else
                ex++;
        }
        *exclusive = ex << t->cshift;
        *shared = sh << t->cshift;
        pthread_mutex_unlock(&t->lock);
    }
    vd_admin_unlock((vd_pool *)p);
    return r;
}

/* ---- clones: writable members (pool/snap.c has the design) --------------- */
static int clone_apply_locked(struct vd_vol *v, struct thin *t,
                              const struct vd_op_snap_clone *c)
{
    const struct vd_op_snap *o = &c->s;
    struct tsnap *src = NULL, *s;
    int r;

    if (o->h.h.len < sizeof(*c) || !o->id || snap_find_id(t, o->id) ||
        clone_find_name(t, o->name) || !o->name[0] ||
        t->nsnaps >= VD_SNAP_MAX ||
        (c->src && !(src = snap_find_id(t, c->src)))) {
        vd_log(VD_LOG_ERR,
               "pool '%s': volume '%s': clone %u '%s' malformed, duplicate, "
               "one too many or of an unknown member %u",
               v->pool->name, v->name, o->id, o->name, c->src);
        return -EINVAL;
    }
    bool moves = !src || src->clone; /* a writable source freezes */
    if (o->gen != (src ? src->gen : t->gen) || o->ngen <= t->maxgen ||
        o->size != (src ? src->size : v->size)) {
        vd_log(VD_LOG_ERR,
               "pool '%s': volume '%s': clone '%s' names generation %u/%u "
               "(source %u, last %u) or size %" PRIu64,
               v->pool->name, v->name, o->name, o->gen, o->ngen,
               src ? src->gen : t->gen, t->maxgen, o->size);
        return -EINVAL;
    }
    struct tsnap **sa = realloc(t->snaps, (t->nsnaps + 1) * sizeof(*sa));
    if (!sa)
        return -ENOMEM;
    t->snaps = sa;
    if (!(s = calloc(1, sizeof(*s))))
        return -ENOMEM;
    if ((r = node_add(t, o->ngen, o->gen)) < 0 ||
        (moves && (r = node_add(t, o->ngen + 1, o->gen)) < 0)) {
        free(s);
        return r; /* a node no member descends from: pruned later */
    }
    s->id = o->id;
    s->gen = o->ngen;
    s->size = o->size;
    s->ctime = o->ctime;
    s->clone = true;
    vd_name_copy(s->name, sizeof(s->name), o->name);
    t->snaps[t->nsnaps++] = s;
    if (moves) {
        if (src)
            src->gen = o->ngen + 1;
        else
            t->gen = o->ngen + 1;
    }
    if (!t->loaded)
        return 0;
    /* live: the source's map, prepared before the commit */
    s->ndir = vd_div_up(s->size >> t->cshift, LEAF_N);
    if (t->prep && t->nprep == s->ndir) {
        s->dir = t->prep;
        t->prep = NULL;
    } else if (!(s->dir = dir_copy(src ? src->dir : t->dir,
                                   src ? src->ndir : t->ndir, s->ndir))) {
        t->failed = true; /* RAM only: the pool must be reopened */
        return -ENOMEM;
    }
    for (uint64_t vc = 0; vc < (s->size >> t->cshift); vc++) {
        if (!s->dir[vc >> LEAF_SHIFT]) {
            vc |= LEAF_N - 1;
            continue;
        }
        uint32_t e = leaf_get(s->dir, vc);
        if (e)
            t->ext[(e - 1) / t->cpe].sref[(e - 1) % t->cpe]++;
    }
    return 0;
}

/* gen is anc or descends from it (lock held). */
static bool gen_descends(const struct thin *t, uint32_t gen, uint32_t anc)
{
    for (size_t hops = 0; gen && hops <= t->nnodes; hops++) {
        if (gen == anc)
            return true;
        const struct tnode *n = node_find(t, gen);
        gen = n ? n->parent : 0;
    }
    return false;
}

int vd_thin_clone_count(struct vd_vol *v)
{
    if (v->upper != &vd_thin_layout)
        return 0;
    struct thin *t = thin_of(v);
    int n = 0;
    pthread_mutex_lock(&t->lock);
    for (size_t i = 0; i < t->nsnaps; i++)
        n += t->snaps[i]->clone;
    pthread_mutex_unlock(&t->lock);
    return n;
}

int vd_thin_clone_create(struct vd_vol *v, const char *src, bool src_clone,
                         const char *name)
{
    struct thin *t = fam_of(v);
    vd_pool *p = v->pool;
    struct vd_op_snap_clone c;
    struct tsnap *s = NULL;
    int r;

    if (!t)
        return -EINVAL;
    memset(&c, 0, sizeof(c));
    pthread_rwlock_wrlock(&t->io_lock);
    /* a writable source: every write acknowledged so far durable in the
     * chunks the clone shares (the source copies them from now on) */
    r = v->lops->flush(v);
    vd_admin_lock(p);
    pthread_mutex_lock(&t->lock);
    if (r == 0 && t->failed)
        r = -EIO;
    if (r == 0 && src &&
        !(s = src_clone ? clone_find_name(t, src) : snap_find_name(t, src))) {
        vd_log(VD_LOG_ERR, "%s '%s/%s%s%s': not found",
               src_clone ? "clone" : "snapshot", p->name,
               src_clone ? "" : v->name, src_clone ? "" : "@", src);
        r = -ENOENT;
    }
    if (r == 0 && clone_find_name(t, name)) {
        vd_log(VD_LOG_ERR, "volume '%s/%s': exists already", p->name, name);
        r = -EEXIST;
    }
    if (r == 0 && t->nsnaps >= VD_SNAP_MAX) {
        vd_log(VD_LOG_ERR,
               "volume '%s/%s': has %u snapshots and clones, the most a "
               "volume can have; remove one first",
               p->name, v->name, VD_SNAP_MAX);
        r = -ENOSPC;
    }
    if (r == 0) {
        uint32_t id = 0;
        for (size_t i = 0; i < t->nsnaps; i++)
            if (t->snaps[i]->id > id)
                id = t->snaps[i]->id;
        c.s.h.h.type = VD_OP_SNAP_CLONE;
        c.s.h.h.len = sizeof(c);
        c.s.h.vol = v->id;
        c.s.id = id + 1;
        c.s.gen = s ? s->gen : t->gen;
        c.s.ngen = t->maxgen + 1;
        c.s.size = s ? s->size : v->size;
        c.s.ctime = time(NULL);
        vd_name_copy(c.s.name, sizeof(c.s.name), name);
        c.src = s ? s->id : 0;
        c.flags = VD_SNAPF_CLONE;
        t->nprep = vd_div_up(c.s.size >> t->cshift, LEAF_N);
        if (!(t->prep = dir_copy(s ? s->dir : t->dir, s ? s->ndir : t->ndir,
                                 t->nprep)))
            r = -ENOMEM;
    }
    pthread_mutex_unlock(&t->lock);
    if (r == 0)
        CRASH_POINT("clone-before-record");
    if (r == 0) {
        struct vd_opbuf ops = { 0 };
        r = vd_opbuf_add(&ops, &c, sizeof(c));
        if (r == 0)
            r = vd_md_commit(p, &ops);
        vd_opbuf_free(&ops);
    }
    if (r == 0)
        CRASH_POINT("clone-after-record");
    pthread_mutex_lock(&t->lock);
    dir_free(t->prep, t->nprep); /* left when the commit failed */
    t->prep = NULL;
    pthread_mutex_unlock(&t->lock);
    vd_admin_unlock(p);
    pthread_rwlock_unlock(&t->io_lock);
    return r;
}

int vd_thin_clone_remove(struct vd_vol *v, const char *name)
{
    struct thin *t = fam_of(v);
    vd_pool *p = v->pool;
    struct vd_op_snap o = { .h.h.type = VD_OP_SNAP_REMOVE };
    int r = 0;

    if (!t)
        return -EINVAL;
    pthread_rwlock_wrlock(&t->io_lock);
    vd_admin_lock(p);
    pthread_mutex_lock(&t->lock);
    struct tsnap *s = clone_find_name(t, name);
    if (!s) {
        vd_log(VD_LOG_ERR, "volume '%s/%s': not found", p->name, name);
        r = -ENOENT;
    } else if (s->opens) {
        vd_log(VD_LOG_ERR,
               "volume '%s/%s': in use (exported); delete its LUN first",
               p->name, name);
        r = -EBUSY;
    } else {
        o.id = s->id;
    }
    pthread_mutex_unlock(&t->lock);
    if (r == 0)
        r = snap_commit(v, &o);
    if (r == 0)
        CRASH_POINT("clone-remove-after-record");
    vd_admin_unlock(p);
    pthread_rwlock_unlock(&t->io_lock);
    if (r == 0)
        commit_frees(v, t);
    if (r == 0) {
        vd_admin_lock(p);
        vd_pool_check_thresholds(p);
        vd_admin_unlock(p);
    }
    return r;
}

/* Admin lock held. */
int vd_thin_clone_open(struct vd_vol *v, const char *name, void **h,
                       uint64_t *size)
{
    if (!vd_thin_is_family(v))
        return -ENOENT;
    struct thin *t = thin_of(v);
    pthread_mutex_lock(&t->lock);
    struct tsnap *s = clone_find_name(t, name);
    if (s) {
        s->opens++;
        *h = s;
        *size = s->size;
    }
    pthread_mutex_unlock(&t->lock);
    return s ? 0 : -ENOENT;
}

/* Clone c's pending write of vc replaces chunk old (pc + 1). */
static int clone_cow_add_locked(struct tsnap *c, uint64_t vc, uint32_t old)
{
    if (c->ncow == c->ccap) {
        size_t nc = c->ccap ? c->ccap * 2 : 16;
        struct tcow *n = realloc(c->cow, nc * sizeof(*n));
        if (!n)
            return -ENOMEM;
        c->cow = n;
        c->ccap = nc;
    }
    c->cow[c->ncow++] = (struct tcow){ vc, old };
    return 0;
}

/* The chunk (pc + 1) a pending write of vc replaces, 0 if none; del:
 * forget it. */
static uint32_t clone_cow_old_locked(struct tsnap *c, uint64_t vc, bool del)
{
    for (size_t i = 0; i < c->ncow; i++) {
        if (c->cow[i].vc != vc)
            continue;
        uint32_t old = c->cow[i].old;
        if (del)
            c->cow[i] = c->cow[--c->ncow];
        return old;
    }
    return 0;
}

/* Clone c no longer names chunk pc (its vc): free it when no one does. */
static void clone_unref_locked(struct thin *t, uint32_t pc, uint64_t vc)
{
    struct text *x = &t->ext[pc / t->cpe];
    if (--x->sref[pc % t->cpe] == 0 && (fwd_get(t, vc) & ~F_PEND) != pc + 1 &&
        cow_old_locked(t, vc) != pc + 1)
        release_locked(t, pc);
}

static void clone_undo_locked(struct thin *t, struct tsnap *c,
                              const uint64_t *vcs, const uint32_t *pcs,
                              const uint32_t *olds, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct text *x = &t->ext[pcs[i] / t->cpe];
        leaf_set(c->dir, vcs[i], olds[i]);
        clone_cow_old_locked(c, vcs[i], true);
        x->rev[pcs[i] % t->cpe] = 0;
        x->nfree++;
    }
    pthread_cond_broadcast(&t->cond);
}

/* Write clone h (from vd_thin_clone_open): a chunk only it names (its
 * generation, one reference) is written in place; any other is copied
 * into a new chunk of its generation, committed before the write is
 * acknowledged, as the head's copy-on-write (thin_pwrite). */
int vd_thin_clone_pwrite(struct vd_vol *v, void *h, const void *buf, size_t len,
                         uint64_t off, unsigned flags)
{
    struct thin *t = thin_of(v);
    struct tsnap *c = h;
    uint64_t first, nch;
    uint32_t pc_st[16], old_st[16];
    uint64_t vc_st[16];
    uint32_t *npc = pc_st, *nold = old_st;
    uint64_t *nvc = vc_st;
    size_t nnew = 0;
    char *bounce = NULL;
    int r;

    if (off > c->size || len > c->size - off)
        return -ERANGE;
    if (!len)
        return 0;
    if (__atomic_load_n(&t->failed, __ATOMIC_ACQUIRE))
        return -EIO;
    if ((r = io_lock(t, flags)) < 0)
        return r;
    first = off >> t->cshift;
    nch = ((off + len - 1) >> t->cshift) - first + 1;
    if (nch > 16) {
        npc = malloc(nch * sizeof(*npc));
        nold = malloc(nch * sizeof(*nold));
        nvc = malloc(nch * sizeof(*nvc));
        if (!npc || !nold || !nvc) {
            r = -ENOMEM;
            goto out;
        }
    }
    pthread_mutex_lock(&t->lock);
    for (;;) {
        bool wait = false, full = false;
        for (uint64_t vc = first; vc < first + nch && !wait; vc++)
            wait = leaf_get(c->dir, vc) & F_PEND;
        if (wait) {
            if (flags & VD_IO_NOWAIT) {
                r = -EAGAIN;
                break;
            }
            pthread_cond_wait(&t->cond, &t->lock);
            continue;
        }
        for (uint64_t vc = first; vc < first + nch && r == 0; vc++) {
            uint32_t e = leaf_get(c->dir, vc);
            if (e) {
                const struct text *x = &t->ext[(e - 1) / t->cpe];
                uint32_t i = (e - 1) % t->cpe;
                if (x->cgen[i] == c->gen && x->sref[i] == 1)
                    continue; /* its own: in place */
            }
            if (flags & VD_IO_NOWAIT) {
                r = -EAGAIN;
                break;
            }
            uint32_t pc = alloc_chunk_locked(t);
            if (pc == UINT32_MAX) {
                full = true;
                break;
            }
            if ((e && (r = clone_cow_add_locked(c, vc, e)) < 0) ||
                (r = leaf_set(c->dir, vc, (pc + 1) | F_PEND)) < 0) {
                if (e)
                    clone_cow_old_locked(c, vc, true);
                t->ext[pc / t->cpe].nfree++;
                break;
            }
            t->ext[pc / t->cpe].rev[pc % t->cpe] = (uint32_t)vc + 1;
            t->ext[pc / t->cpe].cgen[pc % t->cpe] = c->gen;
            npc[nnew] = pc;
            nold[nnew] = e;
            nvc[nnew++] = vc;
        }
        if (r == 0 && !full)
            break;
        clone_undo_locked(t, c, nvc, npc, nold, nnew);
        nnew = 0;
        if (r < 0)
            break;
        pthread_mutex_unlock(&t->lock);
        r = grow_data(v, t);
        pthread_mutex_lock(&t->lock);
        if (r < 0)
            break;
    }
    pthread_mutex_unlock(&t->lock);
    if (r < 0)
        goto out;

    const char *b = buf;
    size_t k = 0;
    for (uint64_t vc = first; vc < first + nch && r == 0; vc++) {
        uint64_t within = vc == first ? off & (t->cs - 1) : 0;
        size_t n = len < t->cs - within ? len : t->cs - within;
        bool fresh = k < nnew && nvc[k] == vc;
        uint32_t pc, old = 0;
        if (fresh) {
            old = nold[k];
            pc = npc[k++];
        } else {
            pthread_mutex_lock(&t->lock);
            pc = leaf_get(c->dir, vc) - 1; /* its own: io_lock keeps it */
            pthread_mutex_unlock(&t->lock);
        }
        uint64_t coff = chunk_off(v, t, pc);
        if (fresh && n != t->cs) {
            if (!bounce && !(bounce = malloc(t->cs))) {
                r = -ENOMEM;
                break;
            }
            if (old)
                r = v->lops->pread(v, bounce, t->cs, chunk_off(v, t, old - 1),
                                   0);
            else
                memset(bounce, 0, t->cs);
            if (r < 0)
                break;
            memcpy(bounce + within, b, n);
            vd_heat_count_lower(v, coff, t->cs, true);
            r = v->lops->pwrite(v, bounce, t->cs, coff, 0);
        } else {
            vd_heat_count_lower(v, coff + within, n, true);
            r = v->lops->pwrite(v, b, n, coff + within,
                                fresh ? 0 : flags & (VD_IO_FUA | VD_IO_NOWAIT));
        }
        b += n;
        len -= n;
    }
    if (nnew)
        CRASH_POINT("clone-data-written");
    pthread_mutex_lock(&t->lock);
    if (r < 0 && nnew) {
        clone_undo_locked(t, c, nvc, npc, nold, nnew);
    } else if (nnew) {
        struct twait w;
        enqueue_locked(t, &w, npc, nnew);
        w.memb = true;
        r = wait_locked(v, t, &w);
        for (size_t i = 0; i < nnew; i++) {
            clone_cow_old_locked(c, nvc[i], true);
            if (r < 0) { /* the chunk is in limbo (commit_locked) */
                leaf_set(c->dir, nvc[i], nold[i]);
                continue;
            }
            leaf_set(c->dir, nvc[i], npc[i] + 1);
            t->ext[npc[i] / t->cpe].sref[npc[i] % t->cpe] = 1;
            if (nold[i])
                clone_unref_locked(t, nold[i] - 1, nvc[i]);
        }
        pthread_cond_broadcast(&t->cond);
    }
    pthread_mutex_unlock(&t->lock);
out:
    pthread_rwlock_unlock(&t->io_lock);
    free(bounce);
    if (npc != pc_st)
        free(npc);
    if (nold != old_st)
        free(nold);
    if (nvc != vc_st)
        free(nvc);
    return r;
}

/* Of clone name: bytes only it names (*exclusive) and bytes it shares
 * (*shared); the origin it was cloned from (the nearest snapshot it
 * descends from, "VOL@SNAP", else "VOL").  -ENOENT.  Admin lock held. */
int vd_thin_clone_info(struct vd_vol *v, const char *name, uint64_t *size,
                       uint64_t *exclusive, uint64_t *shared, char *origin,
                       size_t olen, int *exported)
{
    if (!vd_thin_is_family(v))
        return -ENOENT;
    struct thin *t = thin_of(v);
    uint64_t ex = 0, sh = 0;
    pthread_mutex_lock(&t->lock);
    struct tsnap *c = clone_find_name(t, name);
    if (!c) {
        pthread_mutex_unlock(&t->lock);
        return -ENOENT;
    }
    for (uint64_t vc = 0; c->dir && vc < (c->size >> t->cshift); vc++) {
        if (!c->dir[vc >> LEAF_SHIFT]) {
            vc |= LEAF_N - 1;
            continue;
        }
        uint32_t e = leaf_get(c->dir, vc) & ~F_PEND;
        if (!e)
            continue;
        const struct text *x = &t->ext[(e - 1) / t->cpe];
        if (x->sref[(e - 1) % t->cpe] == 1 && (fwd_get(t, vc) & ~F_PEND) != e)
            ex++;
        else
            sh++;
    }
    *size = c->size;
    *exclusive = ex << t->cshift;
    *shared = sh << t->cshift;
    *exported = c->opens > 0;
    /* The source, read from the generation tree.  A clone commit gives
     * the new clone generation ngen and a writable source (the volume or
     * a clone) ngen + 1, both children of the source's frozen one; a
     * snapshot source stays.  Walking up from the clone's generation n
     * (parent pg): pg a snapshot's: that snapshot; a sibling n + 1: the
     * clone was made here, from the member on that line (the oldest clone
     * there, or the volume); else the clone moved on here (it was cloned,
     * or the other line is gone): go on up. */
    snprintf(origin, olen, "%s", v->name);
    const struct tnode *n = node_find(t, c->gen);
    for (size_t hops = 0; n && hops < t->nnodes; hops++) {
        uint32_t pg = n->parent;
        const struct tsnap *snap = NULL, *src = NULL;
        for (size_t i = 0; i < t->nsnaps && !snap; i++)
            if (!t->snaps[i]->clone && t->snaps[i]->gen == pg)
                snap = t->snaps[i];
        if (snap) {
            snprintf(origin, olen, "%s@%s", v->name, snap->name);
            break;
        }
        const struct tnode *sib = node_find(t, n->gen + 1);
        if (sib && sib->parent == pg) {
            for (size_t i = 0; i < t->nsnaps; i++) {
                const struct tsnap *s = t->snaps[i];
                if (s->clone && s != c && (!src || s->id < src->id) &&
                    gen_descends(t, s->gen, sib->gen))
                    src = s;
            }
            if (src)
                snprintf(origin, olen, "%s", src->name);
            break; /* no clone on that line: the volume's */
        }
        n = pg ? node_find(t, pg) : NULL;
    }
    pthread_mutex_unlock(&t->lock);
    return 0;
}

/* Names of v's clones, '\n'-separated into a malloc'd string. */
char *vd_thin_clone_names(struct vd_vol *v)
{
    if (!vd_thin_is_family(v))
        return NULL;
    struct thin *t = thin_of(v);
    size_t cap = 1, k = 0;
    pthread_mutex_lock(&t->lock);
    for (size_t i = 0; i < t->nsnaps; i++)
        if (t->snaps[i]->clone)
            cap += strlen(t->snaps[i]->name) + 1;
    char *s = malloc(cap);
    if (s) {
        for (size_t i = 0; i < t->nsnaps; i++)
            if (t->snaps[i]->clone)
                k += (size_t)sprintf(s + k, "%s\n", t->snaps[i]->name);
        s[k] = 0;
    }
    pthread_mutex_unlock(&t->lock);
    return s;
}

/* Does a member other than clone c name, for virtual chunk vc, a chunk of
 * a generation strictly above c's (dep: c's ancestry)?  Such a chunk is
 * durable with (vc, that generation), so a reopen would show it to c if
 * c's own entry went.  Lock held. */
static bool clone_beneath_locked(const struct thin *t, const struct tsnap *c,
                                 const int32_t *dep, uint64_t vc)
{
    uint32_t es[2] = { 0, 0 };
    if (vc < t->vchunks) {
        es[0] = fwd_get(t, vc) & ~F_PEND;
        es[1] = cow_old_locked(t, vc);
    }
    for (size_t m = 0;; m++) {
        for (int k = 0; k < 2; k++) {
            uint32_t e = es[k];
            if (e && gdep(t, dep,
                          t->ext[(e - 1) / t->cpe].cgen[(e - 1) % t->cpe]) > 0)
                return true;
        }
        if (m == t->nsnaps)
            return false;
        struct tsnap *s = t->snaps[m];
        es[0] = es[1] = 0;
        if (s == c || !s->dir || vc >= (s->size >> t->cshift))
            continue;
        es[0] = leaf_get(s->dir, vc) & ~F_PEND;
        es[1] = clone_cow_old_locked(s, vc, false);
    }
}

/* UNMAP on clone h.  Partial chunks at the ends get zeroes.  A whole
 * chunk only the clone names, written in its own generation, is freed
 * (its entry goes, the chunk is written free by a group commit before the
 * return) when nothing shows through: no member names a chunk of an
 * ancestor generation for that virtual chunk and no released chunk of
 * one waits to be written free (limbo).  A reopen rebuilds the clone's
 * map by "nearest ancestor generation", so freeing any other chunk (a
 * shared one above all) would bring the ancestor's data back after an
 * acknowledged UNMAP: those get zeroes (copy-on-write where shared), as a
 * discard on a volume with snapshots.  Reads return zeroes either way.
 * The frees are made under io_lock exclusive (no read or write of the
 * clone in flight: a chunk is never freed under its reader) and queued
 * for the group commit before io_lock is released, so a later write of
 * the same virtual chunk commits in that group or a later one. */
int vd_thin_clone_discard(struct vd_vol *v, void *h, uint64_t off, uint64_t len)
{
    struct thin *t = thin_of(v);
    struct tsnap *c = h;
    uint64_t fc = vd_div_up(off, t->cs), lc = (off + len) >> t->cshift;
    uint64_t *zl = NULL;
    size_t nz = 0, zcap = 0, nfreed = 0;
    int32_t *dep = NULL;
    char *z;
    int r = 0;

    if (off > c->size || len > c->size - off)
        return -ERANGE;
    if (!len)
        return 0;
    if (!(z = calloc(1, t->cs)))
        return -ENOMEM;
    if (fc > lc) { /* inside one chunk */
        r = vd_thin_clone_pwrite(v, h, z, len, off, 0);
        free(z);
        return r;
    }
    if (off < fc << t->cshift)
        r = vd_thin_clone_pwrite(v, h, z, (fc << t->cshift) - off, off, 0);
    if (r == 0 && off + len > lc << t->cshift)
        r = vd_thin_clone_pwrite(v, h, z, off + len - (lc << t->cshift),
                                 lc << t->cshift, 0);
    /* chunks reclaimed at open lost their generation in RAM: write their
     * frees first, so that every durable entry left is a member's or in
     * limbo */
    if (r == 0 && fc < lc)
        r = commit_frees(v, t);
    if (r < 0 || fc >= lc) {
        free(z);
        return r;
    }
    pthread_rwlock_wrlock(&t->io_lock);
    pthread_mutex_lock(&t->lock);
    bool safe = !t->failed;
    if (t->failed)
        r = -EIO;
    if (r == 0 && !(dep = malloc((t->nnodes ? t->nnodes : 1) * sizeof(*dep))))
        r = -ENOMEM;
    if (r == 0) {
        ancestry(t, c->gen, dep);
        for (size_t i = 0; i < t->nlimbo && safe; i++) {
            uint32_t pc = t->limbo[i];
            safe = gdep(t, dep, t->ext[pc / t->cpe].cgen[pc % t->cpe]) < 0;
        }
    }
    for (uint64_t vc = fc; vc < lc && r == 0; vc++) {
        if (!c->dir[vc >> LEAF_SHIFT]) {
            vc |= LEAF_N - 1;
            continue;
        }
        uint32_t e = leaf_get(c->dir, vc);
        if (!e)
            continue;
        struct text *x = &t->ext[((e & ~F_PEND) - 1) / t->cpe];
        uint32_t i = ((e & ~F_PEND) - 1) % t->cpe;
        if (safe && !(e & F_PEND) && x->cgen[i] == c->gen && x->sref[i] == 1 &&
            !clone_beneath_locked(t, c, dep, vc)) {
            leaf_set(c->dir, vc, 0);
            x->sref[i] = 0;
            release_locked(t, e - 1);
            nfreed++;
            continue;
        }
        if (nz == zcap) {
            size_t nc = zcap ? zcap * 2 : 64;
            uint64_t *nl = realloc(zl, nc * sizeof(*nl));
            if (!nl) {
                r = -ENOMEM;
                break;
            }
            zl = nl;
            zcap = nc;
        }
        zl[nz++] = vc;
    }
    struct twait w;
    if (nfreed)
        enqueue_locked(t, &w, NULL, 0);
    pthread_mutex_unlock(&t->lock);
    pthread_rwlock_unlock(&t->io_lock);
    if (nfreed) {
        pthread_mutex_lock(&t->lock);
        int cr = wait_locked(v, t, &w);
        pthread_mutex_unlock(&t->lock);
        if (r == 0)
            r = cr;
    }
    for (size_t k = 0; k < nz && r == 0; k++)
        r = vd_thin_clone_pwrite(v, h, z, t->cs, zl[k] << t->cshift, 0);
    free(dep);
    free(zl);
    free(z);
    return r;
}

/* GET LBA STATUS / discard_zero on clone h: mapped where its map names a
 * chunk (or a write in flight replaces one), the run of chunks alike from
 * off; the end clipped to the clone's size. */
int vd_thin_clone_lba_status(struct vd_vol *v, void *h, uint64_t off,
                             uint64_t *len, int *mapped)
{
    struct thin *t = thin_of(v);
    struct tsnap *c = h;
    uint64_t vch, vc, end;

    if (off >= c->size)
        return -ERANGE;
    if (__atomic_load_n(&t->failed, __ATOMIC_ACQUIRE))
        return -EIO;
    vch = vd_div_up(c->size, t->cs);
    pthread_mutex_lock(&t->lock);
    vc = off >> t->cshift;
    int m = leaf_get(c->dir, vc) != 0;
    for (end = vc + 1; end < vch; end++) {
        if (!m && !c->dir[end >> LEAF_SHIFT]) {
            end |= LEAF_N - 1;
            continue;
        }
        if ((leaf_get(c->dir, end) != 0) != m)
            break;
    }
    if (end > vch)
        end = vch;
    pthread_mutex_unlock(&t->lock);
    *mapped = m;
    *len = ((end << t->cshift) < c->size ? end << t->cshift : c->size) - off;
    return 0;
}
