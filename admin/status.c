/* vdlvm admin: `status POOL` and `status POOL/VOL`. */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../replica/vdreplica.h"
#include "admin_int.h"
#include "progress_jobs.h"

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
    struct vd_vol_status st; /* allocated bytes */
    /* thin: the head's chunks no snapshot shares, and the shared ones
     * (vd_vol_get_sharing); valid when has_sharing */
    uint64_t exclusive, shared;
    int has_sharing;
    /* thin: the clones in its family (of it, of its snapshots, of those
     * clones: they share its data space), malloc'd; vol_clones */
    struct vd_clone_info *clones;
    size_t nclones;
};

struct dev_status {
    struct vd_dev_info di;
    uint64_t used, free; /* bytes */
    uint32_t slot;       /* the device's index in the pool */
};

struct pool_status {
    struct vd_pool_info pi;
    struct dev_status *devs; /* pi.ndevs, malloc'd */
    int nvols;
    struct vol_status *vols; /* nvols, malloc'd */
    /* clones (pool/snap.c: writable members of a thin volume's family,
     * named like volumes); vd_clone_list, malloc'd */
    struct vd_clone_info *clones;
    size_t nclones;
};

/* The volume a clone's chunks live in: its origin ("VOL@SNAP", "VOL" or
 * another clone) followed back to a volume (cl: every clone). */
static const char *clone_root(const struct vd_clone_info *cl, size_t n,
                              const struct vd_clone_info *c, char *buf,
                              size_t len)
{
    for (size_t hops = 0; hops <= n; hops++) {
        snprintf(buf, len, "%s", c->origin);
        buf[strcspn(buf, "@")] = 0;
        const struct vd_clone_info *up = NULL;
        for (size_t i = 0; i < n && !up; i++)
            if (!strcmp(cl[i].name, buf))
                up = &cl[i];
        if (!up)
            return buf;
        c = up;
    }
    return ""; /* a loop: cannot be, origins are older than their clones */
}

/* vs->clones: the clones whose chunks live in thin volume vs->vi.name. */
static int vol_clones(vd_pool *pool, struct vol_status *vs)
{
    struct vd_clone_info *cl = NULL;
    size_t n = 0, k = 0;
    char root[2 * VD_NAME_MAX + 2];
    int r = vd_clone_list(pool, &cl, &n);

    if (r < 0)
        return r;
    for (size_t i = 0; i < n; i++)
        if (!strcmp(clone_root(cl, n, &cl[i], root, sizeof(root)), vs->vi.name))
            k++;
    vs->clones = k ? calloc(k, sizeof(*vs->clones)) : NULL;
    if (k && !vs->clones) {
        free(cl);
        return -ENOMEM;
    }
    vs->nclones = 0;
    for (size_t i = 0; i < n; i++)
        if (!strcmp(clone_root(cl, n, &cl[i], root, sizeof(root)), vs->vi.name))
            vs->clones[vs->nclones++] = cl[i];
    free(cl);
    return 0;
}

/* The rest of vs once vs->vi is filled: extents and, for a mirror, its
 * legs.  Free with vol_status_free. */
static int vol_status_fill(vd_pool *pool, struct vol_status *vs)
{
    int r = vd_vol_get_runs(pool, vs->vi.name, &vs->runs, &vs->nruns);

    if (r == 0)
        r = admin_mirror_get(pool, vs->vi.name, &vs->mi, &vs->has_mi);
    if (r == 0)
        r = vd_vol_get_status(pool, vs->vi.name, &vs->st);
    if (r == 0 && vs->vi.thin)
        vs->has_sharing = vd_vol_get_sharing(pool, vs->vi.name, &vs->exclusive,
                                             &vs->shared) == 0;
    if (r == 0 && vs->vi.thin)
        r = vol_clones(pool, vs);
    return r;
}

static void vol_status_free(struct vol_status *vs)
{
    free(vs->runs);
    vs->runs = NULL;
    free(vs->clones);
    vs->clones = NULL;
    vs->nclones = 0;
}

static void pool_status_free(struct pool_status *st)
{
    for (int i = 0; st->vols && i < st->nvols; i++)
        vol_status_free(&st->vols[i]);
    free(st->vols);
    free(st->devs);
    free(st->clones);
    st->vols = NULL;
    st->devs = NULL;
    st->clones = NULL;
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
    uint32_t nd = 0; /* skipping the slots of devices that left */
    for (uint32_t i = 0; i < st->pi.ndevs; i++) {
        struct dev_status *d = &st->devs[nd];
        r = vd_pool_dev_get_info(pool, i, &d->di);
        if (r == -ENOENT)
            continue;
        if (r < 0)
            goto fail;
        d->slot = i;
        d->used = d->di.used_extents * st->pi.extent_size;
        d->free = (d->di.extents - d->di.used_extents) * st->pi.extent_size;
        nd++;
    }
    st->pi.ndevs = nd;
    for (int i = 0; i < st->nvols; i++) {
        r = vd_pool_vol_get_info(pool, i, &st->vols[i].vi);
        if (r == 0)
            r = vol_status_fill(pool, &st->vols[i]);
        if (r < 0)
            goto fail;
    }
    r = vd_clone_list(pool, &st->clones, &st->nclones);
    if (r < 0)
        goto fail;
    return 0;
fail:
    pool_status_free(st);
    return r;
}

static void vol_status_json(FILE *out, const vd_pool *pool,
                            const struct vol_status *vs)
{
    char *obj = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&obj, &len);

    if (!m) {
        admin_json_vol(out, pool, &vs->vi, vs->runs, vs->nruns,
                       vs->has_mi ? &vs->mi : NULL, &vs->st);
        return;
    }
    admin_json_vol(m, pool, &vs->vi, vs->runs, vs->nruns,
                   vs->has_mi ? &vs->mi : NULL, &vs->st);
    if (vs->has_sharing || vs->vi.thin) { /* before the closing brace */
        fflush(m);
        if (len && obj[len - 1] == '}')
            fseeko(m, -1, SEEK_END);
        if (vs->has_sharing)
            fprintf(m, ",\"exclusive\":%llu,\"shared\":%llu",
                    (unsigned long long)vs->exclusive,
                    (unsigned long long)vs->shared);
        if (vs->vi.thin) { /* the clones in its family: names, origins */
            fputs(",\"clones\":[", m);
            for (size_t i = 0; i < vs->nclones; i++) {
                fputs(i ? ",{\"name\":" : "{\"name\":", m);
                admin_jstr(m, vs->clones[i].name);
                fputs(",\"origin\":", m);
                admin_jstr(m, vs->clones[i].origin);
                fputc('}', m);
            }
            fputc(']', m);
        }
        fputc('}', m);
    }
    fclose(m);
    /* a running verify (admin/vol.c), then qos, added to the object */
    char *obj2 = NULL;
    size_t len2 = 0;
    FILE *m2 = open_memstream(&obj2, &len2);
    if (m2) {
        admin_verify_json_vol(m2, (vd_pool *)pool, vs->vi.name, obj, len);
        fclose(m2);
        admin_qos_json_vol(out, (vd_pool *)pool, vs->vi.name, obj2, len2);
        free(obj2);
    } else {
        admin_qos_json_vol(out, (vd_pool *)pool, vs->vi.name, obj, len);
    }
    free(obj);
}

/* A tiering pass over vol under way (tier run, or the background pass):
 * the bar of `tier run --wait` (progress.c), an extent per move. */
static void tier_pass_text(FILE *out, vd_pool *pool, const char *vol)
{
    struct vd_tier_info ti;
    struct vd_tier_ext *ext = NULL;
    uint32_t *hist = NULL;
    size_t n = 0;
    char line[200];

    if (vd_tier_get(pool, vol, &ti, &ext, &n, &hist) == 0 && ti.pass_running &&
        ti.pass_total) {
        admin_progress_line(line, sizeof(line), ti.pass_done, ti.pass_total, 0,
                            30);
        fprintf(out, "  tier pass %s\n", line);
    }
    free(ext);
    free(hist);
}

static void vol_status_text(FILE *out, const vd_pool *pool,
                            const char *pool_name, uint64_t extent_size,
                            const struct vol_status *vs)
{
    const struct vd_vol_info *vi = &vs->vi;
    char sz[32], es[32];
    char *brief = admin_runs_brief(pool, vs->runs, vs->nruns, vi->copies);

    admin_fmt_size(vi->size, sz, sizeof(sz));
    admin_fmt_size(extent_size, es, sizeof(es));
    fprintf(out, "volume '%s/%s'\n", pool_name, vi->name);
    fprintf(out, "  size      %s (%llu bytes, %llu extents of %s)\n", sz,
            (unsigned long long)vi->size,
            (unsigned long long)(vi->size / extent_size), es);
    fprintf(out, "  layout    %s", vd_layout_name(vi->layout));
    if (vs->has_mi)
        fprintf(out, ", %u copies", vi->copies);
    fprintf(out, "\n  exported  %s\n", vi->open_count ? "yes" : "no");
    {
        char al[48], cs[32];
        admin_fmt_alloc(vs->st.allocated, vi->size, al, sizeof(al));
        if (vi->thin) {
            admin_fmt_size(vi->chunk_size, cs, sizeof(cs));
            fprintf(out, "  thin      chunks of %s, allocated on first write\n",
                    cs);
        }
        fprintf(out, "  allocated %s\n", al);
        if (vs->has_sharing) {
            char ex[32], sh[32];
            admin_fmt_size(vs->exclusive, ex, sizeof(ex));
            admin_fmt_size(vs->shared, sh, sizeof(sh));
            fprintf(out, "  sharing   %s exclusive, %s shared with snapshots\n",
                    ex, sh);
        }
        if (vi->thin && vs->nclones) {
            fprintf(out, "  clones   ");
            for (size_t i = 0; i < vs->nclones; i++)
                fprintf(out, "%s %s (of %s)", i ? "," : "", vs->clones[i].name,
                        vs->clones[i].origin);
            fputc('\n', out);
        }
    }
    fprintf(out, "  extents   %s\n", brief ? brief : "?");
    admin_qos_status_text(out, (vd_pool *)pool, vi->name); /* qos */
    if (vs->has_mi)
        admin_print_mirror(out, &vs->mi);
    admin_verify_status_text(out, (vd_pool *)pool, vi->name); /* vol.c */
    tier_pass_text(out, (vd_pool *)pool, vi->name);
    admin_jobs_text(out, vd_pool_name(pool), vi->name); /* progress.c */
    free(brief);
}

/* A clone: its origin ("VOL@SNAP", "VOL" or another clone), the bytes it
 * names (allocated = exclusive + shared), those only it names (its removal
 * frees them) and those it shares (a write copies them first). */
static void clone_status_json(FILE *out, const struct vd_clone_info *c)
{
    fputs("{\"name\":", out);
    admin_jstr(out, c->name);
    fputs(",\"clone\":true,\"origin\":", out);
    admin_jstr(out, c->origin);
    fprintf(out,
            ",\"size\":%llu,\"allocated\":%llu,\"exclusive\":%llu,"
            "\"shared\":%llu,\"exported\":%s}",
            (unsigned long long)c->size,
            (unsigned long long)(c->exclusive + c->shared),
            (unsigned long long)c->exclusive, (unsigned long long)c->shared,
            c->exported ? "true" : "false");
}

static void clone_status_text(FILE *out, const char *pool_name,
                              const struct vd_clone_info *c)
{
    char sz[32], al[48], ex[32], sh[32];

    admin_fmt_size(c->size, sz, sizeof(sz));
    admin_fmt_alloc(c->exclusive + c->shared, c->size, al, sizeof(al));
    admin_fmt_size(c->exclusive, ex, sizeof(ex));
    admin_fmt_size(c->shared, sh, sizeof(sh));
    fprintf(out, "volume '%s/%s'\n", pool_name, c->name);
    fprintf(out, "  size      %s (%llu bytes)\n", sz,
            (unsigned long long)c->size);
    fprintf(out, "  clone of  %s/%s\n", pool_name, c->origin);
    fprintf(out, "  exported  %s\n", c->exported ? "yes" : "no");
    fprintf(out, "  allocated %s\n", al);
    fprintf(out,
            "  sharing   %s exclusive, %s shared with its origin and other "
            "members\n",
            ex, sh);
}

static void pool_status_json(FILE *out, const vd_pool *pool,
                             const struct pool_status *st)
{
    const struct vd_pool_info *pi = &st->pi;

    fputs("{\"pool\":", out);
    admin_jstr(out, pi->name);
    fputs(",\"uuid\":", out);
    admin_jstr(out, pi->uuid);
    fprintf(out,
            ",\"extent_size\":%llu,\"seq\":%llu,\"size\":%llu,"
            "\"used\":%llu,\"free\":%llu,",
            (unsigned long long)pi->extent_size, (unsigned long long)pi->seq,
            (unsigned long long)pi->total_bytes,
            (unsigned long long)pi->used_bytes,
            (unsigned long long)pi->free_bytes);
    fprintf(out,
            "\"provisioned\":%llu,\"overcommit\":%.3f,\"allocated\":%llu,"
            "\"threshold_pct\":%u,\"thresholds_crossed\":[",
            (unsigned long long)pi->provisioned_bytes,
            pi->total_bytes
                ? (double)pi->provisioned_bytes / (double)pi->total_bytes
                : 0.0,
            (unsigned long long)pi->allocated_bytes, pi->threshold_pct);
    for (int i = 0, n = 0; i < 3; i++)
        if (pi->threshold_pct >= admin_thresholds[i])
            fprintf(out, n++ ? ",%u" : "%u", admin_thresholds[i]);
    fputs("],\"devices\":[", out);
    for (uint32_t i = 0; i < pi->ndevs; i++) {
        const struct vd_dev_info *di = &st->devs[i].di;
        fputs(i ? ",{\"name\":" : "{\"name\":", out);
        admin_jstr(out, di->name);
        fputs(",\"node\":", out);
        admin_jstr(out, di->node);
        fputs(",\"path\":", out);
        admin_jstr(out, di->path);
        fputs(",\"uuid\":", out);
        admin_jstr(out, di->uuid);
        fprintf(out, ",\"state\":\"%s\",\"message\":",
                admin_dev_state_str(di->state));
        admin_jstr(out, di->state == VD_DEV_OK ? "" : di->state_msg);
        fprintf(out,
                ",\"size\":%llu,\"used\":%llu,\"free\":%llu,"
                "\"extents\":%llu,\"used_extents\":%llu,\"metadata\":%s",
                (unsigned long long)di->size,
                (unsigned long long)st->devs[i].used,
                (unsigned long long)st->devs[i].free,
                (unsigned long long)di->extents,
                (unsigned long long)di->used_extents,
                di->has_md ? "true" : "false");
        admin_dev_counters_json(out, (vd_pool *)pool,
                                st->devs[i].slot); /* stats.c */
        fputc('}', out);
    }
    fputs("],", out);
    admin_move_status_json(out, (vd_pool *)pool);   /* admin/dev.c */
    admin_crypt_status_json(out, (vd_pool *)pool);  /* admin/key.c */
    admin_verify_status_json(out, (vd_pool *)pool); /* admin/vol.c */
    admin_jobs_json(out, vd_pool_name(pool), NULL); /* progress.c */
    fputc(',', out);
    fputs("\"volumes\":[", out);
    for (int i = 0; i < st->nvols; i++) {
        if (i)
            fputc(',', out);
        vol_status_json(out, pool, &st->vols[i]);
    }
    fputs("],\"clones\":[", out);
    for (size_t i = 0; i < st->nclones; i++) {
        if (i)
            fputc(',', out);
        clone_status_json(out, &st->clones[i]);
    }
    fputs("]}\n", out);
}

static void pool_status_text(FILE *out, const vd_pool *pool,
                             const struct pool_status *st)
{
    const struct vd_pool_info *pi = &st->pi;
    struct table dt = { .ncols = 8 }, vt = { .ncols = 10 };
    char t[32], u[32], f[32], es[32];

    admin_fmt_size(pi->total_bytes, t, sizeof(t));
    admin_fmt_size(pi->used_bytes, u, sizeof(u));
    admin_fmt_size(pi->free_bytes, f, sizeof(f));
    admin_fmt_size(pi->extent_size, es, sizeof(es));
    fprintf(out, "pool '%s'  uuid %s  extent %s  metadata seq %llu\n", pi->name,
            pi->uuid, es, (unsigned long long)pi->seq);
    fprintf(out, "  size %s, used %s, free %s; %u device%s, %u volume%s\n", t,
            u, f, pi->ndevs, pi->ndevs == 1 ? "" : "s", (unsigned)st->nvols,
            st->nvols == 1 ? "" : "s");
    {
        char pr[32], al[48];
        admin_fmt_size(pi->provisioned_bytes, pr, sizeof(pr));
        admin_fmt_alloc(pi->allocated_bytes, pi->total_bytes, al, sizeof(al));
        fprintf(out, "  provisioned %s (overcommit %.2fx), allocated %s", pr,
                pi->total_bytes
                    ? (double)pi->provisioned_bytes / (double)pi->total_bytes
                    : 0.0,
                al);
        if (pi->threshold_pct)
            fprintf(out, "; allocation threshold %u%% crossed",
                    pi->threshold_pct);
        fputc('\n', out);
    }

    admin_tbl_cell(&dt, 0, "DEVICE");
    admin_tbl_cell(&dt, 1, "NODE");
    admin_tbl_cell(&dt, 2, "STATE");
    admin_tbl_cell(&dt, 3, "SIZE");
    admin_tbl_cell(&dt, 4, "USED");
    admin_tbl_cell(&dt, 5, "FREE");
    admin_tbl_cell(&dt, 6, "MD");
    admin_tbl_cell(&dt, 7, "PATH");
    for (uint32_t i = 0; i < pi->ndevs; i++) {
        const struct vd_dev_info *di = &st->devs[i].di;
        char s[32];
        admin_fmt_size(di->size, s, sizeof(s));
        admin_fmt_size(st->devs[i].used, u, sizeof(u));
        admin_fmt_size(st->devs[i].free, f, sizeof(f));
        admin_tbl_cell(&dt, 0, "%s", di->name);
        admin_tbl_cell(&dt, 1, "%s", di->node);
        admin_tbl_cell(&dt, 2, "%s", admin_dev_state_str(di->state));
        admin_tbl_cell(&dt, 3, "%s", s);
        admin_tbl_cell(&dt, 4, "%s", u);
        admin_tbl_cell(&dt, 5, "%s", f);
        admin_tbl_cell(&dt, 6, "%s", di->has_md ? "yes" : "no");
        admin_tbl_cell(&dt, 7, "%s", di->path);
    }

    admin_tbl_cell(&vt, 0, "VOLUME");
    admin_tbl_cell(&vt, 1, "SIZE");
    admin_tbl_cell(&vt, 2, "ALLOCATED");
    admin_tbl_cell(&vt, 3, "EXCLUSIVE");
    admin_tbl_cell(&vt, 4, "SHARED");
    admin_tbl_cell(&vt, 5, "THIN");
    admin_tbl_cell(&vt, 6, "LAYOUT");
    admin_tbl_cell(&vt, 7, "EXPORTED");
    admin_tbl_cell(&vt, 8, "STATE");
    admin_tbl_cell(&vt, 9, "EXTENTS");
    for (int i = 0; i < st->nvols; i++) {
        const struct vol_status *vs = &st->vols[i];
        char sz[32], al[48], cs[32];
        char *brief =
            admin_runs_brief(pool, vs->runs, vs->nruns, vs->vi.copies);
        admin_fmt_size(vs->vi.size, sz, sizeof(sz));
        admin_fmt_alloc(vs->st.allocated, vs->vi.size, al, sizeof(al));
        admin_tbl_cell(&vt, 0, "%s", vs->vi.name);
        admin_tbl_cell(&vt, 1, "%s", sz);
        admin_tbl_cell(&vt, 2, "%s", al);
        if (vs->vi.thin)
            admin_fmt_size(vs->vi.chunk_size, cs, sizeof(cs));
        if (vs->has_sharing) {
            char ex[32], sh[32];
            admin_fmt_size(vs->exclusive, ex, sizeof(ex));
            admin_fmt_size(vs->shared, sh, sizeof(sh));
            admin_tbl_cell(&vt, 3, "%s", ex);
            admin_tbl_cell(&vt, 4, "%s", sh);
        } else {
            admin_tbl_cell(&vt, 3, "-");
            admin_tbl_cell(&vt, 4, "-");
        }
        admin_tbl_cell(&vt, 5, "%s", vs->vi.thin ? cs : "-");
        if (vs->has_mi)
            admin_tbl_cell(&vt, 6, "%s x%u", vd_layout_name(vs->vi.layout),
                           vs->vi.copies);
        else
            admin_tbl_cell(&vt, 6, "%s", vd_layout_name(vs->vi.layout));
        admin_tbl_cell(&vt, 7, "%s", vs->vi.open_count ? "yes" : "no");
        if (vs->has_mi) {
            char state[128];
            admin_mirror_brief(&vs->mi, state, sizeof(state));
            admin_tbl_cell(&vt, 8, "%s", state);
        } else {
            admin_tbl_cell(&vt, 8, "ok");
        }
        admin_tbl_cell(&vt, 9, "%s", brief ? brief : "?");
        free(brief);
    }
    for (size_t i = 0; i < st->nclones; i++) {
        const struct vd_clone_info *c = &st->clones[i];
        char sz[32], al[48], ex[32], sh[32];
        admin_fmt_size(c->size, sz, sizeof(sz));
        admin_fmt_alloc(c->exclusive + c->shared, c->size, al, sizeof(al));
        admin_fmt_size(c->exclusive, ex, sizeof(ex));
        admin_fmt_size(c->shared, sh, sizeof(sh));
        admin_tbl_cell(&vt, 0, "%s", c->name);
        admin_tbl_cell(&vt, 1, "%s", sz);
        admin_tbl_cell(&vt, 2, "%s", al);
        admin_tbl_cell(&vt, 3, "%s", ex);
        admin_tbl_cell(&vt, 4, "%s", sh);
        admin_tbl_cell(&vt, 5, "-");
        admin_tbl_cell(&vt, 6, "clone");
        admin_tbl_cell(&vt, 7, "%s", c->exported ? "yes" : "no");
        admin_tbl_cell(&vt, 8, "clone of %s", c->origin);
        admin_tbl_cell(&vt, 9, "-");
    }

    fputc('\n', out);
    admin_tbl_print(&dt, out, "  ");
    for (uint32_t i = 0; i < pi->ndevs; i++) {
        const struct vd_dev_info *di = &st->devs[i].di;
        if (di->state != VD_DEV_OK)
            fprintf(out, "  device '%s': %s\n", di->name,
                    di->state_msg[0] ? di->state_msg
                                     : admin_dev_state_str(di->state));
    }
    admin_move_status_text(out, (vd_pool *)pool);         /* admin/dev.c */
    admin_crypt_status_text(out, (vd_pool *)pool);        /* admin/key.c */
    admin_verify_status_text(out, (vd_pool *)pool, NULL); /* admin/vol.c */
    admin_jobs_text(out, vd_pool_name(pool), NULL);       /* progress.c */
    fputc('\n', out);
    if (st->nvols || st->nclones)
        admin_tbl_print(&vt, out, "  ");
    else
        fprintf(out, "  no volumes\n");
    admin_tbl_free(&dt);
    admin_tbl_free(&vt);
}

int admin_status_vol(vd_pool *pool, struct cmd_args *a, FILE *out, FILE *err)
{
    struct vol_status vs = { .runs = NULL };
    struct vd_pool_info pi;
    int r;

    struct vd_clone_info ci;
    if (vd_clone_get_info(pool, a->vol, &ci) == 0) { /* a clone */
        if (a->given & O_JSON) {
            clone_status_json(out, &ci);
            fputc('\n', out);
        } else {
            clone_status_text(out, a->pool, &ci);
        }
        return VD_EXIT_OK;
    }
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
