/* vdlvm admin: output helpers shared by the commands (sizes, JSON strings,
 * text tables, extent runs, a volume's JSON object, a mirror's legs and
 * resync).  Called on the thread of vd_admin_exec only.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../replica/vdreplica.h"
#include "admin_int.h"

void admin_fmt_size(uint64_t b, char *buf, size_t len)
{
    vd_size_format(b, buf, len);
}

/* The mirror info of vol when it is a mirror: 0 with *has set (0 for a
 * volume of another layout: vd_mirror_get_info says -EINVAL), or the
 * failure.  Admin code never tests a layout id: the pool's registry does. */
int admin_mirror_get(vd_pool *pool, const char *vol, struct vd_mirror_info *mi,
                     int *has)
{
    int r = vd_mirror_get_info(pool, vol, mi);

    *has = r == 0;
    return r == -EINVAL ? 0 : r;
}

const char *admin_dev_state_str(enum vd_dev_state s)
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
void admin_jstr(FILE *f, const char *s)
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

void admin_tbl_cell(struct table *t, int col, const char *fmt, ...)
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

void admin_tbl_print(struct table *t, FILE *out, const char *indent)
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

void admin_tbl_free(struct table *t)
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
char *admin_runs_brief(const vd_pool *pool, const struct vd_run *runs, size_t n,
                       uint32_t copies)
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
        admin_jstr(out, ok ? di.name : "");
        fputs(",\"node\":", out);
        admin_jstr(out, ok ? di.node : "");
        fprintf(out, ",\"pe\":%llu}", (unsigned long long)r->pe_start);
    }
    fputs("]", out);
}

void admin_fmt_rate(uint64_t bps, char *buf, size_t len)
{
    char s[32];
    if (!bps) {
        snprintf(buf, len, "unlimited");
        return;
    }
    admin_fmt_size(bps, s, sizeof(s));
    snprintf(buf, len, "%s/s", s);
}

static const char *resync_state_str(enum vd_resync_state s)
{
    return s == VD_RESYNC_RUNNING  ? "running"
           : s == VD_RESYNC_PAUSED ? "paused"
                                   : "idle";
}

/* "in-sync", "degraded (leg 1 failed)", "resyncing 45%". */
void admin_mirror_brief(const struct vd_mirror_info *mi, char *buf, size_t len)
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
        admin_jstr(out, mi->legs[k].device);
        fputs(",\"node\":", out);
        admin_jstr(out, mi->legs[k].node);
        fputs(",\"state\":", out);
        admin_jstr(out,
                   vd_leg_state_name(mi->legs[k].state, mi->legs[k].resyncing));
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
void admin_print_mirror(FILE *out, const struct vd_mirror_info *mi)
{
    char rs[32], lim[40];

    admin_fmt_size(mi->region_size, rs, sizeof(rs));
    for (uint32_t k = 0; k < mi->copies && k < 3; k++)
        fprintf(out, "  leg %u     %s on node %s: %s\n", k, mi->legs[k].device,
                mi->legs[k].node,
                vd_leg_state_name(mi->legs[k].state, mi->legs[k].resyncing));
    admin_fmt_rate(mi->rate_limit, lim, sizeof(lim));
    fprintf(out, "  bitmap    %llu of %llu regions of %s marked\n",
            (unsigned long long)mi->dirty_regions,
            (unsigned long long)(mi->region_size
                                     ? (mi->size + mi->region_size - 1) /
                                           mi->region_size
                                     : 0),
            rs);
    fprintf(out, "  resync    %s", resync_state_str(mi->resync_state));
    if (mi->resync_state != VD_RESYNC_IDLE && mi->total_bytes) {
        /* the bar of a resync --wait (progress.c) */
        char line[200];
        admin_progress_line(line, sizeof(line), mi->done_bytes, mi->total_bytes,
                            mi->rate_bytes_per_s, 30);
        fprintf(out, "  %s", line);
    }
    fprintf(out, "  (rate limit %s)\n", lim);
}

void admin_json_vol(FILE *out, const vd_pool *pool,
                    const struct vd_vol_info *vi, const struct vd_run *runs,
                    size_t nruns, const struct vd_mirror_info *mi,
                    const struct vd_vol_status *st)
{
    fputs("{\"volume\":", out);
    char full[2 * VD_NAME_MAX + 2];
    snprintf(full, sizeof(full), "%s/%s", vd_pool_name(pool), vi->name);
    admin_jstr(out, full);
    fputs(",\"pool\":", out);
    admin_jstr(out, vd_pool_name(pool));
    fputs(",\"name\":", out);
    admin_jstr(out, vi->name);
    fprintf(out,
            ",\"size\":%llu,\"layout\":\"%s\",\"copies\":%u,\"open\":%u,"
            "\"exported\":%s,\"state\":",
            (unsigned long long)vi->size, vd_layout_name(vi->layout),
            vi->copies, vi->open_count, vi->open_count ? "true" : "false");
    if (mi) {
        char brief[128];
        admin_mirror_brief(mi, brief, sizeof(brief));
        admin_jstr(out, brief);
    } else {
        admin_jstr(out, "ok");
    }
    fprintf(out, ",\"thin\":%s,\"chunk_size\":%llu",
            vi->thin ? "true" : "false",
            (unsigned long long)(vi->thin ? vi->chunk_size : 0));
    if (st)
        fprintf(out, ",\"provisioned\":%llu,\"allocated\":%llu",
                (unsigned long long)vi->size,
                (unsigned long long)st->allocated);
    if (runs) {
        fputs(",\"extents\":", out);
        json_runs(out, pool, runs, nruns);
    }
    if (mi)
        json_mirror(out, mi);
    fputs("}", out);
}

const uint32_t admin_thresholds[3] = { 80, 90, 95 };

void admin_fmt_alloc(uint64_t allocated, uint64_t size, char *buf, size_t len)
{
    char a[32];

    admin_fmt_size(allocated, a, sizeof(a));
    if (!size) {
        snprintf(buf, len, "%s", a);
        return;
    }
    /* one decimal, never rounded up to 100% while something is free */
    uint64_t permille = (uint64_t)((long double)allocated * 1000 / size);
    snprintf(buf, len, "%s (%llu.%llu%%)", a,
             (unsigned long long)(permille / 10),
             (unsigned long long)(permille % 10));
}
