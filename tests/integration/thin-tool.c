/* Test driver for thin LUNs (test-thin.sh), built by the test with
 * `cc ... -liscsi`; one iSCSI session per run, libiscsi's sync API.
 *
 *   thin-tool lbp URL
 *       what the LUN advertises, as key=value lines: READ CAPACITY(16)
 *       lbpme, lbprz, lbppbe; VPD B2 lbpu, lbpws, lbpws10, lbprz_b2,
 *       ptype; VPD B0 max_unmap, max_unmap_bdc, opt_unmap_gran, ugavalid,
 *       unmap_gran_align.
 *   thin-tool write URL OFF LEN BYTE
 *       one WRITE(16) of LEN bytes of BYTE at byte offset OFF; prints
 *       "status=good" or "status=check key=K asc=0xAA ascq=0xQQ"; exit 0 on
 *       GOOD, 1 on CHECK CONDITION, 2 when the command could not be sent.
 *   thin-tool fill URL OFF STEP BYTE
 *       WRITE(16)s of STEP bytes of BYTE from OFF on, each at the next STEP,
 *       until one fails or the LUN ends; prints "written=N" (bytes
 *       acknowledged) and the failing command's status as for write.
 *   thin-tool writesame URL OFF LEN BYTE UNMAP
 *       one WRITE SAME(16) of one block of BYTE over [OFF, OFF+LEN), with
 *       the UNMAP bit when UNMAP is 1; status as for write.
 *   thin-tool unmap URL OFF LEN
 *       one UNMAP of [OFF, OFF+LEN); status as for write.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>

static struct iscsi_context *g_iscsi;
static int g_lun;
static uint32_t g_bs = 512;
static uint64_t g_blocks;

static int connect_url(const char *url)
{
    struct iscsi_url *u;
    struct scsi_task *t;
    struct scsi_readcapacity16 *rc16;

    g_iscsi = iscsi_create_context("iqn.2024-01.org.vdlvm.test:thin-tool");
    if (!g_iscsi)
        return -1;
    u = iscsi_parse_full_url(g_iscsi, url);
    if (!u) {
        fprintf(stderr, "thin-tool: bad URL %s: %s\n", url,
                iscsi_get_error(g_iscsi));
        return -1;
    }
    iscsi_set_session_type(g_iscsi, ISCSI_SESSION_NORMAL);
    iscsi_set_header_digest(g_iscsi, ISCSI_HEADER_DIGEST_NONE_CRC32C);
    iscsi_set_targetname(g_iscsi, u->target);
    if (iscsi_full_connect_sync(g_iscsi, u->portal, u->lun) != 0) {
        fprintf(stderr, "thin-tool: login to %s failed: %s\n", url,
                iscsi_get_error(g_iscsi));
        iscsi_destroy_url(u);
        return -1;
    }
    g_lun = u->lun;
    iscsi_destroy_url(u);
    t = iscsi_readcapacity16_sync(g_iscsi, g_lun);
    if (!t || t->status != SCSI_STATUS_GOOD ||
        !(rc16 = scsi_datain_unmarshall(t))) {
        fprintf(stderr, "thin-tool: READ CAPACITY(16) failed\n");
        return -1;
    }
    g_bs = rc16->block_length;
    g_blocks = rc16->returned_lba + 1;
    scsi_free_scsi_task(t);
    return 0;
}

/* Prints the status line; 0 GOOD, 1 CHECK CONDITION, 2 no answer. */
static int report(struct scsi_task *t)
{
    int r;

    if (!t) {
        printf("status=none error=%s\n", iscsi_get_error(g_iscsi));
        return 2;
    }
    if (t->status == SCSI_STATUS_GOOD) {
        printf("status=good\n");
        r = 0;
    } else if (t->status == SCSI_STATUS_CHECK_CONDITION) {
        printf("status=check key=%d asc=0x%02x ascq=0x%02x (%s: %s)\n",
               t->sense.key, (t->sense.ascq >> 8) & 0xff, t->sense.ascq & 0xff,
               scsi_sense_key_str(t->sense.key),
               scsi_sense_ascq_str(t->sense.ascq));
        r = 1;
    } else {
        printf("status=0x%x\n", t->status);
        r = 2;
    }
    scsi_free_scsi_task(t);
    return r;
}

static int lbp(void)
{
    struct scsi_task *t;
    struct scsi_readcapacity16 *rc16;
    struct scsi_inquiry_logical_block_provisioning *b2;
    struct scsi_inquiry_block_limits *b0;

    t = iscsi_readcapacity16_sync(g_iscsi, g_lun);
    if (!t || t->status != SCSI_STATUS_GOOD ||
        !(rc16 = scsi_datain_unmarshall(t)))
        return 2;
    printf("lbpme=%d\nlbprz=%d\nlbppbe=%d\nblock_size=%u\n", rc16->lbpme,
           rc16->lbprz, rc16->lbppbe, rc16->block_length);
    scsi_free_scsi_task(t);

    t = iscsi_inquiry_sync(g_iscsi, g_lun, 1,
                           SCSI_INQUIRY_PAGECODE_LOGICAL_BLOCK_PROVISIONING,
                           255);
    if (!t || t->status != SCSI_STATUS_GOOD || !(b2 = scsi_datain_unmarshall(t)))
        return 2;
    printf("lbpu=%d\nlbpws=%d\nlbpws10=%d\nlbprz_b2=%d\nptype=%d\n", b2->lbpu,
           b2->lbpws, b2->lbpws10, b2->lbprz, (int)b2->provisioning_type);
    scsi_free_scsi_task(t);

    t = iscsi_inquiry_sync(g_iscsi, g_lun, 1, SCSI_INQUIRY_PAGECODE_BLOCK_LIMITS,
                           255);
    if (!t || t->status != SCSI_STATUS_GOOD || !(b0 = scsi_datain_unmarshall(t)))
        return 2;
    printf("max_unmap=%" PRIu32 "\nmax_unmap_bdc=%" PRIu32
           "\nopt_unmap_gran=%" PRIu32 "\nugavalid=%d\nunmap_gran_align=%" PRIu32
           "\n",
           b0->max_unmap, b0->max_unmap_bdc, b0->opt_unmap_gran, b0->ugavalid,
           b0->unmap_gran_align);
    scsi_free_scsi_task(t);
    return 0;
}

static unsigned char *filled(uint64_t len, int byte)
{
    unsigned char *buf = malloc(len ? len : 1);

    if (!buf) {
        perror("thin-tool: malloc");
        exit(2);
    }
    memset(buf, byte, len);
    return buf;
}

static int write_one(uint64_t off, uint64_t len, int byte)
{
    unsigned char *buf = filled(len, byte);
    int r = report(iscsi_write16_sync(g_iscsi, g_lun, off / g_bs, buf,
                                      (uint32_t)len, (int)g_bs, 0, 0, 0, 0, 0));

    free(buf);
    return r;
}

static int fill(uint64_t off, uint64_t step, int byte)
{
    unsigned char *buf = filled(step, byte);
    uint64_t written = 0, end = g_blocks * g_bs;
    struct scsi_task *t = NULL;

    for (; off + step <= end; off += step) {
        t = iscsi_write16_sync(g_iscsi, g_lun, off / g_bs, buf, (uint32_t)step,
                               (int)g_bs, 0, 0, 0, 0, 0);
        if (!t || t->status != SCSI_STATUS_GOOD)
            break;
        scsi_free_scsi_task(t);
        t = NULL;
        written += step;
    }
    free(buf);
    printf("written=%" PRIu64 "\nfailed_at=%" PRIu64 "\n", written, off);
    if (!t && off + step > end) {
        printf("status=end\n");
        return 0;
    }
    return report(t);
}

static int writesame(uint64_t off, uint64_t len, int byte, int unmap)
{
    unsigned char *buf = filled(g_bs, byte);
    int r = report(iscsi_writesame16_sync(g_iscsi, g_lun, off / g_bs, buf, g_bs,
                                          (uint32_t)(len / g_bs), 0, unmap, 0,
                                          0));

    free(buf);
    return r;
}

static int unmap(uint64_t off, uint64_t len)
{
    struct unmap_list l = { .lba = off / g_bs, .num = (uint32_t)(len / g_bs) };

    return report(iscsi_unmap_sync(g_iscsi, g_lun, 0, 0, &l, 1));
}

static uint64_t num(const char *s)
{
    char *end;
    uint64_t v;

    errno = 0;
    v = strtoull(s, &end, 0);
    if (errno || end == s || *end) {
        fprintf(stderr, "thin-tool: '%s' is not a number\n", s);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    int r = 2;

    if (argc < 3) {
        fprintf(stderr, "usage: see the header of thin-tool.c\n");
        return 2;
    }
    if (connect_url(argv[2]) < 0)
        return 2;
    if (!strcmp(argv[1], "lbp") && argc == 3)
        r = lbp();
    else if (!strcmp(argv[1], "write") && argc == 6)
        r = write_one(num(argv[3]), num(argv[4]), (int)num(argv[5]));
    else if (!strcmp(argv[1], "fill") && argc == 6)
        r = fill(num(argv[3]), num(argv[4]), (int)num(argv[5]));
    else if (!strcmp(argv[1], "writesame") && argc == 7)
        r = writesame(num(argv[3]), num(argv[4]), (int)num(argv[5]),
                      (int)num(argv[6]));
    else if (!strcmp(argv[1], "unmap") && argc == 5)
        r = unmap(num(argv[3]), num(argv[4]));
    else
        fprintf(stderr, "thin-tool: bad arguments; see thin-tool.c\n");
    iscsi_logout_sync(g_iscsi);
    iscsi_destroy_context(g_iscsi);
    fflush(stdout);
    return r;
}
