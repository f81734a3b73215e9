/* vdlvm: the extent mover's batch entry points (pool/move.c), for the
 * fault simulator and tests: an evacuation makes its batches itself. */
#ifndef VDLVM_MOVE_BATCH_H
#define VDLVM_MOVE_BATCH_H

#include <stdint.h>

#include "vdpool.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Move n extents (leg legs[i] of logical extent les[i] of volume vol), all
 * on one device, as one batch (one BEGIN record, one END record), each to
 * the least used device allowed.  -EINVAL (not mapped, not on one device,
 * twice, n out of 1..vd_move_batch_max()), -EBUSY (a move runs), -ENOSPC;
 * the message says so. */
int vd_move_extents(vd_pool *pool, const char *vol, const uint32_t *legs,
                    const uint64_t *les, uint32_t n, uint64_t rate);
uint32_t vd_move_batch_max(void);
/* Target extents of the running batch on pool device dev (admin lock
 * held): used PEs that no volume maps yet. */
uint32_t vd_move_targets_on(vd_pool *pool, uint32_t dev);

#ifdef __cplusplus
}
#endif

#endif
