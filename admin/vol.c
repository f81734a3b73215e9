/* vdlvm admin: the volume and mirror commands (vol create, list, remove,
 * extend, repair; resync; verify).  Each runs on the thread of
 * vd_admin_exec; output goes to out, messages to err.
 *
 * verify draws its progress on err (admin/progress.c: a bar on a terminal,
 * one line per 10% otherwise) from vd_mirror_verify_cb's callback, on the
 * command's own thread.  Inside tgtd (err a memory stream, no descriptor)
 * nothing is drawn: the output would only come back at the end; `status`
 * shows a running verify there (admin_verify_status_*, from the registry
 * of replica/verify.c).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../replica/vdreplica.h"
#include "admin_int.h"

/* ---- the commands ------------------------------------------------------- */

int admin_cmd_vol_create(vd_pool *pool, struct cmd_args *a, FILE *out,
                         FILE *err)
{
    struct vd_vol_opts o;
    struct vd_vol_info vi;
    struct vd_pool_info pi;
    char sz[32], es[32];
    int r;

    vd_vol_opts_init(&o);
    o.layout = a->layout;
    o.copies = a->copies;
    o.allow_same_node = !!(a->given & O_SAME_NODE);
    o.region_size = a->region_size;
    if (a->chunk_size && vd_pool_get_info(pool, &pi) == 0 &&
        a->chunk_size > pi.extent_size) {
        admin_fmt_size(a->chunk_size, sz, sizeof(sz));
        admin_fmt_size(pi.extent_size, es, sizeof(es));
        admin_msg(err,
                  "vol create: --chunk-size %s is larger than the extent "
                  "size of pool '%s' (%s); use a power of two from 4KiB to "
                  "%s",
                  sz, a->pool, es, es);
        return VD_EXIT_USAGE;
    }
#if VD_HAVE_THIN_OPTS
    o.thin = !!(a->given & O_THIN);
    o.chunk_size = a->chunk_size;
#else
    if (a->given & O_THIN) {
        admin_msg(err,
                  "volume '%s/%s': create failed: thin volumes are not "
                  "supported by this build",
                  a->pool, a->vol);
        return VD_EXIT_FAIL;
    }
#endif
    r = vd_vol_create(pool, a->vol, a->size, &o);
    if (r < 0)
        return admin_vol_fail(err, r, a->pool, a->vol, "create");
    if (vd_vol_get_info(pool, a->vol, &vi) < 0 ||
        vd_pool_get_info(pool, &pi) < 0) {
        fprintf(out, "volume '%s/%s': created\n", a->pool, a->vol);
        return VD_EXIT_OK;
    }
    struct vd_mirror_info mi;
    int has_mi = 0;
    admin_mirror_get(pool, a->vol, &mi, &has_mi);
    admin_fmt_size(vi.size, sz, sizeof(sz));
    admin_fmt_size(pi.extent_size, es, sizeof(es));
    uint64_t next = vi.size / pi.extent_size;
    if (vi.thin) {
        char cs[32];
        admin_fmt_size(vi.chunk_size, cs, sizeof(cs));
        fprintf(out,
                "volume '%s/%s': created, %s thin (chunks of %s allocated on "
                "first write), %s",
                a->pool, a->vol, sz, cs, vd_layout_name(vi.layout));
    } else {
        fprintf(out, "volume '%s/%s': created, %s (%llu extent%s of %s), %s",
                a->pool, a->vol, sz, (unsigned long long)next,
                next == 1 ? "" : "s", es, vd_layout_name(vi.layout));
    }
    if (has_mi)
        fprintf(out, ", %u copies", vi.copies);
    fputc('\n', out);
    if (vi.thin && pi.total_bytes && pi.provisioned_bytes > pi.total_bytes) {
        char pr[32], t[32];
        admin_fmt_size(pi.provisioned_bytes, pr, sizeof(pr));
        admin_fmt_size(pi.total_bytes, t, sizeof(t));
        fprintf(out,
                "  note: pool '%s' is overcommitted: %s provisioned on %s "
                "(%.2fx); writes that need a new chunk fail once it is full\n",
                a->pool, pr, t,
                (double)pi.provisioned_bytes / (double)pi.total_bytes);
    }
    if (vi.size != a->size) {
        char asked[32];
        admin_fmt_size(a->size, asked, sizeof(asked));
        fprintf(out,
                "  note: %llu bytes (%s) asked, rounded up to whole "
                "extents of %s\n",
                (unsigned long long)a->size, asked, es);
    }
    if (has_mi) {
        int same = 1;
        for (uint32_t k = 1; k < mi.copies && k < 3; k++)
            if (strcmp(mi.legs[k].node, mi.legs[0].node))
                same = 0;
        if (same && mi.copies > 1)
            admin_msg(err,
                      "warning: volume '%s/%s': every leg is on node "
                      "'%s' (--allow-same-node): the mirror survives the loss "
                      "of a device, not of that node; legs on devices of the "
                      "same disk protect nothing",
                      a->pool, a->vol, mi.legs[0].node);
    }
    return VD_EXIT_OK;
}

int admin_cmd_vol_list(vd_pool *pool, struct cmd_args *a, FILE *out, FILE *err)
{
    int n = vd_pool_vol_count(pool);
    struct table t = { .ncols = 8 };

    if (n < 0)
        return admin_lib_fail(err, n, "pool '%s': listing volumes failed",
                              a->pool);
    if (a->given & O_JSON) {
        fputs("{\"pool\":", out);
        admin_jstr(out, vd_pool_name(pool));
        fputs(",\"volumes\":[", out);
    } else if (n == 0) {
        fprintf(out, "pool '%s' has no volumes\n", a->pool);
        return VD_EXIT_OK;
    } else {
        admin_tbl_cell(&t, 0, "VOLUME");
        admin_tbl_cell(&t, 1, "SIZE");
        admin_tbl_cell(&t, 2, "LAYOUT");
        admin_tbl_cell(&t, 3, "COPIES");
        admin_tbl_cell(&t, 4, "EXPORTED");
        admin_tbl_cell(&t, 5, "PROVISIONING");
        admin_tbl_cell(&t, 6, "ALLOCATED");
        admin_tbl_cell(&t, 7, "CHUNK");
    }
    for (int i = 0; i < n; i++) {
        struct vd_vol_info vi;
        struct vd_vol_status st;
        char sz[32], al[48], cs[32];
        int r = vd_pool_vol_get_info(pool, i, &vi);
        if (r == 0)
            r = vd_vol_get_status(pool, vi.name, &st);
        if (r < 0) {
            admin_tbl_free(&t);
            return admin_lib_fail(err, r, "pool '%s': listing volumes failed",
                                  a->pool);
        }
        if (a->given & O_JSON) {
            if (i)
                fputc(',', out);
            admin_json_vol(out, pool, &vi, NULL, 0, NULL, &st);
            continue;
        }
        admin_fmt_size(vi.size, sz, sizeof(sz));
        admin_tbl_cell(&t, 0, "%s/%s", a->pool, vi.name);
        admin_tbl_cell(&t, 1, "%s", sz);
        admin_tbl_cell(&t, 2, "%s", vd_layout_name(vi.layout));
        admin_tbl_cell(&t, 3, "%u", vi.copies);
        admin_tbl_cell(&t, 4, "%s", vi.open_count ? "yes" : "no");
        admin_tbl_cell(&t, 5, "%s", vi.thin ? "thin" : "thick");
        admin_fmt_alloc(st.allocated, vi.size, al, sizeof(al));
        admin_tbl_cell(&t, 6, "%s", al);
        if (vi.thin)
            admin_fmt_size(vi.chunk_size, cs, sizeof(cs));
        admin_tbl_cell(&t, 7, "%s", vi.thin ? cs : "-");
    }
    /* clones (pool/snap.c): their own and shared bytes, their origin */
    struct vd_clone_info *cl = NULL;
    size_t ncl = 0;
    if (vd_clone_list(pool, &cl, &ncl) < 0)
        ncl = 0;
    if (a->given & O_JSON)
        fputs("],\"clones\":[", out);
    for (size_t i = 0; i < ncl; i++) {
        char sz[32], ex[32], sh[32];
        if (a->given & O_JSON) {
            fprintf(out,
                    "%s{\"name\":\"%s\",\"origin\":\"%s\",\"size\":%llu,"
                    "\"exclusive\":%llu,\"shared\":%llu,\"exported\":%s}",
                    i ? "," : "", cl[i].name, cl[i].origin,
                    (unsigned long long)cl[i].size,
                    (unsigned long long)cl[i].exclusive,
                    (unsigned long long)cl[i].shared,
                    cl[i].exported ? "true" : "false");
            continue;
        }
        admin_fmt_size(cl[i].size, sz, sizeof(sz));
        admin_fmt_size(cl[i].exclusive, ex, sizeof(ex));
        admin_fmt_size(cl[i].shared, sh, sizeof(sh));
        admin_tbl_cell(&t, 0, "%s/%s", a->pool, cl[i].name);
        admin_tbl_cell(&t, 1, "%s", sz);
        admin_tbl_cell(&t, 2, "clone of %s", cl[i].origin);
        admin_tbl_cell(&t, 3, "-");
        admin_tbl_cell(&t, 4, "%s", cl[i].exported ? "yes" : "no");
        admin_tbl_cell(&t, 5, "thin");
        admin_tbl_cell(&t, 6, "%s own, %s shared", ex, sh);
        admin_tbl_cell(&t, 7, "-");
    }
    free(cl);
    if (a->given & O_JSON)
        fputs("]}\n", out);
    else
        admin_tbl_print(&t, out, "");
    admin_tbl_free(&t);
    return VD_EXIT_OK;
}

int admin_cmd_vol_remove(vd_pool *pool, struct cmd_args *a, FILE *out,
                         FILE *err)
{
    int r = vd_vol_remove(pool, a->vol);

    if (r < 0)
        return admin_vol_fail(err, r, a->pool, a->vol, "remove");
    fprintf(out, "volume '%s/%s': removed\n", a->pool, a->vol);
    return VD_EXIT_OK;
}

int admin_cmd_vol_extend(vd_pool *pool, struct cmd_args *a, FILE *out,
                         FILE *err)
{
    struct vd_vol_info vi;
    uint64_t new_size = a->size;
    char from[32], to[32];
    int r;

    r = vd_vol_get_info(pool, a->vol, &vi);
    if (r < 0)
        return admin_vol_fail(err, r, a->pool, a->vol, "lookup");
    if (a->size_rel) {
        if (UINT64_MAX - vi.size < a->size) {
            admin_msg(err, "volume '%s/%s': --size +%llu overflows", a->pool,
                      a->vol, (unsigned long long)a->size);
            return VD_EXIT_USAGE;
        }
        new_size = vi.size + a->size;
    }
    admin_fmt_size(vi.size, from, sizeof(from));
    r = vd_vol_extend(pool, a->vol, new_size);
    if (r < 0)
        return admin_vol_fail(err, r, a->pool, a->vol, "extend");
    if (vd_vol_get_info(pool, a->vol, &vi) == 0)
        new_size = vi.size;
    admin_fmt_size(new_size, to, sizeof(to));
    fprintf(out, "volume '%s/%s': extended from %s to %s\n", a->pool, a->vol,
            from, to);
    return VD_EXIT_OK;
}

/* The mirror info of a volume, or an exit code with a message. */
static int mirror_info(vd_pool *pool, struct cmd_args *a, const char *what,
                       struct vd_mirror_info *mi, FILE *err)
{
    struct vd_vol_info vi;
    int r = vd_mirror_get_info(pool, a->vol, mi);

    if (r == -EINVAL && vd_vol_get_info(pool, a->vol, &vi) == 0) {
        admin_msg(err,
                  "volume '%s/%s': %s applies to mirrored volumes; this one is "
                  "%s",
                  a->pool, a->vol, what, vd_layout_name(vi.layout));
        return VD_EXIT_FAIL;
    }
    if (r < 0)
        return admin_vol_fail(err, r, a->pool, a->vol, what);
    return -1;
}

int admin_cmd_resync(vd_pool *pool, struct cmd_args *a, FILE *out, FILE *err)
{
    struct vd_mirror_info mi;
    char rate[40], rs[32];
    int r = mirror_info(pool, a, "resync", &mi, err);

    if (r >= 0)
        return r;
    uint64_t limit = a->given & O_RATE ? a->rate : mi.rate_limit;
    r = vd_mirror_resync_start(pool, a->vol, limit);
    if (r < 0)
        return admin_vol_fail(err, r, a->pool, a->vol, "resync");
    admin_fmt_rate(limit, rate, sizeof(rate));
    admin_fmt_size(mi.region_size, rs, sizeof(rs));
    if (!(a->given & O_WAIT)) {
        if (mi.dirty_regions == 0 && mi.resync_state != VD_RESYNC_RUNNING)
            fprintf(out,
                    "volume '%s/%s': nothing to resync (no region "
                    "marked); rate limit %s for later resyncs of this "
                    "volume while this tgtd holds the pool\n",
                    a->pool, a->vol, rate);
        else
            fprintf(out,
                    "volume '%s/%s': resync started, %llu regions of "
                    "%s marked, rate %s; follow it with 'vdlvm status "
                    "%s/%s'\n",
                    a->pool, a->vol, (unsigned long long)mi.dirty_regions, rs,
                    rate, a->pool, a->vol);
        return VD_EXIT_OK;
    }
    r = admin_resync_wait(pool, a->pool, a->vol, "resync", err);
    if (r < 0)
        return admin_vol_fail(err, r, a->pool, a->vol, "resync");
    if (vd_mirror_get_info(pool, a->vol, &mi) == 0) {
        int insync = 1;
        for (uint32_t k = 0; k < mi.copies; k++)
            if (mi.legs[k].state != VD_LEG_INSYNC)
                insync = 0;
        if (!insync) {
            admin_msg(err,
                      "volume '%s/%s': resync ended but not every leg is "
                      "in-sync; see 'vdlvm status %s/%s'",
                      a->pool, a->vol, a->pool, a->vol);
            return VD_EXIT_FAIL;
        }
    }
    fprintf(out, "volume '%s/%s': resync done, legs in-sync\n", a->pool,
            a->vol);
    return VD_EXIT_OK;
}

static void verify_progress(void *arg, uint64_t done, uint64_t total)
{
    admin_progress_update(arg, done, total);
}

/* ",\"verify\":{...}" of one running verify (JSON). */
static void verify_json(FILE *out, const struct vd_verify_progress *v)
{
    uint64_t rate = v->elapsed_ms ? v->done_bytes * 1000 / v->elapsed_ms : 0;
    uint64_t eta = admin_progress_eta(v->done_bytes, v->total_bytes, rate);

    fputs("{\"volume\":", out);
    admin_jstr(out, v->vol);
    fprintf(out,
            ",\"repair\":%s,\"done_bytes\":%llu,\"total_bytes\":%llu,"
            "\"differing_regions\":%llu,\"rate_bytes_per_s\":%llu,"
            "\"eta_s\":",
            v->repair ? "true" : "false", (unsigned long long)v->done_bytes,
            (unsigned long long)v->total_bytes, (unsigned long long)v->differ,
            (unsigned long long)rate);
    if (eta == UINT64_MAX)
        fputs("null}", out);
    else
        fprintf(out, "%llu}", (unsigned long long)eta);
}

void admin_verify_status_json(FILE *out, vd_pool *pool)
{
    struct vd_verify_progress *v;
    size_t n;

    fputs("\"verify\":[", out);
    if (vd_mirror_verify_progress(pool, NULL, &v, &n) == 0) {
        for (size_t i = 0; i < n; i++) {
            if (i)
                fputc(',', out);
            verify_json(out, &v[i]);
        }
        free(v);
    }
    fputs("],", out);
}

void admin_verify_json_vol(FILE *out, vd_pool *pool, const char *vol,
                           const char *obj, size_t len)
{
    struct vd_verify_progress *v = NULL;
    size_t n = 0;

    /* obj is one JSON object: add "verify" before its closing brace */
    while (len && obj[len - 1] != '}')
        len--;
    if (!len) {
        fwrite(obj, 1, len, out);
        return;
    }
    fwrite(obj, 1, len - 1, out);
    fputs(",\"verify\":", out);
    if (vd_mirror_verify_progress(pool, vol, &v, &n) == 0 && n)
        verify_json(out, &v[n - 1]); /* the newest */
    else
        fputs("null", out);
    fputc('}', out);
    free(v);
}

void admin_verify_status_text(FILE *out, vd_pool *pool, const char *vol)
{
    struct vd_verify_progress *v;
    size_t n;
    char line[160];

    if (vd_mirror_verify_progress(pool, vol, &v, &n) < 0)
        return;
    for (size_t i = 0; i < n; i++) {
        uint64_t rate =
            v[i].elapsed_ms ? v[i].done_bytes * 1000 / v[i].elapsed_ms : 0;
        admin_progress_line(line, sizeof(line), v[i].done_bytes,
                            v[i].total_bytes, rate, 30);
        fprintf(out, "  %s '%s': %s, %llu regions differ\n",
                v[i].repair ? "verify --repair" : "verify", v[i].vol, line,
                (unsigned long long)v[i].differ);
    }
    free(v);
}

int admin_cmd_verify(vd_pool *pool, struct cmd_args *a, FILE *out, FILE *err)
{
    struct vd_mirror_info mi;
    struct vd_verify_result res;
    struct admin_progress pg;
    int repair = !!(a->given & O_REPAIR);
    char rs[32], label[160];
    int r = mirror_info(pool, a, "verify", &mi, err);

    if (r >= 0)
        return r;
    memset(&res, 0, sizeof(res));
    snprintf(label, sizeof(label), "%s %s/%s",
             repair ? "verify --repair" : "verify", a->pool, a->vol);
    /* no descriptor (inside tgtd): nothing drawn (see the top) */
    admin_progress_start(&pg, err && fileno(err) >= 0 ? err : NULL, label, 0,
                         -1);
    r = vd_mirror_verify_cb(pool, a->vol, repair, &res, verify_progress, &pg);
    admin_progress_end(&pg, r < 0 ? "stopped" : "done");
    if (r < 0)
        return admin_vol_fail(err, r, a->pool, a->vol, "verify");
    admin_fmt_size(res.region_size, rs, sizeof(rs));
    if (res.ndiff == 0) {
        fprintf(out,
                "volume '%s/%s': legs equal (%llu regions of %s "
                "compared)\n",
                a->pool, a->vol, (unsigned long long)res.regions, rs);
        vd_verify_result_free(&res);
        return VD_EXIT_OK;
    }
    fprintf(out, "volume '%s/%s': %zu of %llu regions of %s differ\n", a->pool,
            a->vol, res.ndiff, (unsigned long long)res.regions, rs);
    for (size_t i = 0; i < res.ndiff && i < 100; i++) {
        uint64_t b = res.diff[i] * res.region_size;
        fprintf(out, "  region %llu: bytes %llu-%llu\n",
                (unsigned long long)res.diff[i], (unsigned long long)b,
                (unsigned long long)(b + res.region_size - 1));
    }
    if (res.ndiff > 100)
        fprintf(out, "  ... and %zu more\n", res.ndiff - 100);
    if (repair)
        fprintf(out, "volume '%s/%s': %zu of %zu regions repaired\n", a->pool,
                a->vol, res.repaired, res.ndiff);
    r = repair && res.repaired >= res.ndiff ? VD_EXIT_OK : VD_EXIT_DIFF;
    if (r == VD_EXIT_DIFF && !repair)
        admin_msg(err,
                  "volume '%s/%s': legs differ; repair with 'vdlvm verify "
                  "%s/%s --repair'",
                  a->pool, a->vol, a->pool, a->vol);
    vd_verify_result_free(&res);
    return r;
}

int admin_cmd_vol_repair(vd_pool *pool, struct cmd_args *a, FILE *out,
                         FILE *err)
{
    struct vd_mirror_info mi;
    int r = mirror_info(pool, a, "repair", &mi, err);

    if (r >= 0)
        return r;
    r = vd_mirror_replace_leg(pool, a->vol, a->replace, a->with);
    if (r < 0) {
        /* Whatever refuses it here (the device already holds another leg,
         * has too few free extents, is not in the pool) is the pool's
         * state, not the command's form: 1, like too little free space. */
        int code = admin_lib_fail(err, r,
                                  "volume '%s/%s': moving the leg on '%s' "
                                  "to '%s' failed",
                                  a->pool, a->vol, a->replace, a->with);
        return code == VD_EXIT_USAGE ? VD_EXIT_FAIL : code;
    }
    if (!(a->given & O_WAIT)) {
        fprintf(out,
                "volume '%s/%s': leg on '%s' moved to '%s', rebuilding; "
                "follow it with 'vdlvm status %s/%s'\n",
                a->pool, a->vol, a->replace, a->with, a->pool, a->vol);
        return VD_EXIT_OK;
    }
    r = admin_resync_wait(pool, a->pool, a->vol, "rebuild", err);
    if (r < 0)
        return admin_vol_fail(err, r, a->pool, a->vol, "rebuild");
    fprintf(out, "volume '%s/%s': leg on '%s' moved to '%s' and rebuilt\n",
            a->pool, a->vol, a->replace, a->with);
    return VD_EXIT_OK;
}
