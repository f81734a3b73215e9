/* vdlvm fuzzing: the pool the admin harnesses (fuzz_cmd.c, fuzz_ctl.c)
 * run commands against: open once, and reopened from the snapshot after
 * any command that wrote to a device (a new volume, a resync...), so that
 * every input starts from the same pool. */
#ifndef FUZZ_ADMIN_H
#define FUZZ_ADMIN_H

#include <stdlib.h>

#include "../../admin/vdadmin.h"
#include "fuzz_common.h"

static const struct vd_conf_pool *g_conf;
static vd_pool *g_pool;

static void admin_pool_open(void)
{
    if (!g_conf)
        g_conf = fz_pool_setup();
    if (vd_pool_open(g_conf, &g_pool) < 0)
        abort();
}

/* After an input: back to the snapshot if anything was written. */
static void admin_pool_reset(void)
{
    if (!fz_dirty())
        return;
    vd_pool_close(g_pool);
    fz_restore();
    admin_pool_open();
}
#endif
