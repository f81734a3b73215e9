/* vdlvm replica internals shared with tests and the fault simulator.
 * Not a public header: only replica/ and tests include it. */
#ifndef MIRROR_INT_H
#define MIRROR_INT_H

#include <stdint.h>

#include "../pool/layout.h"

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

#ifdef __cplusplus
}
#endif
#endif
