/* vdlvm fuzzing: what the harnesses share (tests/fuzz/, docs/fuzz.md).
 *
 * In-memory devices.  Every harness links with -Wl,--wrap=vd_bdev_open, so
 * the pool library's own open path (pool/pool.c, md.c, replica/) runs
 * unchanged on devices held in memory: a device is found by its path in
 * the pool definition.  Each device keeps a pristine copy and a dirty map
 * of 4 KiB blocks, so that the state before an input is restored in time
 * proportional to what the input (and the library) wrote, not to the
 * device size.  The devices are used by one harness thread and the
 * library's threads (background worker, admin jobs): one mutex per device.
 */
#ifndef FUZZ_COMMON_H
#define FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "../../config/vdconfig.h"
#include "../../pool/vdpool.h"

#ifdef __cplusplus
extern "C" {
#endif

#define FZ_DEV_SIZE (12ull << 20) /* 5 MiB header + metadata, 7 PEs of 1 MiB */
#define FZ_NDEVS    3

/* The fuzzing pool: name "fz", 3 devices d0..d2 on nodes n0..n2, extent
 * 1 MiB, volumes "lin" (linear, 2 MiB) and "mir" (mirror of 2 legs,
 * 2 MiB), made with the library itself (vd_pool_create, vd_vol_create).
 * Sets VDLVM_RUNDIR/VDLVM_STATEDIR to a private temporary folder, silences
 * the library's log, and snapshots every device (fz_restore goes back to
 * this state).  Returns the definition (owned here). */
const struct vd_conf_pool *fz_pool_setup(void);

/* The YAML of that pool (for the config harness's seeds). */
extern const char *fz_pool_yaml;

/* Restore every device to its snapshot; 1 when something was written
 * since the snapshot (or the last restore), else 0. */
int fz_restore(void);
/* Take the current contents of every device as the new snapshot. */
void fz_snapshot(void);
/* 1 when a device was written since the last snapshot/restore. */
int fz_dirty(void);

/* Direct access to device i (0..FZ_NDEVS-1) of the pool, as another host
 * writing the shared disk would; marks the blocks dirty. */
void fz_dev_write(int i, const void *buf, size_t len, uint64_t off);
void fz_dev_read(int i, void *buf, size_t len, uint64_t off);

/* crc32c as the format uses it (the library's vd_crc32c). */
uint32_t fz_crc32c(uint32_t crc, const void *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif
