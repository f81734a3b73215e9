/* vdlvm admin: what each command does, and its output (text and JSON).
 * Every function here runs on the thread of vd_admin_exec; output goes to
 * out, messages to err.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../replica/vdreplica.h"
#include "admin_int.h"

static void fmt_size(uint64_t b, char *buf, size_t len)
{
    vd_size_format(b, buf, len);
}

/* The mirror info of vol when it is a mirror: 0 with *has set (0 for a
 * volume of another layout: vd_mirror_get_info says -EINVAL), or the
 * failure.  Admin code never tests a layout id: the pool's registry does. */
static int mirror_get(vd_pool *pool, const char *vol, struct vd_mirror_info *mi,
                      int *has)
{
    int r = vd_mirror_get_info(pool, vol, mi);

    *has = r == 0;
    return r == -EINVAL ? 0 : r;
}

static const char *dev_state_str(enum vd_dev_state s)
{
    switch (s) {
    case VD_DEV_OK:
        return "ok";
    case VD_DEV_MISSING:
        return "missing";
    case VD_DEV_FAILED:
        return "failed";
    }
    return "unknown";
}

/* JSON string with escapes; bytes that are not valid UTF-8 become U+FFFD so
 * the document stays well-formed whatever a path contains. */
static void jstr(FILE *f, const char *s)
{
    const unsigned char *p = (const unsigned char *)(s ? s : "");

    fputc('"', f);
    while (*p) {
        unsigned char c = *p;
        if (c == '"' || c == '\\') {
            fputc('\\', f);
            fputc(c, f);
            p++;
        } else if (c < 0x20) {
            switch (c) {
            case '\n':
                fputs("\\n", f);
                break;
            case '\r':
                fputs("\\r", f);
                break;
            case '\t':
                fputs("\\t", f);
                break;
            default:
                fprintf(f, "\\u%04x", c);
            }
            p++;
        } else if (c < 0x80) {
            fputc(c, f);
            p++;
        } else {
            int n = c >= 0xf0 && c <= 0xf4 ? 3
                    : c >= 0xe0            ? 2
                    : c >= 0xc2            ? 1
                                           : -1;
            int ok = n > 0;
            for (int k = 1; ok && k <= n; k++)
                ok = (p[k] & 0xc0) == 0x80;
            if (ok && n == 2) /* no overlongs, no surrogates */
                ok =
                    !(c == 0xe0 && p[1] < 0xa0) && !(c == 0xed && p[1] >= 0xa0);
            if (ok && n == 3)
                ok =
                    !(c == 0xf0 && p[1] < 0x90) && !(c == 0xf4 && p[1] >= 0x90);
            if (ok) {
                fwrite(p, 1, n + 1, f);
                p += n + 1;
            } else {
                fputs("\\ufffd", f);
                p++;
            }
        }
    }
    fputc('"', f);
}

/* A text table: columns padded to their widest cell, last one unpadded. */
#define TBL_MAXCOLS 10
struct table {
    int ncols;
    size_t nrows, cap;
    char **cells; /* nrows * ncols, malloc'd */
};

static void tbl_cell(struct table *t, int col, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void tbl_cell(struct table *t, int col, const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;

    if (col == 0) {
        if (t->nrows == t->cap) {
            size_t cap = t->cap ? t->cap * 2 : 16;
            char **n = realloc(t->cells, cap * t->ncols * sizeof(*n));
            if (!n)
                return;
            memset(n + t->cap * t->ncols, 0,
                   (cap - t->cap) * t->ncols * sizeof(*n));
            t->cells = n;
            t->cap = cap;
        }
        t->nrows++;
    }
    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    free(t->cells[(t->nrows - 1) * t->ncols + col]);
    t->cells[(t->nrows - 1) * t->ncols + col] = s;
}

static void tbl_print(struct table *t, FILE *out, const char *indent)
{
    size_t w[TBL_MAXCOLS] = { 0 };

    for (size_t r = 0; r < t->nrows; r++)
        for (int c = 0; c < t->ncols; c++) {
            const char *s = t->cells[r * t->ncols + c];
            size_t l = s ? strlen(s) : 0;
            if (l > w[c])
                w[c] = l;
        }
    for (size_t r = 0; r < t->nrows; r++) {
        fputs(indent, out);
        for (int c = 0; c < t->ncols; c++) {
            const char *s = t->cells[r * t->ncols + c];
            if (c == t->ncols - 1)
                fprintf(out, "%s\n", s ? s : "");
            else
                fprintf(out, "%-*s  ", (int)w[c], s ? s : "");
        }
    }
}

static void tbl_free(struct table *t)
{
    for (size_t i = 0; i < t->nrows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    t->cells = NULL;
    t->nrows = t->cap = 0;
}

static void dev_name(const vd_pool *pool, uint32_t i, char *buf, size_t len)
{
    struct vd_dev_info di;

    if (vd_pool_dev_get_info(pool, i, &di) == 0)
        snprintf(buf, len, "%s", di.name);
    else
        snprintf(buf, len, "#%u", i);
}

/* "le 0-47 -> d0 pe 0-47, le 48-60 -> d1 pe 0-12" (legs prefixed for
 * mirrors).  Returns a malloc'd string or NULL. */
static char *runs_brief(const vd_pool *pool, const struct vd_run *runs,
                        size_t n, uint32_t copies)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    if (!f)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        const struct vd_run *r = &runs[i];
        char dn[VD_NAME_MAX + 8];
        dev_name(pool, r->dev, dn, sizeof(dn));
        if (i)
            fputs(", ", f);
        if (copies > 1)
            fprintf(f, "leg %u: ", r->leg);
        if (r->count == 1)
            fprintf(f, "le %llu -> %s pe %llu", (unsigned long long)r->le_start,
                    dn, (unsigned long long)r->pe_start);
        else
            fprintf(f, "le %llu-%llu -> %s pe %llu-%llu",
                    (unsigned long long)r->le_start,
                    (unsigned long long)(r->le_start + r->count - 1), dn,
                    (unsigned long long)r->pe_start,
                    (unsigned long long)(r->pe_start + r->count - 1));
    }
    if (!n)
        fputs("-", f);
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

static void json_runs(FILE *out, const vd_pool *pool, const struct vd_run *runs,
                      size_t n)
{
    fputs("[", out);
    for (size_t i = 0; i < n; i++) {
        struct vd_dev_info di;
        const struct vd_run *r = &runs[i];
        int ok = vd_pool_dev_get_info(pool, r->dev, &di) == 0;
        fprintf(out, "%s{\"leg\":%u,\"le\":%llu,\"count\":%llu,\"device\":",
                i ? "," : "", r->leg, (unsigned long long)r->le_start,
                (unsigned long long)r->count);
        jstr(out, ok ? di.name : "");
        fputs(",\"node\":", out);
        jstr(out, ok ? di.node : "");
        fprintf(out, ",\"pe\":%llu}", (unsigned long long)r->pe_start);
    }
    fputs("]", out);
}

static void json_mirror(FILE *out, const struct vd_mirror_info *mi);
static void mirror_brief(const struct vd_mirror_info *mi, char *buf,
                         size_t len);

static void json_vol(FILE *out, const vd_pool *pool,
                     const struct vd_vol_info *vi, const struct vd_run *runs,
                     size_t nruns, const struct vd_mirror_info *mi)
{
    fputs("{\"volume\":", out);
    char full[2 * VD_NAME_MAX + 2];
    snprintf(full, sizeof(full), "%s/%s", vd_pool_name(pool), vi->name);
    jstr(out, full);
    fputs(",\"pool\":", out);
    jstr(out, vd_pool_name(pool));
    fputs(",\"name\":", out);
    jstr(out, vi->name);
    fprintf(out,
            ",\"size\":%llu,\"layout\":\"%s\",\"copies\":%u,\"open\":%u,"
            "\"exported\":%s,\"state\":",
            (unsigned long long)vi->size, vd_layout_name(vi->layout),
            vi->copies, vi->open_count, vi->open_count ? "true" : "false");
    if (mi) {
        char st[128];
        mirror_brief(mi, st, sizeof(st));
        jstr(out, st);
    } else {
        jstr(out, "ok");
    }
    if (runs) {
        fputs(",\"extents\":", out);
        json_runs(out, pool, runs, nruns);
    }
    if (mi)
        json_mirror(out, mi);
    fputs("}", out);
}

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
    mirror_get(pool, a->vol, &mi, &has_mi);
    fmt_size(vi.size, sz, sizeof(sz));
    fmt_size(pi.extent_size, es, sizeof(es));
    uint64_t next = vi.size / pi.extent_size;
    fprintf(out, "volume '%s/%s': created, %s (%llu extent%s of %s), %s",
            a->pool, a->vol, sz, (unsigned long long)next, next == 1 ? "" : "s",
            es, vd_layout_name(vi.layout));
    if (has_mi)
        fprintf(out, ", %u copies", vi.copies);
    fputc('\n', out);
    if (vi.size != a->size) {
        char asked[32];
        fmt_size(a->size, asked, sizeof(asked));
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
    struct table t = { .ncols = 5 };

    if (n < 0)
        return admin_lib_fail(err, n, "pool '%s': listing volumes failed",
                              a->pool);
    if (a->given & O_JSON) {
        fputs("{\"pool\":", out);
        jstr(out, vd_pool_name(pool));
        fputs(",\"volumes\":[", out);
    } else if (n == 0) {
        fprintf(out, "pool '%s' has no volumes\n", a->pool);
        return VD_EXIT_OK;
    } else {
        tbl_cell(&t, 0, "VOLUME");
        tbl_cell(&t, 1, "SIZE");
        tbl_cell(&t, 2, "LAYOUT");
        tbl_cell(&t, 3, "COPIES");
        tbl_cell(&t, 4, "EXPORTED");
    }
    for (int i = 0; i < n; i++) {
        struct vd_vol_info vi;
        char sz[32];
        int r = vd_pool_vol_get_info(pool, i, &vi);
        if (r < 0) {
            tbl_free(&t);
            return admin_lib_fail(err, r, "pool '%s': listing volumes failed",
                                  a->pool);
        }
        if (a->given & O_JSON) {
            if (i)
                fputc(',', out);
            json_vol(out, pool, &vi, NULL, 0, NULL);
            continue;
        }
        fmt_size(vi.size, sz, sizeof(sz));
        tbl_cell(&t, 0, "%s/%s", a->pool, vi.name);
        tbl_cell(&t, 1, "%s", sz);
        tbl_cell(&t, 2, "%s", vd_layout_name(vi.layout));
        tbl_cell(&t, 3, "%u", vi.copies);
        tbl_cell(&t, 4, "%s", vi.open_count ? "yes" : "no");
    }
    if (a->given & O_JSON)
        fputs("]}\n", out);
    else
        tbl_print(&t, out, "");
    tbl_free(&t);
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
    fmt_size(vi.size, from, sizeof(from));
    r = vd_vol_extend(pool, a->vol, new_size);
    if (r < 0)
        return admin_vol_fail(err, r, a->pool, a->vol, "extend");
    if (vd_vol_get_info(pool, a->vol, &vi) == 0)
        new_size = vi.size;
    fmt_size(new_size, to, sizeof(to));
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

static void fmt_rate(uint64_t bps, char *buf, size_t len)
{
    char s[32];
    if (!bps) {
        snprintf(buf, len, "unlimited");
        return;
    }
    fmt_size(bps, s, sizeof(s));
    snprintf(buf, len, "%s/s", s);
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
    fmt_rate(limit, rate, sizeof(rate));
    fmt_size(mi.region_size, rs, sizeof(rs));
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
    r = vd_mirror_resync_wait(pool, a->vol, 0);
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

int admin_cmd_verify(vd_pool *pool, struct cmd_args *a, FILE *out, FILE *err)
{
    struct vd_mirror_info mi;
    struct vd_verify_result res;
    int repair = !!(a->given & O_REPAIR);
    char rs[32];
    int r = mirror_info(pool, a, "verify", &mi, err);

    if (r >= 0)
        return r;
    memset(&res, 0, sizeof(res));
    r = vd_mirror_verify(pool, a->vol, repair, &res);
    if (r < 0)
        return admin_vol_fail(err, r, a->pool, a->vol, "verify");
    fmt_size(res.region_size, rs, sizeof(rs));
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
    r = vd_mirror_resync_wait(pool, a->vol, 0);
    if (r < 0)
        return admin_vol_fail(err, r, a->pool, a->vol, "rebuild");
    fprintf(out, "volume '%s/%s': leg on '%s' moved to '%s' and rebuilt\n",
            a->pool, a->vol, a->replace, a->with);
    return VD_EXIT_OK;
}

static const char *resync_state_str(enum vd_resync_state s)
{
    return s == VD_RESYNC_RUNNING  ? "running"
           : s == VD_RESYNC_PAUSED ? "paused"
                                   : "idle";
}

/* "in-sync", "degraded (leg 1 failed)", "resyncing 45%". */
static void mirror_brief(const struct vd_mirror_info *mi, char *buf, size_t len)
{
    size_t n = 0;
    int bad = 0;

    if (mi->resync_state == VD_RESYNC_RUNNING && mi->total_bytes) {
        snprintf(buf, len, "resyncing %u%%",
                 (unsigned)(mi->done_bytes * 100 / mi->total_bytes));
        return;
    }
    buf[0] = 0;
    for (uint32_t k = 0; k < mi->copies && k < 3; k++) {
        if (mi->legs[k].state == VD_LEG_INSYNC)
            continue;
        n += snprintf(
            buf + n, n < len ? len - n : 0, "%sleg %u %s",
            bad++ ? ", " : "degraded (", k,
            vd_leg_state_name(mi->legs[k].state, mi->legs[k].resyncing));
    }
    if (bad)
        snprintf(buf + n, n < len ? len - n : 0, ")");
    else
        snprintf(buf, len, "in-sync");
}

static void json_mirror(FILE *out, const struct vd_mirror_info *mi)
{
    fprintf(out, ",\"region_size\":%llu,\"legs\":[",
            (unsigned long long)mi->region_size);
    for (uint32_t k = 0; k < mi->copies && k < 3; k++) {
        fprintf(out, "%s{\"leg\":%u,\"device\":", k ? "," : "", k);
        jstr(out, mi->legs[k].device);
        fputs(",\"node\":", out);
        jstr(out, mi->legs[k].node);
        fputs(",\"state\":", out);
        jstr(out, vd_leg_state_name(mi->legs[k].state, mi->legs[k].resyncing));
        fputs("}", out);
    }
    fprintf(out,
            "],\"resync\":{\"state\":\"%s\",\"done_bytes\":%llu,"
            "\"total_bytes\":%llu,\"rate_bytes_per_s\":%llu,"
            "\"rate_limit\":%llu,\"dirty_regions\":%llu}",
            resync_state_str(mi->resync_state),
            (unsigned long long)mi->done_bytes,
            (unsigned long long)mi->total_bytes,
            (unsigned long long)mi->rate_bytes_per_s,
            (unsigned long long)mi->rate_limit,
            (unsigned long long)mi->dirty_regions);
}

/* Human form of a mirror: legs and the resync with a progress bar. */
static void print_mirror(FILE *out, const struct vd_mirror_info *mi)
{
    char rs[32], rate[40], lim[40];

    fmt_size(mi->region_size, rs, sizeof(rs));
    for (uint32_t k = 0; k < mi->copies && k < 3; k++)
        fprintf(out, "  leg %u     %s on node %s: %s\n", k, mi->legs[k].device,
                mi->legs[k].node,
                vd_leg_state_name(mi->legs[k].state, mi->legs[k].resyncing));
    fmt_rate(mi->rate_limit, lim, sizeof(lim));
    fprintf(out, "  bitmap    %llu of %llu regions of %s marked\n",
            (unsigned long long)mi->dirty_regions,
            (unsigned long long)(mi->region_size
                                     ? (mi->size + mi->region_size - 1) /
                                           mi->region_size
                                     : 0),
            rs);
    fprintf(out, "  resync    %s", resync_state_str(mi->resync_state));
    if (mi->resync_state != VD_RESYNC_IDLE && mi->total_bytes) {
        unsigned pct = (unsigned)(mi->done_bytes * 100 / mi->total_bytes);
        char done[32], total[32];
        fmt_size(mi->done_bytes, done, sizeof(done));
        fmt_size(mi->total_bytes, total, sizeof(total));
        fmt_rate(mi->rate_bytes_per_s, rate, sizeof(rate));
        fputs("  [", out);
        for (unsigned i = 0; i < 30; i++)
            fputc(i < pct * 30 / 100 ? '#' : '.', out);
        fprintf(out, "] %u%%  %s of %s", pct, done, total);
        if (mi->rate_bytes_per_s) {
            uint64_t left =
                (mi->total_bytes - mi->done_bytes) / mi->rate_bytes_per_s;
            fprintf(out, "  %s  %llu:%02llu left", rate,
                    (unsigned long long)(left / 60),
                    (unsigned long long)(left % 60));
        }
    }
    fprintf(out, "  (rate limit %s)\n", lim);
}

/* ---- status: one structure, rendered as text or as JSON ----------------- */
/* Like dm's STATUSTYPE_INFO/TABLE: status_*_get gathers everything from the
 * library once; the text and JSON renderers only print what it holds, so
 * the two forms cannot disagree. */

struct vol_status {
    struct vd_vol_info vi;
    struct vd_run *runs; /* malloc'd by vd_vol_get_runs */
    size_t nruns;
    struct vd_mirror_info mi; /* valid when has_mi */
    int has_mi;
};

struct dev_status {
    struct vd_dev_info di;
    uint64_t used, free; /* bytes */
};

struct pool_status {
    struct vd_pool_info pi;
    struct dev_status *devs; /* pi.ndevs, malloc'd */
    int nvols;
    struct vol_status *vols; /* nvols, malloc'd */
};

/* The rest of vs once vs->vi is filled: extents and, for a mirror, its
 * legs.  Free with vol_status_free. */
static int vol_status_fill(vd_pool *pool, struct vol_status *vs)
{
    int r = vd_vol_get_runs(pool, vs->vi.name, &vs->runs, &vs->nruns);

    if (r == 0)
        r = mirror_get(pool, vs->vi.name, &vs->mi, &vs->has_mi);
    return r;
}

static void vol_status_free(struct vol_status *vs)
{
    free(vs->runs);
    vs->runs = NULL;
}

static void pool_status_free(struct pool_status *st)
{
    for (int i = 0; st->vols && i < st->nvols; i++)
        vol_status_free(&st->vols[i]);
    free(st->vols);
    free(st->devs);
    st->vols = NULL;
    st->devs = NULL;
}

/* Everything `status POOL` shows; 0 or a negative errno (st freed). */
static int pool_status_get(vd_pool *pool, struct pool_status *st)
{
    int r;

    memset(st, 0, sizeof(*st));
    r = vd_pool_get_info(pool, &st->pi);
    if (r < 0)
        return r;
    st->nvols = vd_pool_vol_count(pool);
    if (st->nvols < 0)
        return st->nvols;
    st->devs = calloc(st->pi.ndevs ? st->pi.ndevs : 1, sizeof(*st->devs));
    st->vols = calloc(st->nvols ? st->nvols : 1, sizeof(*st->vols));
    if (!st->devs || !st->vols) {
        r = -ENOMEM;
        goto fail;
    }
    for (uint32_t i = 0; i < st->pi.ndevs; i++) {
        struct dev_status *d = &st->devs[i];
        r = vd_pool_dev_get_info(pool, i, &d->di);
        if (r < 0)
            goto fail;
        d->used = d->di.used_extents * st->pi.extent_size;
        d->free = (d->di.extents - d->di.used_extents) * st->pi.extent_size;
    }
    for (int i = 0; i < st->nvols; i++) {
        r = vd_pool_vol_get_info(pool, i, &st->vols[i].vi);
        if (r == 0)
            r = vol_status_fill(pool, &st->vols[i]);
        if (r < 0)
            goto fail;
    }
    return 0;
fail:
    pool_status_free(st);
    return r;
}

static void vol_status_json(FILE *out, const vd_pool *pool,
                            const struct vol_status *vs)
{
    json_vol(out, pool, &vs->vi, vs->runs, vs->nruns,
             vs->has_mi ? &vs->mi : NULL);
}

static void vol_status_text(FILE *out, const vd_pool *pool,
                            const char *pool_name, uint64_t extent_size,
                            const struct vol_status *vs)
{
    const struct vd_vol_info *vi = &vs->vi;
    char sz[32], es[32];
    char *brief = runs_brief(pool, vs->runs, vs->nruns, vi->copies);

    fmt_size(vi->size, sz, sizeof(sz));
    fmt_size(extent_size, es, sizeof(es));
    fprintf(out, "volume '%s/%s'\n", pool_name, vi->name);
    fprintf(out, "  size      %s (%llu bytes, %llu extents of %s)\n", sz,
            (unsigned long long)vi->size,
            (unsigned long long)(vi->size / extent_size), es);
    fprintf(out, "  layout    %s", vd_layout_name(vi->layout));
    if (vs->has_mi)
        fprintf(out, ", %u copies", vi->copies);
    fprintf(out, "\n  exported  %s\n", vi->open_count ? "yes" : "no");
    fprintf(out, "  extents   %s\n", brief ? brief : "?");
    if (vs->has_mi)
        print_mirror(out, &vs->mi);
    free(brief);
}

static void pool_status_json(FILE *out, const vd_pool *pool,
                             const struct pool_status *st)
{
    const struct vd_pool_info *pi = &st->pi;

    fputs("{\"pool\":", out);
    jstr(out, pi->name);
    fputs(",\"uuid\":", out);
    jstr(out, pi->uuid);
    fprintf(out,
            ",\"extent_size\":%llu,\"seq\":%llu,\"size\":%llu,"
            "\"used\":%llu,\"free\":%llu,\"devices\":[",
            (unsigned long long)pi->extent_size, (unsigned long long)pi->seq,
            (unsigned long long)pi->total_bytes,
            (unsigned long long)pi->used_bytes,
            (unsigned long long)pi->free_bytes);
    for (uint32_t i = 0; i < pi->ndevs; i++) {
        const struct vd_dev_info *di = &st->devs[i].di;
        fputs(i ? ",{\"name\":" : "{\"name\":", out);
        jstr(out, di->name);
        fputs(",\"node\":", out);
        jstr(out, di->node);
        fputs(",\"path\":", out);
        jstr(out, di->path);
        fputs(",\"uuid\":", out);
        jstr(out, di->uuid);
        fprintf(out,
                ",\"state\":\"%s\",\"message\":", dev_state_str(di->state));
        jstr(out, di->state == VD_DEV_OK ? "" : di->state_msg);
        fprintf(out,
                ",\"size\":%llu,\"used\":%llu,\"free\":%llu,"
                "\"extents\":%llu,\"used_extents\":%llu,\"metadata\":%s}",
                (unsigned long long)di->size,
                (unsigned long long)st->devs[i].used,
                (unsigned long long)st->devs[i].free,
                (unsigned long long)di->extents,
                (unsigned long long)di->used_extents,
                di->has_md ? "true" : "false");
    }
    fputs("],\"volumes\":[", out);
    for (int i = 0; i < st->nvols; i++) {
        if (i)
            fputc(',', out);
        vol_status_json(out, pool, &st->vols[i]);
    }
    fputs("]}\n", out);
}

static void pool_status_text(FILE *out, const vd_pool *pool,
                             const struct pool_status *st)
{
    const struct vd_pool_info *pi = &st->pi;
    struct table dt = { .ncols = 8 }, vt = { .ncols = 6 };
    char t[32], u[32], f[32], es[32];

    fmt_size(pi->total_bytes, t, sizeof(t));
    fmt_size(pi->used_bytes, u, sizeof(u));
    fmt_size(pi->free_bytes, f, sizeof(f));
    fmt_size(pi->extent_size, es, sizeof(es));
    fprintf(out, "pool '%s'  uuid %s  extent %s  metadata seq %llu\n", pi->name,
            pi->uuid, es, (unsigned long long)pi->seq);
    fprintf(out, "  size %s, used %s, free %s; %u device%s, %u volume%s\n", t,
            u, f, pi->ndevs, pi->ndevs == 1 ? "" : "s", (unsigned)st->nvols,
            st->nvols == 1 ? "" : "s");

    tbl_cell(&dt, 0, "DEVICE");
    tbl_cell(&dt, 1, "NODE");
    tbl_cell(&dt, 2, "STATE");
    tbl_cell(&dt, 3, "SIZE");
    tbl_cell(&dt, 4, "USED");
    tbl_cell(&dt, 5, "FREE");
    tbl_cell(&dt, 6, "MD");
    tbl_cell(&dt, 7, "PATH");
    for (uint32_t i = 0; i < pi->ndevs; i++) {
        const struct vd_dev_info *di = &st->devs[i].di;
        char s[32];
        fmt_size(di->size, s, sizeof(s));
        fmt_size(st->devs[i].used, u, sizeof(u));
        fmt_size(st->devs[i].free, f, sizeof(f));
        tbl_cell(&dt, 0, "%s", di->name);
        tbl_cell(&dt, 1, "%s", di->node);
        tbl_cell(&dt, 2, "%s", dev_state_str(di->state));
        tbl_cell(&dt, 3, "%s", s);
        tbl_cell(&dt, 4, "%s", u);
        tbl_cell(&dt, 5, "%s", f);
        tbl_cell(&dt, 6, "%s", di->has_md ? "yes" : "no");
        tbl_cell(&dt, 7, "%s", di->path);
    }

    tbl_cell(&vt, 0, "VOLUME");
    tbl_cell(&vt, 1, "SIZE");
    tbl_cell(&vt, 2, "LAYOUT");
    tbl_cell(&vt, 3, "EXPORTED");
    tbl_cell(&vt, 4, "STATE");
    tbl_cell(&vt, 5, "EXTENTS");
    for (int i = 0; i < st->nvols; i++) {
        const struct vol_status *vs = &st->vols[i];
        char sz[32];
        char *brief = runs_brief(pool, vs->runs, vs->nruns, vs->vi.copies);
        fmt_size(vs->vi.size, sz, sizeof(sz));
        tbl_cell(&vt, 0, "%s", vs->vi.name);
        tbl_cell(&vt, 1, "%s", sz);
        if (vs->has_mi)
            tbl_cell(&vt, 2, "%s x%u", vd_layout_name(vs->vi.layout),
                     vs->vi.copies);
        else
            tbl_cell(&vt, 2, "%s", vd_layout_name(vs->vi.layout));
        tbl_cell(&vt, 3, "%s", vs->vi.open_count ? "yes" : "no");
        if (vs->has_mi) {
            char state[128];
            mirror_brief(&vs->mi, state, sizeof(state));
            tbl_cell(&vt, 4, "%s", state);
        } else {
            tbl_cell(&vt, 4, "ok");
        }
        tbl_cell(&vt, 5, "%s", brief ? brief : "?");
        free(brief);
    }

    fputc('\n', out);
    tbl_print(&dt, out, "  ");
    for (uint32_t i = 0; i < pi->ndevs; i++) {
        const struct vd_dev_info *di = &st->devs[i].di;
        if (di->state != VD_DEV_OK)
            fprintf(out, "  device '%s': %s\n", di->name,
                    di->state_msg[0] ? di->state_msg
                                     : dev_state_str(di->state));
    }
    fputc('\n', out);
    if (st->nvols)
        tbl_print(&vt, out, "  ");
    else
        fprintf(out, "  no volumes\n");
    tbl_free(&dt);
    tbl_free(&vt);
}

int admin_status_vol(vd_pool *pool, struct cmd_args *a, FILE *out, FILE *err)
{
    struct vol_status vs = { .runs = NULL };
    struct vd_pool_info pi;
    int r;

    r = vd_vol_get_info(pool, a->vol, &vs.vi);
    if (r == 0)
        r = vd_pool_get_info(pool, &pi);
    if (r == 0)
        r = vol_status_fill(pool, &vs);
    if (r < 0) {
        vol_status_free(&vs);
        return admin_vol_fail(err, r, a->pool, a->vol, "status");
    }
    if (a->given & O_JSON) {
        vol_status_json(out, pool, &vs);
        fputc('\n', out);
    } else {
        vol_status_text(out, pool, a->pool, pi.extent_size, &vs);
    }
    vol_status_free(&vs);
    return VD_EXIT_OK;
}

int admin_status_pool(vd_pool *pool, struct cmd_args *a, FILE *out, FILE *err)
{
    struct pool_status st;
    int r = pool_status_get(pool, &st);

    if (r < 0)
        return admin_lib_fail(err, r, "pool '%s': status failed",
                              vd_pool_name(pool));
    if (a->given & O_JSON)
        pool_status_json(out, pool, &st);
    else
        pool_status_text(out, pool, &st);
    pool_status_free(&st);
    return VD_EXIT_OK;
}
