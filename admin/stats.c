/* vdlvm admin: `stats [POOL[/VOL]] [--json | --prometheus]`.
 *
 * Where the numbers come from.  I/O counters (reads, writes, bytes,
 * errors, latency histogram) live in the process that exports the volume:
 * bs_vdlvm.so counts in pool/stats.h's registry inside tgtd, and this
 * command, run inside that tgtd through the control socket (vd_admin_exec
 * on a control-socket thread), reads them with vd_vol_stats_snapshot.  Run
 * in the vdlvm process (no tgtd holds the pool) the registry is empty:
 * the offline part (devices, space, thin allocation, resync) is shown and
 * the output says that the volumes are not exported.  The rest comes from
 * the library's info getters, as `status` does.  Device counters (failed
 * reads, writes, flushes; reconnects of remote devices) live on the open
 * pool's devices (vd_pool_dev_get_counters), so they count in the process
 * that has the pool open: tgtd while it exports it, else this command's
 * own process, where they start at 0.
 *
 * Like status (dm's STATUSTYPE_INFO/TABLE), everything is gathered once
 * into struct pool_stats; the text, JSON and Prometheus renderers only
 * print it.  Called on the thread of vd_admin_exec only; no shared state
 * here (the registry's lock is in pool/stats.c).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../pool/stats.h"
#include "../replica/vdreplica.h"
#include "admin_int.h"
#include "progress_jobs.h"

struct vol_stats {
    struct vd_vol_info vi;
    struct vd_vol_status st;
    struct vd_mirror_info mi; /* valid when has_mi */
    int has_mi;
    const struct vd_vol_stats_snap *io; /* NULL: not exported here */
};

struct pool_stats {
    struct vd_pool_info pi;
    struct vd_dev_info *devs;     /* pi.ndevs */
    struct vd_dev_counters *devc; /* pi.ndevs */
    struct vol_stats *vols;
    size_t nvols;
    struct vd_vol_stats_snap *snaps; /* vd_vol_stats_snapshot */
    size_t nsnaps;
    int served;               /* this process exports volumes of the pool */
    struct vd_move_status mv; /* evacuation, rebalance */
    struct admin_job jobs[ADMIN_JOBS_MAX]; /* long commands running here */
    size_t njobs;
};

static void pool_stats_free(struct pool_stats *ps)
{
    free(ps->devs);
    free(ps->devc);
    free(ps->vols);
    free(ps->snaps);
    memset(ps, 0, sizeof(*ps));
}

static const struct vd_vol_stats_snap *find_snap(const struct pool_stats *ps,
                                                 const char *vol)
{
    for (size_t i = 0; i < ps->nsnaps; i++)
        if (!strcmp(ps->snaps[i].vol, vol))
            return ps->snaps[i].luns ? &ps->snaps[i] : NULL;
    return NULL;
}

/* Everything stats shows, of one volume (vol) or all; 0 or a negative
 * errno (ps freed). */
static int pool_stats_get(vd_pool *pool, const char *vol, struct pool_stats *ps)
{
    int r, n;

    memset(ps, 0, sizeof(*ps));
    if ((r = vd_pool_get_info(pool, &ps->pi)) < 0)
        return r;
    if ((r = vd_vol_stats_snapshot(ps->pi.name, &ps->snaps, &ps->nsnaps)) < 0)
        return r;
    for (size_t i = 0; i < ps->nsnaps; i++)
        ps->served |= ps->snaps[i].luns > 0;
    n = vd_pool_vol_count(pool);
    if (n < 0) {
        r = n;
        goto fail;
    }
    ps->devs = calloc(ps->pi.ndevs ? ps->pi.ndevs : 1, sizeof(*ps->devs));
    ps->devc = calloc(ps->pi.ndevs ? ps->pi.ndevs : 1, sizeof(*ps->devc));
    ps->vols = calloc(n ? n : 1, sizeof(*ps->vols));
    if (!ps->devs || !ps->devc || !ps->vols) {
        r = -ENOMEM;
        goto fail;
    }
    uint32_t nd = 0; /* skipping the slots of devices that left */
    for (uint32_t i = 0; i < ps->pi.ndevs; i++) {
        r = vd_pool_dev_get_info(pool, i, &ps->devs[nd]);
        if (r == -ENOENT)
            continue;
        if (r < 0 || (r = vd_pool_dev_get_counters(pool, i, &ps->devc[nd])) < 0)
            goto fail;
        nd++;
    }
    ps->pi.ndevs = nd;
    r = 0;
    for (int i = 0; i < n; i++) {
        struct vol_stats *vs = &ps->vols[ps->nvols];
        if ((r = vd_pool_vol_get_info(pool, i, &vs->vi)) < 0)
            goto fail;
        if (vol && strcmp(vol, vs->vi.name))
            continue;
        if ((r = vd_vol_get_status(pool, vs->vi.name, &vs->st)) < 0 ||
            (r = admin_mirror_get(pool, vs->vi.name, &vs->mi, &vs->has_mi)) < 0)
            goto fail;
        vs->io = find_snap(ps, vs->vi.name);
        ps->nvols++;
    }
    if (vol && ps->nvols == 0) {
        r = -ENOENT;
        goto fail;
    }
    vd_pool_move_status(pool, &ps->mv);
    ps->njobs = admin_jobs_list(ps->pi.name, vol, ps->jobs, ADMIN_JOBS_MAX);
    return 0;
fail:
    pool_stats_free(ps);
    return r;
}

static const char *g_op_names[VD_IO_NOPS] = { "read", "write", "other" };

/* Device error counters by op, for the op label and the JSON keys. */
static const char *g_dev_op_names[3] = { "read", "write", "flush" };

static uint64_t dev_errors(const struct vd_dev_counters *c, int op)
{
    return op == 0   ? c->read_errors
           : op == 1 ? c->write_errors
                     : c->flush_errors;
}

static const char *resync_state_str(enum vd_resync_state s)
{
    switch (s) {
    case VD_RESYNC_IDLE:
        return "idle";
    case VD_RESYNC_RUNNING:
        return "running";
    case VD_RESYNC_PAUSED:
        return "paused";
    }
    return "unknown";
}

static uint64_t thin_chunks(const struct vol_stats *vs)
{
    return vs->st.thin && vs->st.chunk_size
               ? vs->st.allocated / vs->st.chunk_size
               : 0;
}

/* ---- Prometheus text exposition format ---------------------------------- */

void admin_prom_label_value(FILE *out, const char *v)
{
    for (const char *p = v ? v : ""; *p; p++) {
        if (*p == '\\')
            fputs("\\\\", out);
        else if (*p == '"')
            fputs("\\\"", out);
        else if (*p == '\n')
            fputs("\\n", out);
        else
            fputc(*p, out);
    }
}

void admin_prom_family(FILE *out, const char *name, const char *type,
                       const char *help)
{
    /* HELP text escapes only backslash and newline. */
    fprintf(out, "# HELP %s ", name);
    for (const char *p = help; *p; p++) {
        if (*p == '\\')
            fputs("\\\\", out);
        else if (*p == '\n')
            fputs("\\n", out);
        else
            fputc(*p, out);
    }
    fprintf(out, "\n# TYPE %s %s\n", name, type);
}

/* name{labels} value; labels: NULL-terminated key, value, key, value ... */
static void prom_sample_v(FILE *out, const char *name, const char *suffix,
                          const char *const *labels, const char *extra_key,
                          const char *extra_val, const char *value)
{
    int first = 1;

    fprintf(out, "%s%s", name, suffix ? suffix : "");
    for (const char *const *l = labels; l && l[0]; l += 2) {
        fprintf(out, "%s%s=\"", first ? "{" : ",", l[0]);
        admin_prom_label_value(out, l[1]);
        fputc('"', out);
        first = 0;
    }
    if (extra_key) {
        fprintf(out, "%s%s=\"", first ? "{" : ",", extra_key);
        admin_prom_label_value(out, extra_val);
        fputc('"', out);
        first = 0;
    }
    fprintf(out, "%s %s\n", first ? "" : "}", value);
}

void admin_prom_sample(FILE *out, const char *name, const char *const *labels,
                       uint64_t value)
{
    char v[32];

    snprintf(v, sizeof(v), "%" PRIu64, value);
    prom_sample_v(out, name, NULL, labels, NULL, NULL, v);
}

void admin_prom_histogram(FILE *out, const char *name,
                          const char *const *labels, const uint64_t *bounds_us,
                          size_t nbounds, const uint64_t *buckets,
                          uint64_t sum_ns)
{
    uint64_t cum = 0;
    char le[32], v[48];

    for (size_t i = 0; i <= nbounds; i++) {
        cum += buckets[i];
        if (i < nbounds)
            snprintf(le, sizeof(le), "%g", bounds_us[i] / 1e6);
        else
            snprintf(le, sizeof(le), "+Inf");
        snprintf(v, sizeof(v), "%" PRIu64, cum);
        prom_sample_v(out, name, "_bucket", labels, "le", le, v);
    }
    snprintf(v, sizeof(v), "%.9f", sum_ns / 1e9);
    prom_sample_v(out, name, "_sum", labels, NULL, NULL, v);
    snprintf(v, sizeof(v), "%" PRIu64, cum);
    prom_sample_v(out, name, "_count", labels, NULL, NULL, v);
}

/* One family per volume counter: what it shows, from the counters. */
struct vol_metric {
    const char *name, *type, *help;
    int io;     /* needs the I/O counters (exported volumes only) */
    int per_op; /* one sample per op (label op=) */
    uint64_t (*get)(const struct vol_stats *vs, int op);
};

static uint64_t m_reads(const struct vol_stats *v, int op)
{
    return v->io->c.ops[VD_IO_OP_READ];
}
static uint64_t m_writes(const struct vol_stats *v, int op)
{
    return v->io->c.ops[VD_IO_OP_WRITE];
}
static uint64_t m_other(const struct vol_stats *v, int op)
{
    return v->io->c.ops[VD_IO_OP_OTHER];
}
static uint64_t m_rbytes(const struct vol_stats *v, int op)
{
    return v->io->c.bytes[VD_IO_OP_READ];
}
static uint64_t m_wbytes(const struct vol_stats *v, int op)
{
    return v->io->c.bytes[VD_IO_OP_WRITE];
}
static uint64_t m_errors(const struct vol_stats *v, int op)
{
    return v->io->c.errors[op];
}
static uint64_t m_luns(const struct vol_stats *v, int op)
{
    return v->io ? v->io->luns : 0;
}
static uint64_t m_size(const struct vol_stats *v, int op)
{
    return v->vi.size;
}
static uint64_t m_alloc(const struct vol_stats *v, int op)
{
    return v->st.allocated;
}
static uint64_t m_chunks(const struct vol_stats *v, int op)
{
    return thin_chunks(v);
}
static uint64_t m_degraded(const struct vol_stats *v, int op)
{
    return v->st.degraded ? 1 : 0;
}
static uint64_t m_rs_done(const struct vol_stats *v, int op)
{
    return v->has_mi ? v->mi.done_bytes : v->st.resync_done;
}
static uint64_t m_rs_total(const struct vol_stats *v, int op)
{
    return v->has_mi ? v->mi.total_bytes : v->st.resync_total;
}
static uint64_t m_rs_running(const struct vol_stats *v, int op)
{
    return v->st.resyncing ? 1 : 0;
}

static const struct vol_metric g_vol_metrics[] = {
    { "vdlvm_volume_reads_total", "counter",
      "READ commands served by the volume since tgtd exported it", 1, 0,
      m_reads },
    { "vdlvm_volume_writes_total", "counter",
      "WRITE and WRITE AND VERIFY commands served by the volume", 1, 0,
      m_writes },
    { "vdlvm_volume_other_commands_total", "counter",
      "other commands served by the volume (flush, UNMAP, WRITE SAME, ...)", 1,
      0, m_other },
    { "vdlvm_volume_read_bytes_total", "counter",
      "bytes read from the volume by successful READ commands", 1, 0,
      m_rbytes },
    { "vdlvm_volume_write_bytes_total", "counter",
      "bytes written to the volume by successful WRITE commands", 1, 0,
      m_wbytes },
    { "vdlvm_volume_errors_total", "counter",
      "commands of the volume answered with an error (CHECK CONDITION)", 1, 1,
      m_errors },
    { "vdlvm_volume_exported_luns", "gauge",
      "LUNs of this tgtd exporting the volume", 0, 0, m_luns },
    { "vdlvm_volume_size_bytes", "gauge", "provisioned size of the volume", 0,
      0, m_size },
    { "vdlvm_volume_allocated_bytes", "gauge",
      "bytes of the volume backed by storage (thin: allocated chunks)", 0, 0,
      m_alloc },
    { "vdlvm_volume_allocated_chunks", "gauge",
      "thin volumes: chunks allocated", 0, 0, m_chunks },
    { "vdlvm_volume_degraded", "gauge",
      "1 when a leg of the volume is not in sync", 0, 0, m_degraded },
    { "vdlvm_volume_resync_running", "gauge",
      "1 while a resync of the volume is running or pending", 0, 0,
      m_rs_running },
    { "vdlvm_volume_resync_done_bytes", "gauge",
      "bytes copied by the running resync", 0, 0, m_rs_done },
    { "vdlvm_volume_resync_size_bytes", "gauge",
      "bytes the running resync copies in all", 0, 0, m_rs_total },
};
#define NVOL_METRICS (sizeof(g_vol_metrics) / sizeof(g_vol_metrics[0]))

static int any_io(const struct pool_stats *ps)
{
    for (size_t i = 0; i < ps->nvols; i++)
        if (ps->vols[i].io)
            return 1;
    return 0;
}

/* Evacuation and rebalance (the mover's jobs, pool/move.c): running,
 * bytes moved of the bytes to move, and the mover's totals. */
static void pool_move_prom(FILE *out, const struct pool_stats *ps)
{
    const struct vd_move_status *m = &ps->mv;
    const char *pname = ps->pi.name;
    const char *el[] = { "pool", pname, "job", "evacuate", NULL };
    const char *rl[] = { "pool", pname, "job", "rebalance", NULL };
    const char *pl[] = { "pool", pname, NULL };

    admin_prom_family(out, "vdlvm_pool_move_running", "gauge",
                      "1 while an evacuation (dev evacuate) or a rebalance "
                      "(pool rebalance) of the pool runs");
    admin_prom_sample(out, "vdlvm_pool_move_running", el, m->evacuating != 0);
    admin_prom_sample(out, "vdlvm_pool_move_running", rl, m->rebalancing != 0);
    admin_prom_family(out, "vdlvm_pool_move_done_bytes", "gauge",
                      "bytes the running evacuation or rebalance has moved");
    admin_prom_sample(out, "vdlvm_pool_move_done_bytes", el,
                      m->evacuating ? m->evac_total_bytes - m->evac_left_bytes
                                    : 0);
    admin_prom_sample(out, "vdlvm_pool_move_done_bytes", rl,
                      m->rebalancing ? m->reb_done_bytes : 0);
    admin_prom_family(out, "vdlvm_pool_move_size_bytes", "gauge",
                      "bytes the running evacuation or rebalance moves in all");
    admin_prom_sample(out, "vdlvm_pool_move_size_bytes", el,
                      m->evacuating ? m->evac_total_bytes : 0);
    admin_prom_sample(out, "vdlvm_pool_move_size_bytes", rl,
                      m->rebalancing ? m->reb_total_bytes : 0);
    admin_prom_family(out, "vdlvm_pool_moved_bytes_total", "counter",
                      "bytes the mover copied (extent moves, evacuations, "
                      "rebalances) since the process showing them opened "
                      "the pool");
    admin_prom_sample(out, "vdlvm_pool_moved_bytes_total", pl,
                      m->stats.bytes_copied);
    admin_prom_family(out, "vdlvm_pool_moves_total", "counter",
                      "extent moves done since the process showing them "
                      "opened the pool");
    admin_prom_sample(out, "vdlvm_pool_moves_total", pl, m->stats.moves_done);
}

/* Long commands running in this process (progress_jobs.h): no sample, no
 * family. */
static void jobs_prom(FILE *out, const struct pool_stats *ps)
{
    if (!ps->njobs)
        return;
    admin_prom_family(out, "vdlvm_job_done_bytes", "gauge",
                      "bytes done by a running long command (vol import, vol "
                      "export, resync --wait, vol repair --wait, vol encrypt "
                      "--wait)");
    for (size_t i = 0; i < ps->njobs; i++) {
        const char *jl[] = { "pool",   ps->pi.name,
                             "object", ps->jobs[i].object,
                             "job",    ps->jobs[i].what,
                             NULL };
        admin_prom_sample(out, "vdlvm_job_done_bytes", jl, ps->jobs[i].done);
    }
    admin_prom_family(out, "vdlvm_job_size_bytes", "gauge",
                      "bytes a running long command does in all");
    for (size_t i = 0; i < ps->njobs; i++) {
        const char *jl[] = { "pool",   ps->pi.name,
                             "object", ps->jobs[i].object,
                             "job",    ps->jobs[i].what,
                             NULL };
        admin_prom_sample(out, "vdlvm_job_size_bytes", jl, ps->jobs[i].total);
    }
}

static void pool_stats_prom(FILE *out, const struct pool_stats *ps)
{
    const char *pname = ps->pi.name;
    const char *pl[] = { "pool", pname, NULL };
    int io = any_io(ps);

    admin_prom_family(out, "vdlvm_pool_exported", "gauge",
                      "1 when a tgtd on this host exports volumes of the pool "
                      "(I/O counters are shown only then)");
    admin_prom_sample(out, "vdlvm_pool_exported", pl, ps->served ? 1 : 0);
    admin_prom_family(out, "vdlvm_pool_size_bytes", "gauge",
                      "bytes of the pool's data extents");
    admin_prom_sample(out, "vdlvm_pool_size_bytes", pl, ps->pi.total_bytes);
    admin_prom_family(out, "vdlvm_pool_free_bytes", "gauge",
                      "bytes of free data extents");
    admin_prom_sample(out, "vdlvm_pool_free_bytes", pl, ps->pi.free_bytes);
    admin_prom_family(out, "vdlvm_pool_allocated_bytes", "gauge",
                      "bytes holding data: thick volumes' extents and thin "
                      "volumes' chunks");
    admin_prom_sample(out, "vdlvm_pool_allocated_bytes", pl,
                      ps->pi.allocated_bytes);
    admin_prom_family(out, "vdlvm_pool_provisioned_bytes", "gauge",
                      "sum of the volumes' sizes");
    admin_prom_sample(out, "vdlvm_pool_provisioned_bytes", pl,
                      ps->pi.provisioned_bytes);

    admin_prom_family(out, "vdlvm_device_up", "gauge",
                      "1 when the device is usable, 0 when missing or failed");
    for (uint32_t i = 0; i < ps->pi.ndevs; i++) {
        const struct vd_dev_info *d = &ps->devs[i];
        const char *dl[] = { "pool", pname,   "device", d->name,
                             "node", d->node, NULL };
        admin_prom_sample(out, "vdlvm_device_up", dl, d->state == VD_DEV_OK);
    }
    admin_prom_family(out, "vdlvm_device_state", "gauge",
                      "the device's state: 1 for the label state it is in");
    for (uint32_t i = 0; i < ps->pi.ndevs; i++) {
        const struct vd_dev_info *d = &ps->devs[i];
        static const enum vd_dev_state states[] = { VD_DEV_OK, VD_DEV_MISSING,
                                                    VD_DEV_FAILED };
        for (size_t k = 0; k < 3; k++) {
            const char *dl[] = { "pool",   pname,
                                 "device", d->name,
                                 "state",  admin_dev_state_str(states[k]),
                                 NULL };
            admin_prom_sample(out, "vdlvm_device_state", dl,
                              d->state == states[k]);
        }
    }
    admin_prom_family(out, "vdlvm_device_errors_total", "counter",
                      "I/O requests to the device that failed, by op, since "
                      "the process showing them opened the pool");
    for (uint32_t i = 0; i < ps->pi.ndevs; i++)
        for (int op = 0; op < 3; op++) {
            const char *dl[] = { "pool",   pname,
                                 "device", ps->devs[i].name,
                                 "op",     g_dev_op_names[op],
                                 NULL };
            admin_prom_sample(out, "vdlvm_device_errors_total", dl,
                              dev_errors(&ps->devc[i], op));
        }
    admin_prom_family(out, "vdlvm_device_reconnects_total", "counter",
                      "sessions to the remote device re-established after "
                      "the connection was lost, and returns of a device "
                      "that was missing or failed");
    for (uint32_t i = 0; i < ps->pi.ndevs; i++) {
        const char *dl[] = { "pool", pname, "device", ps->devs[i].name, NULL };
        admin_prom_sample(out, "vdlvm_device_reconnects_total", dl,
                          ps->devc[i].reconnects);
    }
    admin_prom_family(out, "vdlvm_device_size_bytes", "gauge",
                      "bytes of the device");
    for (uint32_t i = 0; i < ps->pi.ndevs; i++) {
        const char *dl[] = { "pool", pname, "device", ps->devs[i].name, NULL };
        admin_prom_sample(out, "vdlvm_device_size_bytes", dl, ps->devs[i].size);
    }
    admin_prom_family(out, "vdlvm_device_used_bytes", "gauge",
                      "bytes of the device's extents in use");
    for (uint32_t i = 0; i < ps->pi.ndevs; i++) {
        const char *dl[] = { "pool", pname, "device", ps->devs[i].name, NULL };
        admin_prom_sample(out, "vdlvm_device_used_bytes", dl,
                          ps->devs[i].used_extents * ps->pi.extent_size);
    }

    pool_move_prom(out, ps);
    jobs_prom(out, ps);

    for (size_t m = 0; m < NVOL_METRICS; m++) {
        const struct vol_metric *vm = &g_vol_metrics[m];
        if (vm->io && !io)
            continue; /* no sample: no family */
        admin_prom_family(out, vm->name, vm->type, vm->help);
        for (size_t i = 0; i < ps->nvols; i++) {
            const struct vol_stats *vs = &ps->vols[i];
            if (vm->io && !vs->io)
                continue;
            for (int op = 0; op < (vm->per_op ? VD_IO_NOPS : 1); op++) {
                const char *vl[] = { "pool",
                                     pname,
                                     "volume",
                                     vs->vi.name,
                                     vm->per_op ? "op" : NULL,
                                     g_op_names[op],
                                     NULL };
                admin_prom_sample(out, vm->name, vl, vm->get(vs, op));
            }
        }
    }
    if (io) {
        const char *h = "vdlvm_volume_io_latency_seconds";
        admin_prom_family(out, h, "histogram",
                          "time the volume took to serve a command, by op "
                          "(not counting time queued for a worker or held by a "
                          "QoS limit)");
        for (size_t i = 0; i < ps->nvols; i++) {
            const struct vol_stats *vs = &ps->vols[i];
            if (!vs->io)
                continue;
            for (int op = 0; op < VD_IO_NOPS; op++) {
                const char *vl[] = { "pool",      pname, "volume",
                                     vs->vi.name, "op",  g_op_names[op],
                                     NULL };
                admin_prom_histogram(out, h, vl, vd_lat_bounds_us,
                                     VD_LAT_NBOUNDS, vs->io->c.lat[op],
                                     vs->io->c.lat_ns_sum[op]);
            }
        }
    }
}

/* ---- JSON ---------------------------------------------------------------- */

static void json_u64_array(FILE *out, const uint64_t *v, size_t n)
{
    fputc('[', out);
    for (size_t i = 0; i < n; i++)
        fprintf(out, "%s%" PRIu64, i ? "," : "", v[i]);
    fputc(']', out);
}

static void vol_stats_json(FILE *out, const struct vol_stats *vs)
{
    fputs("{\"volume\":", out);
    admin_jstr(out, vs->vi.name);
    fprintf(out,
            ",\"exported\":%s,\"luns\":%u,\"size\":%" PRIu64
            ",\"allocated\":%" PRIu64 ",\"thin\":%s",
            vs->io ? "true" : "false", vs->io ? vs->io->luns : 0, vs->vi.size,
            vs->st.allocated, vs->st.thin ? "true" : "false");
    if (vs->st.thin)
        fprintf(out,
                ",\"chunk_size\":%" PRIu64 ",\"allocated_chunks\":%" PRIu64,
                vs->st.chunk_size, thin_chunks(vs));
    if (vs->has_mi)
        fprintf(out,
                ",\"resync\":{\"state\":\"%s\",\"degraded\":%s,"
                "\"done_bytes\":%" PRIu64 ",\"total_bytes\":%" PRIu64
                ",\"rate_bytes_per_s\":%" PRIu64 "}",
                resync_state_str(vs->mi.resync_state),
                vs->st.degraded ? "true" : "false", vs->mi.done_bytes,
                vs->mi.total_bytes, vs->mi.rate_bytes_per_s);
    if (vs->io) {
        const struct vd_io_counters *c = &vs->io->c;
        fprintf(out,
                ",\"io\":{\"reads\":%" PRIu64 ",\"writes\":%" PRIu64
                ",\"other\":%" PRIu64 ",\"read_bytes\":%" PRIu64
                ",\"write_bytes\":%" PRIu64 ",\"errors\":{",
                c->ops[VD_IO_OP_READ], c->ops[VD_IO_OP_WRITE],
                c->ops[VD_IO_OP_OTHER], c->bytes[VD_IO_OP_READ],
                c->bytes[VD_IO_OP_WRITE]);
        for (int op = 0; op < VD_IO_NOPS; op++)
            fprintf(out, "%s\"%s\":%" PRIu64, op ? "," : "", g_op_names[op],
                    c->errors[op]);
        fputs("},\"latency\":{\"bounds_us\":", out);
        json_u64_array(out, vd_lat_bounds_us, VD_LAT_NBOUNDS);
        for (int op = 0; op < VD_IO_NOPS; op++) {
            fprintf(out, ",\"%s\":{\"buckets\":", g_op_names[op]);
            json_u64_array(out, c->lat[op], VD_LAT_NBOUNDS + 1);
            fprintf(out, ",\"sum_ns\":%" PRIu64 "}", c->lat_ns_sum[op]);
        }
        fputs("}}", out);
    } else {
        fputs(",\"io\":null", out);
    }
    fputc('}', out);
}

/* "\"move\":{...}": the evacuation and the rebalance, null when none
 * runs, and the mover's totals. */
static void move_json(FILE *out, const struct vd_move_status *m)
{
    fputs("\"move\":{\"evacuate\":", out);
    if (m->evacuating) {
        fputs("{\"device\":", out);
        admin_jstr(out, m->evac_dev);
        fprintf(out, ",\"done_bytes\":%" PRIu64 ",\"total_bytes\":%" PRIu64 "}",
                m->evac_total_bytes - m->evac_left_bytes, m->evac_total_bytes);
    } else {
        fputs("null", out);
    }
    fputs(",\"rebalance\":", out);
    if (m->rebalancing)
        fprintf(out, "{\"done_bytes\":%" PRIu64 ",\"total_bytes\":%" PRIu64 "}",
                m->reb_done_bytes, m->reb_total_bytes);
    else
        fputs("null", out);
    fprintf(out,
            ",\"rate_bytes_per_s\":%" PRIu64 ",\"eta_s\":%" PRIu64
            ",\"moves_done\":%" PRIu64 ",\"moved_bytes\":%" PRIu64 "}",
            m->rate_bps, m->eta_s, m->stats.moves_done, m->stats.bytes_copied);
}

static void pool_stats_json(FILE *out, const struct pool_stats *ps)
{
    fputs("{\"pool\":", out);
    admin_jstr(out, ps->pi.name);
    fprintf(
        out,
        ",\"exported\":%s,\"size\":%" PRIu64 ",\"free\":%" PRIu64
        ",\"allocated\":%" PRIu64 ",\"provisioned\":%" PRIu64 ",\"devices\":[",
        ps->served ? "true" : "false", ps->pi.total_bytes, ps->pi.free_bytes,
        ps->pi.allocated_bytes, ps->pi.provisioned_bytes);
    for (uint32_t i = 0; i < ps->pi.ndevs; i++) {
        const struct vd_dev_info *d = &ps->devs[i];
        fputs(i ? ",{\"device\":" : "{\"device\":", out);
        admin_jstr(out, d->name);
        fputs(",\"node\":", out);
        admin_jstr(out, d->node);
        fprintf(out, ",\"state\":\"%s\",\"state_msg\":",
                admin_dev_state_str(d->state));
        admin_jstr(out, d->state_msg);
        fprintf(out, ",\"size\":%" PRIu64 ",\"used\":%" PRIu64, d->size,
                d->used_extents * ps->pi.extent_size);
        fprintf(out,
                ",\"errors\":{\"read\":%" PRIu64 ",\"write\":%" PRIu64
                ",\"flush\":%" PRIu64 "},\"reconnects\":%" PRIu64 "}",
                ps->devc[i].read_errors, ps->devc[i].write_errors,
                ps->devc[i].flush_errors, ps->devc[i].reconnects);
    }
    fputs("],\"volumes\":[", out);
    for (size_t i = 0; i < ps->nvols; i++) {
        if (i)
            fputc(',', out);
        vol_stats_json(out, &ps->vols[i]);
    }
    fputs("],", out);
    move_json(out, &ps->mv);
    fputs(",\"jobs\":[", out);
    for (size_t i = 0; i < ps->njobs; i++) {
        if (i)
            fputc(',', out);
        admin_job_json(out, &ps->jobs[i]);
    }
    fputs("]}\n", out);
}

/* ---- text ---------------------------------------------------------------- */

/* Mean latency of op in microseconds, "-" without commands. */
static void fmt_mean_us(const struct vd_io_counters *c, int op, char *buf,
                        size_t len)
{
    if (!c->ops[op])
        snprintf(buf, len, "-");
    else
        snprintf(buf, len, "%" PRIu64 "us",
                 c->lat_ns_sum[op] / c->ops[op] / 1000);
}

static void pool_stats_text(FILE *out, const struct pool_stats *ps)
{
    struct table t = { .ncols = 10 };
    char a[32], b[32];

    fprintf(out, "pool '%s': ", ps->pi.name);
    if (ps->served)
        fprintf(out, "exported by this host's tgtd\n");
    else
        fprintf(out, "volumes are not exported: no tgtd on this host serves "
                     "the pool, so there are no I/O counters (they live in "
                     "the tgtd exporting a volume)\n");
    admin_tbl_cell(&t, 0, "VOLUME");
    admin_tbl_cell(&t, 1, "LUNS");
    admin_tbl_cell(&t, 2, "READS");
    admin_tbl_cell(&t, 3, "READ");
    admin_tbl_cell(&t, 4, "WRITES");
    admin_tbl_cell(&t, 5, "WRITTEN");
    admin_tbl_cell(&t, 6, "ERRORS");
    admin_tbl_cell(&t, 7, "RD_MEAN");
    admin_tbl_cell(&t, 8, "WR_MEAN");
    admin_tbl_cell(&t, 9, "ALLOCATED");
    for (size_t i = 0; i < ps->nvols; i++) {
        const struct vol_stats *vs = &ps->vols[i];
        const struct vd_io_counters *c = vs->io ? &vs->io->c : NULL;
        admin_tbl_cell(&t, 0, "%s", vs->vi.name);
        admin_tbl_cell(&t, 1, "%u", vs->io ? vs->io->luns : 0);
        if (c) {
            admin_fmt_size(c->bytes[VD_IO_OP_READ], a, sizeof(a));
            admin_fmt_size(c->bytes[VD_IO_OP_WRITE], b, sizeof(b));
            admin_tbl_cell(&t, 2, "%" PRIu64, c->ops[VD_IO_OP_READ]);
            admin_tbl_cell(&t, 3, "%s", a);
            admin_tbl_cell(&t, 4, "%" PRIu64, c->ops[VD_IO_OP_WRITE]);
            admin_tbl_cell(&t, 5, "%s", b);
            admin_tbl_cell(&t, 6, "%" PRIu64,
                           c->errors[0] + c->errors[1] + c->errors[2]);
            fmt_mean_us(c, VD_IO_OP_READ, a, sizeof(a));
            fmt_mean_us(c, VD_IO_OP_WRITE, b, sizeof(b));
            admin_tbl_cell(&t, 7, "%s", a);
            admin_tbl_cell(&t, 8, "%s", b);
        } else {
            for (int k = 2; k <= 8; k++)
                admin_tbl_cell(&t, k, "-");
        }
        admin_fmt_alloc(vs->st.allocated, vs->vi.size, a, sizeof(a));
        if (vs->st.thin)
            admin_tbl_cell(&t, 9, "%s, %" PRIu64 " chunks", a, thin_chunks(vs));
        else
            admin_tbl_cell(&t, 9, "%s", a);
    }
    admin_tbl_print(&t, out, "  ");
    admin_tbl_free(&t);
    for (size_t i = 0; i < ps->nvols; i++) {
        const struct vol_stats *vs = &ps->vols[i];
        if (vs->has_mi && vs->st.resyncing)
            fprintf(out, "  %s: resync %s, %" PRIu64 " of %" PRIu64 " bytes\n",
                    vs->vi.name, resync_state_str(vs->mi.resync_state),
                    vs->mi.done_bytes, vs->mi.total_bytes);
    }
    char line[200];
    const struct vd_move_status *m = &ps->mv;
    if (m->evacuating) {
        admin_progress_line(line, sizeof(line),
                            m->evac_total_bytes - m->evac_left_bytes,
                            m->evac_total_bytes, m->rate_bps, 30);
        fprintf(out, "  evacuate '%s': %s\n", m->evac_dev, line);
    }
    if (m->rebalancing) {
        admin_progress_line(line, sizeof(line), m->reb_done_bytes,
                            m->reb_total_bytes, m->rate_bps, 30);
        fprintf(out, "  rebalance: %s\n", line);
    }
    for (size_t i = 0; i < ps->njobs; i++)
        admin_job_text(out, &ps->jobs[i]);
    struct table d = { .ncols = 6 };
    admin_tbl_cell(&d, 0, "DEVICE");
    admin_tbl_cell(&d, 1, "NODE");
    admin_tbl_cell(&d, 2, "STATE");
    admin_tbl_cell(&d, 3, "USED");
    admin_tbl_cell(&d, 4, "ERRORS(R/W/F)");
    admin_tbl_cell(&d, 5, "RECONNECTS");
    for (uint32_t i = 0; i < ps->pi.ndevs; i++) {
        const struct vd_dev_info *di = &ps->devs[i];
        admin_tbl_cell(&d, 0, "%s", di->name);
        admin_tbl_cell(&d, 1, "%s", di->node);
        if (di->state == VD_DEV_OK)
            admin_tbl_cell(&d, 2, "ok");
        else
            admin_tbl_cell(&d, 2, "%s: %s", admin_dev_state_str(di->state),
                           di->state_msg);
        admin_fmt_size(di->used_extents * ps->pi.extent_size, a, sizeof(a));
        admin_fmt_size(di->size, b, sizeof(b));
        admin_tbl_cell(&d, 3, "%s of %s", a, b);
        admin_tbl_cell(&d, 4, "%" PRIu64 "/%" PRIu64 "/%" PRIu64,
                       ps->devc[i].read_errors, ps->devc[i].write_errors,
                       ps->devc[i].flush_errors);
        admin_tbl_cell(&d, 5, "%" PRIu64, ps->devc[i].reconnects);
    }
    admin_tbl_print(&d, out, "  ");
    admin_tbl_free(&d);
}

void admin_dev_counters_json(FILE *out, vd_pool *pool, uint32_t i)
{
    struct vd_dev_counters c;

    if (vd_pool_dev_get_counters(pool, i, &c) < 0)
        return;
    fprintf(out,
            ",\"errors\":{\"read\":%" PRIu64 ",\"write\":%" PRIu64
            ",\"flush\":%" PRIu64 "},\"reconnects\":%" PRIu64,
            c.read_errors, c.write_errors, c.flush_errors, c.reconnects);
}

int admin_cmd_stats(vd_pool *pool, struct cmd_args *a, FILE *out, FILE *err)
{
    struct pool_stats ps;
    int r = pool_stats_get(pool, a->vol[0] ? a->vol : NULL, &ps);

    if (r < 0) {
        if (a->vol[0])
            return admin_vol_fail(err, r, a->pool, a->vol, "stats");
        return admin_lib_fail(err, r, "pool '%s': stats", a->pool);
    }
    if (a->given & O_PROMETHEUS)
        pool_stats_prom(out, &ps);
    else if (a->given & O_JSON)
        pool_stats_json(out, &ps);
    else
        pool_stats_text(out, &ps);
    pool_stats_free(&ps);
    return VD_EXIT_OK;
}

int admin_check_stats(struct cmd_args *a, const char *cmdname, FILE *err)
{
    if ((a->given & O_JSON) && (a->given & O_PROMETHEUS)) {
        admin_msg(err, "%s: give --json or --prometheus, not both", cmdname);
        return VD_EXIT_USAGE;
    }
    return 0;
}

/* ---- several pools into one exposition ----------------------------------- */
/* Each pool's output has its own HELP/TYPE lines; an exposition must have
 * one family block per metric name, so families of the same name are
 * joined: the first block's header, then every block's samples. */

struct fam {
    char *name;   /* after "# HELP " */
    char *header; /* HELP and TYPE lines */
    char *samples;
    size_t hlen, slen;
};

static int fam_append(char **buf, size_t *len, const char *s, size_t n)
{
    char *p = realloc(*buf, *len + n + 1);

    if (!p)
        return -ENOMEM;
    memcpy(p + *len, s, n);
    *len += n;
    p[*len] = 0;
    *buf = p;
    return 0;
}

int vd_prom_merge(char *const *texts, size_t n, FILE *out)
{
    struct fam *f = NULL;
    size_t nf = 0;
    int r = 0;

    for (size_t t = 0; t < n && r == 0; t++) {
        struct fam *cur = NULL;
        int new_header = 0;
        for (const char *l = texts[t]; l && *l && r == 0;) {
            const char *e = strchr(l, '\n');
            size_t len = e ? (size_t)(e - l) + 1 : strlen(l);
            if (!strncmp(l, "# HELP ", 7)) {
                const char *nm = l + 7;
                size_t nl = strcspn(nm, " \n");
                cur = NULL;
                for (size_t i = 0; i < nf; i++)
                    if (strlen(f[i].name) == nl && !strncmp(f[i].name, nm, nl))
                        cur = &f[i];
                new_header = !cur;
                if (!cur) {
                    struct fam *g = realloc(f, (nf + 1) * sizeof(*f));
                    if (!g) {
                        r = -ENOMEM;
                        break;
                    }
                    f = g;
                    cur = &f[nf++];
                    memset(cur, 0, sizeof(*cur));
                    cur->name = strndup(nm, nl);
                    if (!cur->name) {
                        r = -ENOMEM;
                        break;
                    }
                }
            }
            if (cur) {
                if (l[0] == '#') {
                    if (new_header)
                        r = fam_append(&cur->header, &cur->hlen, l, len);
                } else {
                    r = fam_append(&cur->samples, &cur->slen, l, len);
                }
            }
            l += len;
        }
    }
    for (size_t i = 0; i < nf; i++) {
        if (r == 0) {
            fputs(f[i].header ? f[i].header : "", out);
            fputs(f[i].samples ? f[i].samples : "", out);
        }
        free(f[i].name);
        free(f[i].header);
        free(f[i].samples);
    }
    free(f);
    return r;
}
