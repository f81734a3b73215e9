/* vdlvm: is there data on a device that is not ours? (pool/probe.c)
 *
 * Used before a device is given to a pool (`vdlvm pool create`, later
 * "add a device"), so that a file system, partition table, RAID or LVM
 * member, or any non-zero data is never overwritten silently.  Reads only;
 * thread-safe; may be called from any thread but waits on the device (and
 * on the network for a remote one).
 */
#ifndef VD_PROBE_H
#define VD_PROBE_H

#include <stddef.h>

#include "../config/vdconfig.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes at the start of a device that must be zero (or a vdlvm header). */
#define VD_PROBE_BYTES (1u << 20)

/* Probe the device c names, read-only.  Local devices: libblkid (file
 * systems, partition tables, RAID and LVM signatures anywhere it looks)
 * and the first VD_PROBE_BYTES.  Remote devices: the first VD_PROBE_BYTES
 * read through the iSCSI driver, then libblkid on that copy.
 * Returns 0 when the device is unused (does not exist yet, all zeroes, or
 * carries a vdlvm header: vd_pool_create judges those), 1 when it holds
 * foreign data (what says what was found, e.g. "an ext4 file system (UUID
 * ..., label 'x')" or "non-zero data at byte 4096 of the first 1MiB"), or
 * a negative errno when it could not be read (what says why). */
int vd_dev_probe_foreign(const struct vd_conf_dev *c, char *what, size_t len);

/* `vdlvm pool remove`: zero the vdlvm header and metadata area of the
 * device c names (its first data_offset bytes, from its header), so that
 * no pool claims it and vd_dev_probe_foreign finds it unused.  The data
 * area is left as it is.  Refused (-EBUSY) while another process holds a
 * local device; -ENOENT when the device is gone, -ENODATA when it carries
 * no vdlvm header (nothing written).  msg says why on failure. */
int vd_dev_wipe_header(const struct vd_conf_dev *c, char *msg, size_t len);

#ifdef __cplusplus
}
#endif
#endif
