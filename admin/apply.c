/* vdlvm admin: `vdlvm pool apply POOL [--dry-run]` — the pool's YAML is its
 * definition: devices added there join the live pool (vd_pool_apply,
 * pool/pool.c, checks everything before it writes anything).  The
 * definition is the one vdlvm finds for POOL: $VDLVM_CONFDIR/POOL.yaml
 * (default /etc/vdlvm), else the file remembered by 'pool create -c FILE';
 * it is read here, in the process holding the pool (tgtd or vdlvm).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../config/vdconfig.h"
#include "admin_int.h"

int admin_cmd_pool_apply(vd_pool *pool, struct cmd_args *a, FILE *out,
                         FILE *err)
{
    const char *dir = getenv("VDLVM_CONFDIR");
    char path[4096], msg[1024], plan[8192];
    struct vd_conf_pool *conf = NULL;
    int dry = !!(a->given & O_DRY_RUN), r;

    snprintf(path, sizeof(path), "%s/%s.yaml", dir && *dir ? dir : "/etc/vdlvm",
             a->pool);
    if (access(path, F_OK) < 0 &&
        vd_registry_get(a->pool, path, sizeof(path)) < 0) {
        admin_msg(err,
                  "pool '%s': no definition found (%s/%s.yaml or the file "
                  "remembered by 'pool create -c FILE')",
                  a->pool, dir && *dir ? dir : "/etc/vdlvm", a->pool);
        return VD_EXIT_FAIL;
    }
    if (vd_conf_load(path, &conf, msg, sizeof(msg)) < 0) {
        admin_msg(err, "%s", msg);
        return VD_EXIT_USAGE;
    }
    r = vd_pool_apply(pool, conf, dry, plan, sizeof(plan));
    vd_conf_free(conf);
    if (r < 0)
        return admin_lib_fail(err, r,
                              "pool '%s': apply failed (nothing "
                              "changed)",
                              a->pool);
    fprintf(out, "%s%s", dry ? "plan (--dry-run: nothing changed):\n" : "",
            plan);
    return VD_EXIT_OK;
}
