/* vdlvm admin: snapshots (snap create, list, remove; vol revert; pool
 * check).  Each runs on the thread of vd_admin_exec, in vdlvm or, while a
 * tgtd holds the pool, in that tgtd (control socket): so `snap create`
 * works on an exported volume under load.  Output goes to out, messages
 * to err.  The design is pool/snap.c's.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "admin_int.h"

int admin_cmd_snap_create(vd_pool *pool, struct cmd_args *a, FILE *out,
                          FILE *err)
{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int r = vd_snap_create(pool, a->vol, a->snap);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (r < 0)
        return admin_vol_fail(err, r, a->pool, a->vol, "snap create");
    fprintf(out, "snapshot '%s/%s@%s': created in %.1f ms\n", a->pool, a->vol,
            a->snap,
            (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6);
    return VD_EXIT_OK;
}

int admin_cmd_snap_remove(vd_pool *pool, struct cmd_args *a, FILE *out,
                          FILE *err)
{
    int r = vd_snap_remove(pool, a->vol, a->snap);
    if (r < 0)
        return admin_vol_fail(err, r, a->pool, a->vol, "snap remove");
    fprintf(out, "snapshot '%s/%s@%s': removed\n", a->pool, a->vol, a->snap);
    return VD_EXIT_OK;
}

int admin_cmd_vol_revert(vd_pool *pool, struct cmd_args *a, FILE *out,
                         FILE *err)
{
    int r = vd_vol_revert(pool, a->vol, a->snap, !!(a->given & O_FORCE));
    if (r < 0)
        return admin_vol_fail(err, r, a->pool, a->vol, "revert");
    fprintf(out, "volume '%s/%s': reverted to snapshot '%s'\n", a->pool, a->vol,
            a->snap);
    return VD_EXIT_OK;
}

/* vol clone POOL/SRC[@SNAP] POOL/NEW (NEW: the F_FILE argument). */
int admin_cmd_vol_clone(vd_pool *pool, struct cmd_args *a, FILE *out, FILE *err)
{
    char src[2 * VD_NAME_MAX + 2];
    /* POOL/NEW; made absolute (DIR/POOL/NEW) when FILE arguments are */
    const char *slash = strrchr(a->file, '/'), *pn = slash;
    size_t pl = strlen(a->pool);

    while (pn && pn > a->file && pn[-1] != '/')
        pn--;
    if (!slash || (size_t)(slash - pn) != pl || strncmp(pn, a->pool, pl) ||
        !vd_name_is_valid(slash + 1)) {
        admin_msg(err,
                  "vol clone: '%s' names no new volume of pool '%s'; give "
                  "%s/NEW (a clone lives in its source's pool)",
                  a->file, a->pool, a->pool);
        return VD_EXIT_USAGE;
    }
    snprintf(src, sizeof(src), "%s%s%s", a->vol, a->snap[0] ? "@" : "",
             a->snap);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int r = vd_vol_clone(pool, src, slash + 1);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (r < 0)
        return admin_vol_fail(err, r, a->pool, slash + 1, "clone");
    fprintf(out, "volume '%s/%s': cloned from '%s/%s' in %.1f ms\n", a->pool,
            slash + 1, a->pool, src,
            (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6);
    return VD_EXIT_OK;
}

int admin_cmd_snap_list(vd_pool *pool, struct cmd_args *a, FILE *out, FILE *err)
{
    struct vd_snap_info *si;
    size_t n;
    char sz[32], ex[32], when[32];
    int r = vd_snap_list(pool, a->vol, &si, &n);

    if (r < 0)
        return admin_vol_fail(err, r, a->pool, a->vol, "snap list");
    if (a->given & O_JSON) {
        fprintf(out, "{\"pool\":\"%s\",\"volume\":\"%s\",\"snapshots\":[",
                a->pool, a->vol);
        for (size_t i = 0; i < n; i++)
            fprintf(out,
                    "%s{\"name\":\"%s\",\"size\":%llu,\"created\":%lld,"
                    "\"exclusive\":%llu,\"exported\":%s}",
                    i ? "," : "", si[i].name, (unsigned long long)si[i].size,
                    (long long)si[i].ctime, (unsigned long long)si[i].exclusive,
                    si[i].exported ? "true" : "false");
        fprintf(out, "]}\n");
    } else if (!n) {
        fprintf(out, "volume '%s/%s' has no snapshots\n", a->pool, a->vol);
    } else {
        fprintf(out, "%-24s %10s %-20s %10s %s\n", "SNAPSHOT", "SIZE",
                "CREATED", "EXCLUSIVE", "EXPORTED");
        for (size_t i = 0; i < n; i++) {
            time_t t = (time_t)si[i].ctime;
            struct tm tm;
            gmtime_r(&t, &tm);
            strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%SZ", &tm);
            admin_fmt_size(si[i].size, sz, sizeof(sz));
            admin_fmt_size(si[i].exclusive, ex, sizeof(ex));
            fprintf(out, "%-24s %10s %-20s %10s %s\n", si[i].name, sz, when, ex,
                    si[i].exported ? "yes" : "no");
        }
    }
    free(si);
    return VD_EXIT_OK;
}

int admin_cmd_pool_check(vd_pool *pool, struct cmd_args *a, FILE *out,
                         FILE *err)
{
    struct vd_pool_check res;
    int r = vd_pool_check(pool, !!(a->given & O_REPAIR), &res);

    if (r < 0)
        return admin_lib_fail(err, r, "pool '%s': check failed", a->pool);
    fprintf(out,
            "pool '%s': %llu thin volume(s) checked: %llu leaked chunk(s)%s, "
            "%llu bad reference(s)\n",
            a->pool, (unsigned long long)res.volumes,
            (unsigned long long)res.leaked, res.repaired ? " (freed)" : "",
            (unsigned long long)res.bad);
    if (res.reclaimed)
        fprintf(out,
                "pool '%s': %llu chunk(s) of interrupted writes or removals "
                "were reclaimed when the pool opened (crash recovery)\n",
                a->pool, (unsigned long long)res.reclaimed);
    if (res.bad || (res.leaked && !res.repaired))
        return VD_EXIT_FAIL;
    return VD_EXIT_OK;
}
