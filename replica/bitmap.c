/* vdlvm: the mirror's write-intent bitmap — regions and their bits in
 * memory and on every leg, bitmap blocks, the bitmap header, the clearing
 * rule and the cleaner (replica/, see mirror.c for the whole).
 *
 * ---- Regions and the write-intent bitmap --------------------------------
 *
 * A mirror volume is cut into regions of 2^region_shift bytes (default
 * 1 MiB).  Each region has one bit in the bitmap: "the legs may differ
 * here".  The bitmap lives in memory (bits) and on every leg (logical
 * extent 0 of each leg, 4 KiB blocks); after a crash, open takes the union
 * of the non-failed legs' copies.  In memory each region also has
 *   inflight   leg writers (mirror.c) between their start and their end,
 *   gen        bumped by every leg writer when it starts,
 *   seen_gen   gen as the cleaner saw it on its previous pass,
 *   unsettled  NOWAIT writes that reached some legs and not others and
 *              whose redo on a worker has not finished yet,
 *   diverged   a leg writer ended with an error after reaching some legs
 *              and none of the others could be marked failed,
 * and dbits, per region: "the bit is set in the on-disk copy of every
 * non-failed leg" (dbits ⊆ bits).
 *
 *   CLEAN  --a leg writer starts--> SETTING (bit 1 in memory, dbit 0)
 *   SETTING --its bitmap block, written with FUA, reached every
 *            non-failed leg--> DIRTY (dbit 1); only then does data move
 *   DIRTY  --leg writers start/end--> DIRTY (inflight, gen)
 *   DIRTY  --cleaner or resync, by the clearing rule--> CLEAN (bit and
 *            dbit 0 in memory at once; the block is written lazily)
 *
 * When a bit is cleared (the clearing rule): the cleaner (all legs in
 * sync, no resync) takes as candidates the set bits of regions with no
 * leg writer in flight, none unsettled or diverged, and gen unchanged for
 * one whole pass; resync takes the regions it has just copied to every
 * leg.  For each candidate, gen is noted with inflight 0; then every
 * device of every leg is flushed (vd_dev_flush: durable everything that
 * completed before the call); then, under m->lock, the bit is cleared
 * only if gen is unchanged (no leg writer started after the flush began),
 * the flush succeeded on every leg and no leg is failed.  So the writes
 * the bit covered, and the copy, are durable on every leg before the bit
 * goes, and the legs are equal there.  A failed leg keeps every bit set
 * that a write touched while it was away: exactly what resync copies.
 *
 * Why a stale set bit is safe: a set bit only means "may differ".  Reads
 * of a region with its bit set go to the resync source (the first in-sync
 * leg) so they stay consistent; its cost is one region copied that was
 * already equal.  Cleared bits reach disk lazily for the same reason.
 *
 * Bitmap blocks (bm_write_block_locked): one writer per block at a time
 * (bm_busy[b]); it snapshots the block under m->lock, drops m->lock for
 * the FUA writes to every non-failed leg, and on success on every leg that
 * is still non-failed sets dbits of the block to snapshot & bits (a bit
 * cleared meanwhile stays 0) and bm_done = the snapshot's version.  On a
 * failure dbits only lose bits and bm_done stays behind bm_ver: the block
 * is written again by the next writer (nothing is marked clean that is
 * not on disk).  Snapshots are taken in the order their writes reach the
 * disk, so the last write of a block carries the newest bits.
 *
 * ---- Interleavings ---------------------------------------------------------
 *
 * write vs cleaner: a write that started before the candidate was taken
 *   kept inflight > 0 (not a candidate); one that starts after bumps gen
 *   (not cleared); one in between completed before the flush, which
 *   covers it.  A bit cleared in memory also clears its dbit, so a write
 *   that starts after the clear rewrites the block before its data moves,
 *   whatever the order in which the two block writes were snapshotted.
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

/* The bitmap's own header (format 1.1, docs/format.md), in the last 4 KiB
 * block of the bitmap extent, so that the bits stay at offset 0 where a
 * 1.0 bitmap has them: a 1.0 volume (no header: that block is zero, or
 * holds bits when the volume has more regions than a 1.1 bitmap holds) is
 * still read as before.  Written with FUA by mirror_attach on every
 * non-failed leg that lacks a valid one, before the volume serves I/O;
 * read only there.  A leg whose header is present but wrong is read as an
 * unreadable bitmap copy (every block written again before data moves). */
struct vd_bm_hdr {
    char magic[8];         /*  0: BM_MAGIC */
    uint16_t major;        /*  8: 1 */
    uint16_t minor;        /* 10: 0 */
    uint32_t hdr_len;      /* 12: 64 */
    uint32_t crc;          /* 16: crc32c of these 64 bytes, this field 0 */
    uint32_t bit_order;    /* 20: 0 = region r is bit r%8 of byte r/8 */
    uint32_t region_shift; /* 24: log2(region size) */
    uint32_t vol;          /* 28: volume id */
    uint64_t bits_offset;  /* 32: 0: the bits start the extent */
    uint64_t capacity;     /* 40: regions the extent holds */
    uint8_t reserved[16];  /* 48 */
};
_Static_assert(sizeof(struct vd_bm_hdr) == 64, "bitmap header size");

/* Regions a bitmap extent with a header holds (one without: es * 8). */
uint64_t mirror_bm_capacity(uint64_t extent_size)
{
    return (extent_size - BM_BLOCK) * 8;
}
/* m->lock held.  Clearing a bit also clears its dbit: a block write with
 * the bit 0 may reach the disk from now on. */
void mirror_bit_set_locked(struct vd_mirror *m, uint64_t r, bool on)
{
    if (on == bit_get(m, r))
        return;
    if (on) {
        m->bits[r / 64] |= 1ull << (r % 64);
        m->dirty++;
    } else {
        m->bits[r / 64] &= ~(1ull << (r % 64));
        m->dbits[r / 64] &= ~(1ull << (r % 64));
        m->dirty--;
    }
    m->bm_ver[r / BITS_PER_BLOCK]++;
}
/* ---- bitmap blocks (see the top) ----------------------------------------- */
/* Write bitmap block b as it is in memory now, with FUA, to every
 * non-failed leg.  m->lock and map_lock (shared) held, bm_busy[b] clear;
 * m->lock is dropped around the I/O.  Returns the mask of legs still
 * non-failed whose copy could not be written (0: done). */
static uint32_t bm_write_block_locked(struct vd_mirror *m, uint64_t b)
{
    struct vd_vol *v = m->v;
    uint64_t snap[BM_WORDS];
    uint64_t first = b * BM_WORDS, have = nwords(m->cap_regions), ver;
    uint32_t legs = nonfailed_legs(v), failed = 0;

    m->bm_busy[b] = 1;
    ver = m->bm_ver[b];
    memset(snap, 0, sizeof(snap));
    if (first < have)
        memcpy(snap, m->bits + first,
               (have - first < BM_WORDS ? have - first : BM_WORDS) * 8);
    pthread_mutex_unlock(&m->lock);
    for (uint32_t leg = 0; leg < v->copies; leg++) {
        uint64_t doff;
        struct vd_dev *d;
        if (!(legs & (1u << leg)))
            continue;
        d = vd_leg_bitmap_locate(v, leg, &doff);
        if (!d || !d->bdev || d->state != VD_DEV_OK ||
            vd_dev_pwrite(d, snap, BM_BLOCK, doff + b * BM_BLOCK, VD_IO_FUA) <
                0)
            failed |= 1u << leg;
    }
    pthread_mutex_lock(&m->lock);
    m->bm_busy[b] = 0;
    failed &= nonfailed_legs(v);
    have = nwords(m->cap_regions);
    for (uint64_t w = 0; w < BM_WORDS && first + w < have; w++) {
        uint64_t keep = snap[w] & m->bits[first + w];
        if (failed)
            m->dbits[first + w] &= keep;
        else
            m->dbits[first + w] = keep;
    }
    if (!failed && ver > m->bm_done[b])
        m->bm_done[b] = ver;
    pthread_cond_broadcast(&m->cond);
    return failed;
}

/* Make the bits of regions r0..r1 durable on every non-failed leg.
 * map_lock held shared, m->lock not held.  0 or the mask of failed legs. */
uint32_t mirror_bits_durable(struct vd_mirror *m, uint64_t r0, uint64_t r1)
{
    uint32_t failed = 0;

    pthread_mutex_lock(&m->lock);
    for (uint64_t i = r0; i <= r1 && !failed; i++) {
        mirror_bit_set_locked(m, i, true);
        while (!failed && !dbit_get(m, i)) {
            uint64_t b = i / BITS_PER_BLOCK;
            if (m->bm_busy[b])
                pthread_cond_wait(&m->cond, &m->lock);
            else
                failed = bm_write_block_locked(m, b);
        }
    }
    pthread_mutex_unlock(&m->lock);
    return failed;
}

/* Write every block whose in-memory version is not yet on every
 * non-failed leg (cleared bits).  map_lock held shared.  0 or failed legs. */
uint32_t mirror_bm_flush(struct vd_mirror *m)
{
    uint32_t failed = 0;

    pthread_mutex_lock(&m->lock);
    for (uint64_t b = 0; b < nblocks(m->nregions) && !failed; b++)
        while (!failed && m->bm_done[b] != m->bm_ver[b]) {
            if (m->bm_busy[b])
                pthread_cond_wait(&m->cond, &m->lock);
            else
                failed = bm_write_block_locked(m, b);
        }
    pthread_mutex_unlock(&m->lock);
    return failed;
}
/* ---- arrays --------------------------------------------------------------- */
/* Grow every per-region and per-block array to n regions (n > cap, or the
 * first allocation).  m->lock held (or m not yet published). */
int mirror_alloc_arrays(struct vd_mirror *m, uint64_t n)
{
    uint64_t oc = m->cap_regions;
    struct {
        void **p;
        size_t osz, nsz;
    } a[] = {
        { (void **)&m->bits, nwords(oc) * 8, nwords(n) * 8 },
        { (void **)&m->dbits, nwords(oc) * 8, nwords(n) * 8 },
        { (void **)&m->bm_ver, nblocks(oc) * 8, nblocks(n) * 8 },
        { (void **)&m->bm_done, nblocks(oc) * 8, nblocks(n) * 8 },
        { (void **)&m->bm_busy, nblocks(oc), nblocks(n) },
        { (void **)&m->inflight, oc * 4, n * 4 },
        { (void **)&m->gen, oc * 4, n * 4 },
        { (void **)&m->seen_gen, oc * 4, n * 4 },
        { (void **)&m->unsettled, oc * 2, n * 2 },
        { (void **)&m->diverged, oc, n },
    };
    enum { NA = sizeof(a) / sizeof(a[0]) };
    void *nu[NA];

    for (size_t i = 0; i < NA; i++) {
        nu[i] = calloc(1, a[i].nsz ? a[i].nsz : 1);
        if (!nu[i]) {
            while (i--)
                free(nu[i]);
            return -ENOMEM;
        }
    }
    for (size_t i = 0; i < NA; i++) {
        if (*a[i].p)
            memcpy(nu[i], *a[i].p, a[i].osz);
        free(*a[i].p);
        *a[i].p = nu[i];
    }
    m->cap_regions = n;
    m->nregions = n;
    return 0;
}

uint64_t mirror_max_regions(const struct vd_mirror *m)
{
    /* the bitmap extent, less its header block */
    return m->legacy ? m->v->pool->extent_size * 8
                     : mirror_bm_capacity(m->v->pool->extent_size);
}

/* Make the arrays cover region r (the volume may have grown and
 * vd_mirror_grow not run yet).  m->lock held.  0, -ENOMEM, -EFBIG. */
int mirror_cover_region_locked(struct vd_mirror *m, uint64_t r)
{
    uint64_t n;
    int e;

    if (r < m->nregions)
        return 0;
    n = vd_div_up(mirror_bound(m->v), region_size(m));
    if (n > mirror_max_regions(m))
        return -EFBIG;
    if (n > m->cap_regions) {
        if ((e = mirror_alloc_arrays(m, n)) < 0)
            return e;
    } else if (n > m->nregions) {
        m->nregions = n;
    }
    return r < m->nregions ? 0 : -ERANGE;
}
static void bm_hdr_fill(const struct vd_vol *v, struct vd_bm_hdr *h)
{
    memset(h, 0, sizeof(*h));
    memcpy(h->magic, BM_MAGIC, 8);
    h->major = 1;
    h->minor = 0;
    h->hdr_len = sizeof(*h);
    h->bit_order = 0;
    h->region_shift = v->flags & VD_VOLF_REGION_SHIFT_MASK;
    h->vol = v->id;
    h->bits_offset = 0;
    h->capacity = mirror_bm_capacity(v->pool->extent_size);
    h->crc = vd_crc32c(0, h, sizeof(*h));
}

/* The header block of the bitmap at doff on d: 0 valid, 1 absent (zero
 * magic) or unreadable (left alone: the bits were readable), -1 present
 * but not what this volume needs. */
static int bm_hdr_check(const struct vd_vol *v, struct vd_dev *d, uint64_t doff)
{
    static const char zero[8];
    struct vd_bm_hdr want, *h;
    uint8_t *blk = malloc(BM_BLOCK);
    int r;

    if (!blk)
        return 1;
    if (vd_dev_pread(d, blk, BM_BLOCK, doff + v->pool->extent_size - BM_BLOCK) <
        0) {
        free(blk);
        return 1;
    }
    h = (struct vd_bm_hdr *)blk;
    bm_hdr_fill(v, &want);
    if (!memcmp(h->magic, zero, 8))
        r = 1;
    else
        r = memcmp(h, &want, sizeof(want)) ? -1 : 0;
    free(blk);
    return r;
}

/* Write the header block of leg's bitmap (FUA); map_lock held shared.  A
 * failure is logged and left: the header is written again at the next
 * open, and nothing reads it before that. */
static void bm_hdr_write(struct vd_vol *v, uint32_t leg)
{
    uint8_t *blk = calloc(1, BM_BLOCK);
    struct vd_bm_hdr h;
    uint64_t doff;
    struct vd_dev *d = vd_leg_bitmap_locate(v, leg, &doff);

    if (!blk)
        return;
    bm_hdr_fill(v, &h);
    memcpy(blk, &h, sizeof(h));
    if (!d || !d->bdev || d->state != VD_DEV_OK ||
        vd_dev_pwrite(d, blk, BM_BLOCK, doff + v->pool->extent_size - BM_BLOCK,
                      VD_IO_FUA) < 0)
        vd_log(VD_LOG_WARN,
               "volume '%s/%s': bitmap header of leg %u not "
               "written; retried at the next open",
               v->pool->name, v->name, leg);
    free(blk);
}
/* ---- loading the bitmap at attach ------------------------------------- */
/* Read the legs' copies into m, a new mirror not yet published, its arrays
 * allocated for nregions; write the header of the legs that lack a valid
 * one.  0 or -ENOMEM (the caller frees m). */
int mirror_bm_load(struct vd_mirror *m, uint64_t nregions)
{
    struct vd_vol *v = m->v;
    uint64_t bytes, words;
    uint64_t *buf, *andb;
    int legs_read = 0;
    bool all_read = true;
    uint32_t hdr_legs = 0; /* legs whose bitmap header is to be written */

    /* bits: the union of the legs' copies (a bit set on any leg may
     * differ); dbits: their intersection, if every non-failed leg's copy
     * was read (otherwise a leg may lack any bit: all blocks are written
     * again before data moves). */
    words = nwords(nregions);
    bytes = nblocks(nregions) * BM_BLOCK;
    buf = malloc(bytes ? bytes : 1);
    andb = malloc(words ? words * 8 : 1);
    if (!buf || !andb) {
        free(buf);
        free(andb);
        return -ENOMEM;
    }
    memset(andb, 0xff, words * 8);
    pthread_rwlock_rdlock(&v->map_lock);
    for (uint32_t leg = 0; leg < v->copies; leg++) {
        uint64_t doff;
        struct vd_dev *d;
        if (leg_state(v, leg) == VD_LEG_FAILED)
            continue;
        d = vd_leg_bitmap_locate(v, leg, &doff);
        if (!bytes)
            continue;
        if (!d || !d->bdev || d->state != VD_DEV_OK ||
            vd_dev_pread(d, buf, bytes, doff) < 0) {
            vd_log(VD_LOG_WARN, "volume '%s/%s': bitmap of leg %u unreadable",
                   v->pool->name, v->name, leg);
            all_read = false;
            continue;
        }
        legs_read++;
        for (uint64_t w = 0; w < words; w++) {
            m->bits[w] |= buf[w];
            andb[w] &= buf[w];
        }
        if (m->legacy)
            continue;
        int h = bm_hdr_check(v, d, doff);
        if (h < 0) {
            /* a wrong header: its bits may be anything (set bits are
             * harmless; clear ones are not trusted: dbits stay 0) */
            vd_log(VD_LOG_WARN,
                   "volume '%s/%s': bitmap header of leg %u is "
                   "invalid; its bitmap is written again",
                   v->pool->name, v->name, leg);
            all_read = false;
        }
        if (h != 0)
            hdr_legs |= 1u << leg;
    }
    for (uint32_t leg = 0; leg < v->copies; leg++)
        if (hdr_legs & (1u << leg))
            bm_hdr_write(v, leg);
    pthread_rwlock_unlock(&v->map_lock);
    free(buf);
    if (nregions % 64) { /* bits past the end are not regions */
        m->bits[nregions / 64] &= (1ull << (nregions % 64)) - 1;
        andb[nregions / 64] &= (1ull << (nregions % 64)) - 1;
    }
    for (uint64_t i = 0; i < nregions; i++)
        m->dirty += bit_get(m, i);
    if (!legs_read && v->copies) {
        /* Nothing known: every region may differ. */
        for (uint64_t i = 0; i < nregions; i++)
            mirror_bit_set_locked(m, i, true);
        all_read = false;
    }
    for (uint64_t w = 0; w < words; w++) {
        m->dbits[w] = all_read ? andb[w] : 0;
        if (m->dbits[w] != m->bits[w]) /* the copies differ here */
            m->bm_ver[w / BM_WORDS] = m->bm_done[w / BM_WORDS] + 1;
    }
    free(andb);
    return 0;
}

/* ---- clearing bits (the clearing rule, see the top) ----------------------- */
/* m->lock held; r had inflight 0 when its gen was read. */
void mirror_batch_add_locked(struct batch *b, uint64_t r, uint32_t gen)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        struct cand *c = realloc(b->c, cap * sizeof(*c));
        if (!c)
            return; /* the bit just stays set */
        b->c = c;
        b->cap = cap;
    }
    b->c[b->n++] = (struct cand){ r, gen };
}

/* Flush every non-failed leg; then, if that worked on every leg and none
 * is failed, clear the candidates whose gen did not move and write the
 * changed bitmap blocks.  cleaner: the candidates come from the cleaner
 * (every leg must still be in sync, nothing unsettled or diverged).  No
 * lock held.  0, or -EIO when a flush or a bitmap write failed (those legs
 * are marked failed; nothing cleared). */
int mirror_batch_commit(struct vd_vol *v, struct batch *b, bool cleaner)
{
    struct vd_mirror *m = mirror_of(v);
    uint32_t failed = 0, legs;

    legs = nonfailed_legs(v);
    for (uint32_t leg = 0; leg < v->copies; leg++)
        if ((legs & (1u << leg)) && mirror_leg_flush(v, leg) < 0)
            failed |= 1u << leg;
    pthread_rwlock_rdlock(&v->map_lock);
    if (!failed && b->n && legs == all_legs(v)) {
        pthread_mutex_lock(&m->lock);
        bool ok =
            nonfailed_legs(v) == all_legs(v) && (!cleaner || all_insync(v));
        for (size_t k = 0; ok && k < b->n; k++) {
            uint64_t i = b->c[k].r;
            if (i < m->nregions && m->gen[i] == b->c[k].gen &&
                !m->inflight[i] &&
                (!cleaner || (!m->unsettled[i] && !m->diverged[i])))
                mirror_bit_set_locked(m, i, false);
        }
        pthread_mutex_unlock(&m->lock);
        failed = mirror_bm_flush(m);
    }
    pthread_rwlock_unlock(&v->map_lock);
    b->n = 0;
    if (failed) {
        mirror_fail_legs(v, failed);
        return -EIO;
    }
    return 0;
}

/* Lazy clearing of bits while all legs are in sync. */
void mirror_clean_volume(struct vd_vol *v)
{
    struct vd_mirror *m = mirror_of(v);
    struct batch b = { 0 };
    bool pending = false;

    if (!all_insync(v))
        return;
    pthread_mutex_lock(&m->lock);
    if (m->rs_active || m->rs_requested || m->excl) {
        pthread_mutex_unlock(&m->lock);
        return;
    }
    for (uint64_t i = 0; i < m->nregions; i++) {
        if (bit_get(m, i) && !m->inflight[i] && !m->unsettled[i] &&
            !m->diverged[i] && m->gen[i] == m->seen_gen[i])
            mirror_batch_add_locked(&b, i, m->gen[i]);
        m->seen_gen[i] = m->gen[i];
    }
    for (uint64_t k = 0; k < nblocks(m->nregions); k++)
        pending |= m->bm_done[k] != m->bm_ver[k];
    bool work = b.n || pending;
    if (work)
        m->bg_busy = 1;
    pthread_mutex_unlock(&m->lock);
    if (b.n) {
        mirror_batch_commit(v, &b, true);
    } else if (pending) {
        pthread_rwlock_rdlock(&v->map_lock);
        uint32_t failed = mirror_bm_flush(m);
        pthread_rwlock_unlock(&v->map_lock);
        if (failed)
            mirror_fail_legs(v, failed);
    }
    if (work) {
        pthread_mutex_lock(&m->lock);
        m->bg_busy = 0;
        pthread_cond_broadcast(&m->cond);
        pthread_mutex_unlock(&m->lock);
    }
    free(b.c);
}
