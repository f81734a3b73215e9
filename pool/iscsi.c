/* vdlvm: remote devices over iSCSI (libiscsi).  Not implemented yet: the
 * pool refuses remote devices with a clear message (issue 3). */
#include <errno.h>
#include <stdio.h>

#include "pool_int.h"

int vd_bdev_iscsi_open(const struct vd_conf_dev *c, struct vd_bdev **out,
                       char *msg, size_t msglen)
{
    (void)out;
    snprintf(msg, msglen, "remote (iscsi) devices are not supported by this "
             "build yet; use a local path");
    return -ENOTSUP;
}
