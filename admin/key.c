/* vdlvm admin: `key add` and `key remove`, the key slots of an encrypted
 * pool (pool/crypt.c does the work; docs/encryption.md).  Runs on the
 * thread of the vd_admin_exec call it serves, in vdlvm or inside tgtd; no
 * shared state here.  Key file contents never reach a message. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "admin_int.h"

int admin_opt_key_file(const char *cmdname, const char *name, const char *val,
                       struct cmd_args *a, FILE *err)
{
    if (val[0] != '/') {
        admin_msg(err,
                  "%s: %s '%s' is not an absolute path; the command may run "
                  "inside the tgtd holding the pool, give the full path",
                  cmdname, name, val);
        return VD_EXIT_USAGE;
    }
    a->key_file = val;
    return 0;
}

int admin_cmd_key_add(vd_pool *pool, struct cmd_args *a, FILE *out, FILE *err)
{
    int r = vd_pool_key_add(pool, a->key_file);

    if (r < 0)
        return admin_lib_fail(err, r, "pool '%s': key add", a->pool);
    fprintf(out,
            "pool '%s': key file %s added in key slot %d (%d key slots in "
            "use)\n",
            a->pool, a->key_file, r, vd_pool_key_slots(pool));
    return VD_EXIT_OK;
}

int admin_cmd_key_remove(vd_pool *pool, struct cmd_args *a, FILE *out,
                         FILE *err)
{
    int r = vd_pool_key_remove(pool, a->key_file);

    if (r < 0)
        return admin_lib_fail(err, r, "pool '%s': key remove", a->pool);
    fprintf(out,
            "pool '%s': key slot %d (key file %s) removed (%d key slots in "
            "use)\n",
            a->pool, r, a->key_file, vd_pool_key_slots(pool));
    return VD_EXIT_OK;
}
