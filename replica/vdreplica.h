/* vdlvm: mirrored volumes — legs, write-intent bitmap, resync, verify,
 * repair (replica/).
 *
 * A mirror volume is created with vd_vol_create(.layout = VD_LAYOUT_MIRROR,
 * .copies = 2|3); its I/O goes through the same vd_vol_pread/pwrite calls
 * as a linear volume.  The functions here are thread-safe (they take the
 * pool's admin lock for short state changes; long work such as verify runs
 * without it) and may be called from any thread that may block: every
 * one takes the admin lock, which metadata commits hold across device
 * I/O, and verify, replace and resync_wait also do or wait for I/O.
 */
#ifndef VDREPLICA_H
#define VDREPLICA_H

#include <stddef.h>
#include <stdint.h>

#include "../pool/vdpool.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VD_REGION_SIZE_DEFAULT (1ull << 20)

enum vd_leg_state {
    VD_LEG_INSYNC = 0, /* holds every acknowledged write */
    VD_LEG_STALE = 1,  /* reachable, misses writes: needs resync */
    VD_LEG_FAILED = 2, /* I/O failed: skipped until it answers again */
};
const char *vd_leg_state_name(enum vd_leg_state s, int resyncing);

enum vd_resync_state {
    VD_RESYNC_IDLE = 0,
    VD_RESYNC_RUNNING,
    VD_RESYNC_PAUSED
};

struct vd_leg_info {
    uint32_t leg;
    char device[VD_NAME_MAX + 1]; /* device of the leg's first extent */
    char node[VD_NAME_MAX + 1];
    enum vd_leg_state state;
    int resyncing; /* target of the running resync */
};

struct vd_mirror_info {
    char volume[2 * VD_NAME_MAX + 2];
    uint64_t size, region_size;
    uint32_t copies;
    struct vd_leg_info legs[3];
    enum vd_resync_state resync_state;
    uint64_t done_bytes, total_bytes, rate_bytes_per_s;
    uint64_t dirty_regions; /* set bits in the write-intent bitmap */
    uint64_t rate_limit;    /* bytes/s, 0 = unlimited */
};
/* -ENOENT (no such volume), -EINVAL (not a mirror). */
int vd_mirror_get_info(vd_pool *pool, const char *vol,
                       struct vd_mirror_info *info);

/* Start (or resume) copying the regions whose bits are set from an in-sync
 * leg to the others, in the pool's background thread.  rate_limit in
 * bytes/s (0 = unlimited, any value works) stays until changed and applies
 * at once, also to a resync under way.  A target is marked in-sync only
 * after every region was copied to it and flushed.  Returns at once. */
int vd_mirror_resync_start(vd_pool *pool, const char *vol, uint64_t rate_limit);
/* Wait until no resync is running or pending for vol (bounded by
 * timeout_ms; 0 = no bound).  -ETIMEDOUT. */
int vd_mirror_resync_wait(vd_pool *pool, const char *vol, uint64_t timeout_ms);

struct vd_verify_result {
    uint64_t region_size, regions;
    uint64_t *diff; /* indexes of differing regions */
    size_t ndiff;
    size_t repaired; /* with repair: regions resynced */
};
/* Read every non-failed leg region by region, compare SHA-256 digests,
 * report differing regions; with repair, copy them from the first in-sync
 * leg.  Runs without holding the admin lock.  Free with
 * vd_verify_result_free. */
int vd_mirror_verify(vd_pool *pool, const char *vol, int repair,
                     struct vd_verify_result *res);
void vd_verify_result_free(struct vd_verify_result *res);
/* The same, calling progress(arg, done, total) (bytes of the volume's
 * legs compared so far, of all) from the verifying thread after each
 * region, with no lock held; progress may be NULL. */
int vd_mirror_verify_cb(
    vd_pool *pool, const char *vol, int repair, struct vd_verify_result *res,
    void (*progress)(void *arg, uint64_t done, uint64_t total), void *arg);
/* A verify running in this process, for status (replica/verify.c). */
struct vd_verify_progress {
    char vol[VD_NAME_MAX + 1];
    int repair;
    uint64_t done_bytes, total_bytes; /* of the volume's space */
    uint64_t differ;                  /* differing regions found so far */
    uint64_t elapsed_ms;
};
/* The verifies of pool running in this process now (of vol only when not
 * NULL), oldest first: *out malloc'd (free()), *n entries.  0 or -ENOMEM.
 * Thread-safe; never waits on I/O. */
int vd_mirror_verify_progress(const vd_pool *pool, const char *vol,
                              struct vd_verify_progress **out, size_t *n);

/* Move the leg on device old_dev to free extents of new_dev and rebuild it
 * fully, online.  Waits (without the admin lock) until a running resync or
 * clean pass of the volume reaches a region boundary; none starts until it
 * is done.  -EBUSY (nothing changed) when that leg is the only in-sync
 * one; -ENOENT, -EINVAL, -ENOSPC, -EIO as logged.  The new leg is stale,
 * every bit set, until a resync from an in-sync leg has copied every
 * region to it.  Does device I/O: not for an event loop's thread. */
int vd_mirror_replace_leg(vd_pool *pool, const char *vol, const char *old_dev,
                          const char *new_dev);

#ifdef __cplusplus
}
#endif
#endif
