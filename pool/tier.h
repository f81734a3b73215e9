/* vdlvm: tiering internals — heat counters (pool/heat.c) and the pass
 * planner and its metadata record (pool/tier.c).  The public calls are in
 * vdpool.h; docs/tiering.md says what a user sees.
 *
 * Heat.  Each volume gets, when it is set up (vd_vol_ctr), one pair of
 * 32-bit counters per logical data extent: reads and writes.  The I/O
 * path (vd_vol_pread/pwrite through vd_heat_count) adds 1 per I/O to the
 * extents it touches with a relaxed atomic add: no lock, no allocation.
 * A per-volume stream detector (four slots of "next offset, run length",
 * relaxed atomics) recognises sequential streams: an I/O continuing a run
 * that already holds VD_HEAT_STREAM_BYTES is not counted, so a backup
 * reading the whole volume adds at most a couple of I/Os to the extent
 * where it starts and none elsewhere (a stream gains little from the fast
 * tier; bcache skips sequential I/O for the same reason).  RAM: 8 bytes per extent in
 * the counters plus 4 bytes per extent per history row (VD_HEAT_HIST
 * rows: 8 + 64 = 72 bytes per 4 MiB extent), 96 bytes per volume.
 *
 * Decay: the pool's background thread (vd_tier_tick) halves every
 * counter each tiering interval with fetch_sub(x - x/2), so increments
 * racing with it are never lost; the sum before halving goes to the
 * history ring (the heat map's rows).  Heat lives in memory only: it
 * starts at zero when the pool opens (pool/tier.c's header says what a
 * crash mid-pass therefore keeps and loses).
 *
 * Who owns what:
 *   cnt[], slots: any I/O thread adds (relaxed atomics, racy by design:
 *       a lost stream-slot update only miscounts one I/O);
 *   the history ring: written by the background thread, read by admin
 *       calls, both under the pool's admin lock;
 *   the struct itself: allocated by vd_vol_ctr, freed by vd_vol_dtr, when
 *       no I/O runs on the volume.
 * n is the larger of the mapped data extents and size / extent size (a
 * thin volume's data space grows up to its size while open), the latter
 * capped at the pool's extents when the volume is set up.  A volume
 * extended after set-up keeps counting its first n extents only (the
 * array is not reallocated under I/O); the new extents are counted from
 * the next open.  VDLVM_HEAT=0 in the environment: no counters at all
 * (the CPU-per-I/O comparison in docs/tiering.md).
 *
 * Thread-safety: vd_heat_count from any thread; the rest with the admin
 * lock held.
 */
#ifndef VD_TIER_H
#define VD_TIER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pool_int.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VD_HEAT_STREAM_BYTES \
    (128ull << 10) /* I/O past this much of a run is not counted */
#define VD_HEAT_SLOTS 4
#define VD_HEAT_HIST  16 /* history rows kept */

struct vd_heat_slot {
    uint64_t next; /* offset after the run's last I/O */
    uint64_t run;  /* bytes in the run */
};

struct vd_heat {
    uint64_t n;     /* extents counted */
    uint32_t shift; /* log2 of the extent size */
    uint32_t pad;
    struct vd_heat_slot slot[VD_HEAT_SLOTS];
    uint32_t *cnt; /* 2 * n: [2e] reads, [2e + 1] writes */
    /* history ring (admin lock): rows of n heat values */
    uint32_t *hist;
    uint32_t hist_head, hist_len;
};

/* Allocate / free v's counters (vd_vol_ctr / vd_vol_dtr). */
int vd_heat_alloc(struct vd_vol *v);
void vd_heat_free(struct vd_vol *v);
/* Count one I/O of len bytes at off (volume bytes).  For a thin volume
 * (v->upper) this only runs the stream detector: the thin layout counts
 * the I/O where its chunks are, with vd_heat_count_lower at data-space
 * offsets (the lower layout's, extent e = off / extent size), so that a
 * thin volume's heat is per data extent, like any volume's, and the pass
 * moves those extents. */
void vd_heat_count(struct vd_vol *v, uint64_t off, uint64_t len, bool write);
void vd_heat_count_lower(struct vd_vol *v, uint64_t off, uint64_t len,
                         bool write);
/* Halve every counter; the heat before goes to the history ring. */
void vd_heat_decay(struct vd_heat *h);
/* The counts of extent e. */
void vd_heat_get(const struct vd_heat *h, uint64_t e, uint32_t *reads,
                 uint32_t *writes);

/* ---- the metadata record (VD_OP_TIER = 24) ----------------------------- */
enum {
    VD_TIER_REC_POOL = 1, /* the pool's settings (value: enabled) */
    VD_TIER_REC_DEV = 2,  /* device idx's tier (value) */
    VD_TIER_REC_VOL = 3,  /* volume h.vol: value 1 = tiering off */
};
struct vd_op_tier {
    struct vd_op_lhdr h;    /*  0: h.vol: the volume (REC_VOL), else 0 */
    uint32_t kind;          /* 12 */
    uint32_t idx;           /* 16: device index (REC_DEV) */
    uint32_t value;         /* 20 */
    uint64_t rate;          /* 24: REC_POOL: bytes/s, 0 unlimited */
    uint32_t interval_ms;   /* 32: REC_POOL */
    uint32_t fast_free_pct; /* 36: REC_POOL */
};
_Static_assert(sizeof(struct vd_op_tier) == 40, "op tier");

/* Apply one VD_OP_TIER (md.c; -EINVAL logged when it does not fit). */
int vd_tier_md_apply(vd_pool *p, const struct vd_op_hdr *h);
/* Append the records that rebuild the tiering state (checkpoint). */
int vd_tier_md_serialize(const vd_pool *p, struct vd_opbuf *b);
/* Free p->tier (vd_state_free). */
void vd_tier_free(vd_pool *p);
/* The background thread's turn (bg.c, every ~250 ms, no lock held):
 * decay each interval, and a pass over every volume with tiering on when
 * the pool's tiering is enabled. */
void vd_tier_tick(vd_pool *p);

/* ---- the planner (pure: reads its arguments only; unit-tested) ---------- */
struct vd_tier_cand {
    uint32_t vol, leg;
    uint64_t le;
    uint32_t dev;
    uint32_t same_node; /* a mirror leg: stay on dev's node */
    uint64_t heat;
};
struct vd_tier_devs {
    uint32_t n;
    const uint32_t *tier;  /* VD_CONF_TIER_* */
    const uint64_t *free;  /* free extents */
    const uint64_t *total; /* data extents */
    const uint32_t *node;  /* node number (same number = same node) */
    const bool *usable;
};
struct vd_tier_params {
    uint32_t fast_free_pct; /* share of the fast tier kept free */
    uint64_t max_moves;     /* moves per pass (rate limit), 0 = none */
    uint64_t min_heat;      /* a colder extent is never promoted */
};
/* Hysteresis: a slow extent displaces a fast one only when it is hotter
 * than VD_TIER_SWAP_FACTOR times the fast one's heat plus min_heat. */
#define VD_TIER_SWAP_FACTOR 2u
#define VD_TIER_MIN_HEAT    8u
/* Plan one pass: *mv (malloc'd, free()) gets the moves in the order they
 * must run (a demotion before the promotion that uses its room).  0 or
 * -ENOMEM. */
int vd_tier_plan(const struct vd_tier_cand *c, size_t n,
                 const struct vd_tier_devs *d, const struct vd_tier_params *pr,
                 struct vd_tier_move **mv, size_t *nmv);

#ifdef __cplusplus
}
#endif
#endif
