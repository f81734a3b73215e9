/* vdlvm fuzzing: SCSI commands with parameter lists from initiators, as the
 * module (tgt-backend/bs_vdlvm.c) handles them: UNMAP (parameter list),
 * WRITE SAME 10/16 (data-out block, LBDATA/PBDATA, UNMAP bit), COMPARE AND
 * WRITE, ORWRITE 16, GET LBA STATUS (allocation length) (docs/fuzz.md).
 *
 * bs_vdlvm.c's command code is static and runs inside tgtd: this file
 * includes bs_vdlvm.c itself and provides the few tgt functions it calls
 * (sense building, mode pages, reservations; a submit that runs the command
 * at once), so the module's own code runs unchanged on the linear volume
 * "lin" of the fuzzing pool (2 MiB, 512-byte blocks, thin provisioning
 * advertised so that UNMAP reaches the module).  What tgt's core checks
 * before a command reaches the module (sbc_rw: PROTECT bits, the LBA range,
 * WRITE SAME's data-out length of 0 or one block) is done here as tgt
 * 1.0.85 does it; UNMAP and GET LBA STATUS enter through the module's own
 * entry points (bs_vdlvm_unmap, bs_vdlvm_get_lba_status).
 *
 * Input: bytes 0-15 the CDB, whose byte 0 selects the command and is
 * replaced by its opcode (0 UNMAP, 1 WRITE SAME 10, 2 WRITE SAME 16,
 * 3 COMPARE AND WRITE, 4 GET LBA STATUS, 5 ORWRITE 16), then the data-out
 * buffer (for GET LBA STATUS: two bytes of data-in buffer length,
 * big-endian). */
#include "../../tgt-backend/bs_vdlvm.c"

#include "fuzz_common.h"

/* ---- tgt, as much as the module's command code uses --------------------- */
int is_debug;
int nr_iothreads = 1;
static int g_sense_key, g_sense_asc;

void sense_data_build(struct scsi_cmd *cmd, uint8_t key, uint16_t asc)
{
    g_sense_key = key;
    g_sense_asc = asc;
    scsi_set_result(cmd, SAM_STAT_CHECK_CONDITION);
}

void sense_data_build_with_info(struct scsi_cmd *cmd, uint8_t key, uint16_t asc,
                                uint64_t info)
{
    sense_data_build(cmd, key, asc);
}

struct mode_pg *find_mode_page(struct scsi_lu *lu, uint8_t pcode,
                               uint8_t subpcode)
{
    return NULL; /* no caching page: every write is FUA */
}

int device_reserved(struct scsi_cmd *cmd)
{
    return 0;
}

void log_debug(const char *fmt, ...)
{
}
void log_error(const char *fmt, ...)
{
}
void log_warning(const char *fmt, ...)
{
}
void bs_create_opcode_map(struct backingstore_template *bst,
                          unsigned char *opcodes, int num)
{
}
int register_backingstore_template(struct backingstore_template *bst)
{
    return 0;
}
void target_cmd_io_done(struct scsi_cmd *cmd, int result)
{
}
int tgt_event_add(int fd, int events, event_handler_t handler, void *data)
{
    return 0;
}
void tgt_event_del(int fd)
{
}
void ua_sense_add_other_it_nexus(uint64_t itn_id, struct scsi_lu *lu,
                                 uint16_t asc)
{
}

/* tgt's scsi.c, for the opcodes fuzzed here (its own loads, with casts). */
static uint64_t load_be(const uint8_t *p, int n)
{
    uint64_t v = 0;

    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

uint64_t scsi_rw_offset(uint8_t *scb)
{
    switch (scb[0]) {
    case WRITE_SAME:
        return load_be(&scb[2], 4);
    case WRITE_SAME_16:
    case COMPARE_AND_WRITE:
    case ORWRITE_16:
        return load_be(&scb[2], 8);
    }
    return 0;
}

uint32_t scsi_rw_count(uint8_t *scb)
{
    switch (scb[0]) {
    case WRITE_SAME:
        return load_be(&scb[7], 2);
    case WRITE_SAME_16:
    case ORWRITE_16:
        return load_be(&scb[10], 4);
    case COMPARE_AND_WRITE:
        return scb[13];
    }
    return 0;
}

/* ---- the LU ------------------------------------------------------------- */
static struct {
    struct scsi_lu lu;
    struct vdlvm_lu vl; /* VDLU(lu): right after the scsi_lu */
} g_lu;
static vd_pool *g_pool;
static vd_vol *g_vol;

/* The module's submit queues to a worker; here the command runs at once. */
static int submit_now(struct scsi_cmd *cmd)
{
    cmd_exec(cmd, g_vol);
    return 0;
}
static struct backingstore_template g_bst = { .bs_cmd_submit = submit_now };

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const struct vd_conf_pool *conf = fz_pool_setup();

    if (vd_pool_open(conf, &g_pool) < 0 ||
        !(g_vol = vd_vol_open(g_pool, "lin")))
        abort();
    g_zero = calloc(1, CHUNK_MAX);
    g_lu.lu.size = vd_vol_size(g_vol);
    g_lu.lu.blk_shift = 9;
    g_lu.lu.attrs.thinprovisioning = 1;
    g_lu.lu.bst = &g_bst;
    g_lu.vl.lu = &g_lu.lu;
    g_lu.vl.vol = g_vol;
    fz_snapshot(); /* the volume's data is restored after each input */
    return 0;
}

/* sbc_rw's checks for the opcodes fuzzed here (tgt 1.0.85, sbc.c). */
static int sbc_rw_checks(struct scsi_cmd *cmd)
{
    struct scsi_lu *lu = cmd->dev;
    uint64_t lba = scsi_rw_offset(cmd->scb);
    uint64_t tl = scsi_rw_count(cmd->scb);
    uint32_t bs = 1u << lu->blk_shift;

    if (cmd->scb[1] & 0xe0)
        return -1;
    if (cmd->scb[0] == WRITE_SAME || cmd->scb[0] == WRITE_SAME_16) {
        if ((cmd->scb[1] & 0x10) ||
            ((cmd->scb[1] & 0x08) && !lu->attrs.thinprovisioning) ||
            (cmd->scb[1] & 0x06) == 0x06 ||
            (scsi_get_out_length(cmd) && scsi_get_out_length(cmd) != bs))
            return -1;
        if (tl == 0)
            tl = (lu->size >> lu->blk_shift) - lba;
    }
    if (tl) {
        if (lba + tl < lba || lba + tl > lu->size >> lu->blk_shift)
            return -1;
    } else if (lba >= lu->size >> lu->blk_shift) {
        return -1;
    }
    cmd->offset = lba << lu->blk_shift;
    cmd->tl = tl << lu->blk_shift;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t ops[] = { UNMAP,
                                   WRITE_SAME,
                                   WRITE_SAME_16,
                                   COMPARE_AND_WRITE,
                                   SERVICE_ACTION_IN,
                                   ORWRITE_16 };
    struct scsi_cmd cmd;
    uint8_t cdb[16];
    uint8_t *out = NULL, *in = NULL;
    size_t outlen = 0;

    if (size < 16 || data[0] >= sizeof(ops))
        return 0;
    memset(&cmd, 0, sizeof(cmd));
    memcpy(cdb, data, 16);
    cdb[0] = ops[data[0]];
    cmd.scb = cdb;
    cmd.scb_len = 16;
    cmd.dev = &g_lu.lu;
    g_sense_key = g_sense_asc = 0;
    if (cdb[0] == SERVICE_ACTION_IN) {
        uint32_t inlen = size >= 18 ? load_be(data + 16, 2) : 0;
        cdb[1] = SAI_GET_LBA_STATUS;
        in = malloc(inlen ? inlen : 1);
        scsi_set_in_buffer(&cmd, in);
        scsi_set_in_length(&cmd, inlen);
        bs_vdlvm_get_lba_status(0, &cmd);
        free(in);
        return 0;
    }
    /* Exactly the data-out bytes, so ASan sees any read past them. */
    outlen = size - 16;
    out = malloc(outlen ? outlen : 1);
    memcpy(out, data + 16, outlen);
    scsi_set_out_buffer(&cmd, out);
    scsi_set_out_length(&cmd, outlen);
    if (cdb[0] == UNMAP)
        bs_vdlvm_unmap(0, &cmd);
    else if (sbc_rw_checks(&cmd) == 0)
        g_bst.bs_cmd_submit(&cmd);
    free(out);
    fz_restore();
    return 0;
}
