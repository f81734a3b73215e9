/* vdlvm: encryption at rest — key slots, unlocking, AES-256-XTS of device
 * data (called by pool/dev.c for every device flagged VD_DEVF_ENCRYPT).
 *
 * What is encrypted
 *   The data area of an encrypted device ([data_offset, size)): every
 *   extent, whatever layout uses it (linear data, mirror legs and their
 *   bitmaps, thin chunk maps and chunks).  AES-256-XTS, one XTS data unit
 *   per sector of 512 bytes (cipher 1, default) or 4096 (cipher 2,
 *   encryption.sector_size; fixed by the first key slot), tweak = the
 *   sector's device byte offset / sector size as a little-endian 128-bit
 *   number (dm-crypt's aes-xts-plain64).  The device header and the metadata area stay plaintext:
 *   the key slots in it must be readable before the key is known (they
 *   are wrapped keys), and the rest (names, sizes, the extent map) is
 *   layout, not volume data (docs/encryption.md says so).
 *
 * Zeros
 *   A volume expects zeros where nothing was written: the pool zeroes new
 *   extents with the device's zero op (hole punch, BLKZEROOUT, WRITE SAME)
 *   or plain zero buffers, and a fresh sparse file reads zeros.  Those
 *   paths stay raw; the read path leaves a sector whose ciphertext is all
 *   zero as zeros instead of decrypting it.  So every "reads as zeros"
 *   mechanism keeps working unchanged, with no extra writes (zeroing 4 MiB
 *   by writing encrypted zeros would cost a full write per new extent,
 *   remote ones included).  The price: a written sector whose ciphertext
 *   happens to be all zero would read as zeros, probability 2^-4096 per
 *   sector; and a peer learns which sectors were never written since
 *   zeroing (as with dm-crypt and discards).  Plaintext zeros written by
 *   a volume are encrypted like any data (not distinguishable).
 *
 * Threads and ownership
 *   struct vd_crypt belongs to its pool (p->crypt), freed by pool_free
 *   after every I/O thread and the background thread are gone.
 *   - slots[], used, gen, cipher: the pool state, changed by md_apply only (admin
 *     lock held, or open/create single-threaded); read by serialize under
 *     the admin lock.  key add/remove copy them under the lock, run PBKDF2
 *     (~0.1 s a slot) without it (thin allocation and every commit need
 *     that lock), and commit under it only if gen is unchanged, else
 *     -EAGAIN: two concurrent key commands never both pick one free slot
 *     or remove the last two slots.  No I/O thread reads them.
 *   - key[], xts, unlocked: written once by vd_crypt_pool_open before the
 *     devices' d->crypt pointers are set, which happens before any volume
 *     is constructed (vd_vol_ctr) and before the background thread starts;
 *     the threads that do I/O are created or handed the pool after that
 *     (pthread_create / the admin lock give the happens-before).  Read-only
 *     afterwards until vd_crypt_free, which wipes them.
 *   - workers[]: NWORKERS per-pool cipher contexts with a bounce buffer
 *     each.  free_mask (atomic) has bit i set when worker i is free; a
 *     thread takes a worker by clearing its bit (CAS, acquire) and owns it
 *     exclusively until it sets the bit again (release): ctx and bounce
 *     buffer are touched by one thread at a time, so no lock is needed and
 *     nothing is allocated per I/O once a worker is set up (lazily, by its
 *     first owner; the context keeps the key schedule, the bounce buffer
 *     grows to the largest write seen, at most VD_CRYPT_BOUNCE_MAX).
 *     When all NWORKERS are taken (more concurrent I/O than that), a
 *     temporary worker is allocated and freed: slower, still correct.  A
 *     per-pool set rather than thread-locals, so that vd_crypt_free can
 *     wipe every key schedule (OPENSSL_cleanse via EVP_CIPHER_CTX_free)
 *     when the pool closes and two pools in one tgtd never share one.
 *   - A writer keeps its worker across the device write (the bounce buffer
 *     holds the ciphertext); a reader decrypts in the caller's buffer after
 *     the read and keeps the worker only for that.  No lock is held across
 *     I/O; no worker is waited for (the fallback allocates instead).
 *   Interleavings: two writes to one sector each encrypt into their own
 *   bounce buffer; the device orders them as it orders any two writes.  A
 *   read racing a write decrypts whichever ciphertext the device returns
 *   (whole sectors: 512-byte atomicity is the device's, as for plaintext).
 *   Flushes and failure marking do not touch crypt state.  Crash: a torn
 *   sector decrypts to garbage, as a torn plaintext sector is garbage.
 *
 * Keys in memory
 *   The data key lives in vd_crypt.key and in the workers' contexts; key
 *   file contents, derived keys and unwrapped copies are wiped
 *   (OPENSSL_cleanse) as soon as they are used; nothing here logs a key,
 *   a key file's contents or a derived value. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "crypt.h"

#define NWORKERS 64

struct vd_crypt_worker {
    EVP_CIPHER_CTX *enc, *dec; /* XTS with the data key; NULL until used */
    uint32_t sector;           /* the pool's XTS sector size */
    uint8_t *bounce;
    size_t cap;
    bool temp; /* allocated for one I/O (all NWORKERS busy) */
};

struct vd_crypt {
    /* the pool state (see the header comment) */
    struct vd_op_key_slot slots[VD_KEY_SLOTS];
    uint32_t used;   /* bit i: slot i holds a key */
    uint64_t gen;    /* bumped by every slot change (key add/remove races) */
    uint32_t cipher; /* every slot's (VD_CIPHER_*), from the first slot */
    /* set once by vd_crypt_pool_open */
    bool unlocked;
    uint8_t key[64];
    EVP_CIPHER *xts;
    char *key_file;     /* the definition's, for key add's authorisation */
    uint64_t free_mask; /* atomic; bit i: workers[i] is free */
    struct vd_crypt_worker workers[NWORKERS];
    /* vol encrypt (see "vol encrypt" below).  Persisted (op 30, md_apply,
     * admin lock): job_active (also read atomically by the tick without
     * the lock), job_vol, job_rate, job_src.  The rest: admin lock. */
    bool job_active;
    uint32_t job_vol;
    uint64_t job_rate;
    uint8_t job_src[VD_MAX_DEVS / 8];
    bool job_rescrub; /* job loaded at open: zero every free extent of the
                         src devices before it ends */
    uint32_t rs_dev;  /* rescrub cursor */
    uint64_t rs_pe;
    bool last_valid; /* the move the job started last */
    uint32_t last_leg, last_src;
    uint64_t last_le, last_spe;
    unsigned fails; /* consecutive failed moves */
    uint64_t job_total, job_moved, job_scrubbed, job_left;
    char job_error[200];
    int job_busy; /* atomic: one job_step at a time */
};

/* ---- the cipher ----------------------------------------------------------- */

static int worker_setup(struct vd_crypt *c, struct vd_crypt_worker *w)
{
    if (w->enc)
        return 0;
    w->sector = vd_crypt_sector(c);
    w->enc = EVP_CIPHER_CTX_new();
    w->dec = EVP_CIPHER_CTX_new();
    if (!w->enc || !w->dec ||
        EVP_EncryptInit_ex2(w->enc, c->xts, c->key, NULL, NULL) != 1 ||
        EVP_DecryptInit_ex2(w->dec, c->xts, c->key, NULL, NULL) != 1) {
        EVP_CIPHER_CTX_free(w->enc);
        EVP_CIPHER_CTX_free(w->dec);
        w->enc = w->dec = NULL;
        return -ENOMEM;
    }
    return 0;
}

static void worker_clear(struct vd_crypt_worker *w)
{
    EVP_CIPHER_CTX_free(w->enc); /* cleanses the key schedule */
    EVP_CIPHER_CTX_free(w->dec);
    if (w->bounce)
        OPENSSL_cleanse(w->bounce, w->cap);
    free(w->bounce);
    memset(w, 0, sizeof(*w));
}

struct vd_crypt_worker *vd_crypt_worker_get(struct vd_crypt *c)
{
    uint64_t m = __atomic_load_n(&c->free_mask, __ATOMIC_RELAXED);
    struct vd_crypt_worker *w;

    while (m) {
        int i = __builtin_ctzll(m);
        if (__atomic_compare_exchange_n(&c->free_mask, &m, m & ~(1ull << i),
                                        true, __ATOMIC_ACQUIRE,
                                        __ATOMIC_RELAXED)) {
            w = &c->workers[i];
            if (worker_setup(c, w) < 0) {
                __atomic_fetch_or(&c->free_mask, 1ull << i, __ATOMIC_RELEASE);
                return NULL;
            }
            return w;
        }
    }
    w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->temp = true;
    if (worker_setup(c, w) < 0) {
        free(w);
        return NULL;
    }
    return w;
}

void vd_crypt_worker_put(struct vd_crypt *c, struct vd_crypt_worker *w)
{
    if (!w)
        return;
    if (w->temp) {
        worker_clear(w);
        free(w);
        return;
    }
    __atomic_fetch_or(&c->free_mask, 1ull << (w - c->workers),
                      __ATOMIC_RELEASE);
}

static int xts_sectors(EVP_CIPHER_CTX *ctx, uint32_t unit, uint8_t *out,
                       const uint8_t *in, size_t len, uint64_t off,
                       bool skip_zero)
{
    static const uint8_t zero[VD_CRYPT_SECTOR_MAX];
    uint8_t iv[16] = { 0 };
    int n;

    for (size_t o = 0; o < len; o += unit) {
        uint64_t s = (off + o) / unit;
        if (skip_zero && !memcmp(in + o, zero, unit)) {
            if (out != in)
                memset(out + o, 0, unit);
            continue;
        }
        for (int k = 0; k < 8; k++)
            iv[k] = (uint8_t)(s >> (8 * k));
        if (EVP_CipherInit_ex(ctx, NULL, NULL, NULL, iv, -1) != 1 ||
            EVP_CipherUpdate(ctx, out + o, &n, in + o, (int)unit) != 1 ||
            n != (int)unit)
            return -EIO;
    }
    return 0;
}

int vd_crypt_read(struct vd_crypt *c, void *buf, size_t len, uint64_t off)
{
    struct vd_crypt_worker *w;
    int r;

    if (len % vd_crypt_sector(c) || off % vd_crypt_sector(c))
        return -EINVAL;
    if (!(w = vd_crypt_worker_get(c)))
        return -ENOMEM;
    r = xts_sectors(w->dec, w->sector, buf, buf, len, off, true);
    vd_crypt_worker_put(c, w);
    return r;
}

const void *vd_crypt_encrypt(struct vd_crypt_worker *w, const void *src,
                             size_t len, uint64_t off)
{
    if (len % w->sector || off % w->sector || len > VD_CRYPT_BOUNCE_MAX)
        return NULL;
    if (w->cap < len) {
        uint8_t *b;
        size_t cap = w->cap ? w->cap : 64 << 10;
        while (cap < len)
            cap *= 2;
        if (posix_memalign((void **)&b, 4096, cap))
            return NULL;
        if (w->bounce)
            OPENSSL_cleanse(w->bounce, w->cap);
        free(w->bounce);
        w->bounce = b;
        w->cap = cap;
    }
    if (xts_sectors(w->enc, w->sector, w->bounce, src, len, off, false) < 0)
        return NULL;
    return w->bounce;
}

/* ---- key files and key slots --------------------------------------------- */

int vd_crypt_key_file_read(const char *path, const char *what, uint8_t *key,
                           size_t *len, char *msg, size_t msglen)
{
    struct stat st;
    ssize_t n;
    int fd, e;

    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0 && errno == ELOOP) {
        snprintf(msg, msglen,
                 "%s %s is a symbolic link; name the key file itself", what,
                 path);
        return -EINVAL;
    }
    if (fd < 0) {
        e = errno;
        snprintf(msg, msglen, "%s %s: %s", what, path, strerror(e));
        return -e;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        snprintf(msg, msglen, "%s %s is not a regular file; give a file", what,
                 path);
        close(fd);
        return -EINVAL;
    }
    if (st.st_uid != 0 && st.st_uid != geteuid()) {
        snprintf(msg, msglen,
                 "%s %s is owned by uid %u, not by root; chown root %s", what,
                 path, (unsigned)st.st_uid, path);
        close(fd);
        return -EPERM;
    }
    if (st.st_mode & 077) {
        snprintf(msg, msglen,
                 "%s %s is accessible by others (mode %03o); chmod 600 %s",
                 what, path, (unsigned)(st.st_mode & 0777), path);
        close(fd);
        return -EPERM;
    }
    n = read(fd, key, VD_KEY_FILE_MAX + 1);
    e = errno;
    close(fd);
    if (n < 0) {
        snprintf(msg, msglen, "%s %s: %s", what, path, strerror(e));
        return -e;
    }
    if (n < (ssize_t)VD_KEY_FILE_MIN || n > (ssize_t)VD_KEY_FILE_MAX) {
        OPENSSL_cleanse(key, VD_KEY_FILE_MAX + 1);
        snprintf(msg, msglen,
                 "%s %s holds %zd bytes; a key file holds %u to %u bytes, "
                 "e.g. head -c 64 /dev/urandom > %s",
                 what, path, n, VD_KEY_FILE_MIN, VD_KEY_FILE_MAX, path);
        return -EINVAL;
    }
    *len = (size_t)n;
    return 0;
}

/* AAD: the pool uuid and bytes 8..71 of the slot record. */
static void slot_aad(const uint8_t uuid[16], const struct vd_op_key_slot *s,
                     uint8_t aad[16 + 64])
{
    memcpy(aad, uuid, 16);
    memcpy(aad + 16, (const uint8_t *)s + 8, 64);
}

static int derive(const uint8_t *kf, size_t kflen,
                  const struct vd_op_key_slot *s, uint8_t kek[32])
{
    return PKCS5_PBKDF2_HMAC((const char *)kf, (int)kflen, s->salt,
                             sizeof(s->salt), (int)s->iterations, EVP_sha256(),
                             32, kek) == 1
               ? 0
               : -EIO;
}

/* Wrap key into s (slot, cipher, kdf, iterations set; salt and iv made
 * here).  0 or -EIO. */
static int slot_wrap(const uint8_t uuid[16], const uint8_t *kf, size_t kflen,
                     const uint8_t key[64], struct vd_op_key_slot *s)
{
    uint8_t kek[32], aad[80];
    EVP_CIPHER_CTX *ctx = NULL;
    int n, r = -EIO;

    if (RAND_bytes(s->salt, sizeof(s->salt)) != 1 ||
        RAND_bytes(s->iv, sizeof(s->iv)) != 1 || derive(kf, kflen, s, kek) < 0)
        goto out;
    slot_aad(uuid, s, aad);
    if (!(ctx = EVP_CIPHER_CTX_new()) ||
        EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, sizeof(s->iv), NULL) !=
            1 ||
        EVP_EncryptInit_ex(ctx, NULL, NULL, kek, s->iv) != 1 ||
        EVP_EncryptUpdate(ctx, NULL, &n, aad, sizeof(aad)) != 1 ||
        EVP_EncryptUpdate(ctx, s->wrapped, &n, key, 64) != 1 || n != 64 ||
        EVP_EncryptFinal_ex(ctx, s->wrapped + 64, &n) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, sizeof(s->tag),
                            s->tag) != 1)
        goto out;
    r = 0;
out:
    EVP_CIPHER_CTX_free(ctx);
    OPENSSL_cleanse(kek, sizeof(kek));
    return r;
}

/* Unwrap s with the key file: 0 with key set, -EACCES when the key file
 * does not open it (tag mismatch), -EIO. */
static int slot_unwrap(const uint8_t uuid[16], const uint8_t *kf, size_t kflen,
                       const struct vd_op_key_slot *s, uint8_t key[64])
{
    uint8_t kek[32], aad[80];
    EVP_CIPHER_CTX *ctx = NULL;
    int n, r = -EIO;

    if (derive(kf, kflen, s, kek) < 0)
        goto out;
    slot_aad(uuid, s, aad);
    if (!(ctx = EVP_CIPHER_CTX_new()) ||
        EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, sizeof(s->iv), NULL) !=
            1 ||
        EVP_DecryptInit_ex(ctx, NULL, NULL, kek, s->iv) != 1 ||
        EVP_DecryptUpdate(ctx, NULL, &n, aad, sizeof(aad)) != 1 ||
        EVP_DecryptUpdate(ctx, key, &n, s->wrapped, 64) != 1 || n != 64 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, sizeof(s->tag),
                            (void *)s->tag) != 1)
        goto out;
    if (EVP_DecryptFinal_ex(ctx, key + 64, &n) != 1) {
        OPENSSL_cleanse(key, 64);
        r = -EACCES;
        goto out;
    }
    r = 0;
out:
    EVP_CIPHER_CTX_free(ctx);
    OPENSSL_cleanse(kek, sizeof(kek));
    return r;
}

static void slot_init(struct vd_op_key_slot *s, uint32_t slot)
{
    memset(s, 0, sizeof(*s));
    s->h.type = VD_OP_KEY_SLOT;
    s->h.len = sizeof(*s);
    s->slot = slot;
    s->cipher = VD_CIPHER_AES256_XTS_512;
    s->kdf = VD_KDF_PBKDF2_SHA256;
    s->iterations = VD_PBKDF2_ITER;
    s->wrap = VD_WRAP_AES256_GCM;
}

/* The slots of a pool at one moment (key add/remove work on a copy, so
 * that PBKDF2 does not run under the admin lock). */
struct slots {
    struct vd_op_key_slot slot[VD_KEY_SLOTS];
    uint32_t used;
    uint64_t gen;
    uint8_t uuid[16];
};

/* The slot the key file opens (key set), -EACCES if none, -EIO. */
static int find_slot(const struct slots *sl, const uint8_t *kf, size_t kflen,
                     uint8_t key[64])
{
    for (uint32_t i = 0; i < VD_KEY_SLOTS; i++) {
        if (!(sl->used & (1u << i)))
            continue;
        int r = slot_unwrap(sl->uuid, kf, kflen, &sl->slot[i], key);
        if (r == 0)
            return (int)i;
        if (r != -EACCES)
            return r;
    }
    return -EACCES;
}

static int nslots(const struct vd_crypt *c)
{
    return c ? __builtin_popcount(c->used) : 0;
}

/* ---- metadata ------------------------------------------------------------ */

#define BAD(...)                         \
    do {                                 \
        vd_log(VD_LOG_ERR, __VA_ARGS__); \
        return -EINVAL;                  \
    } while (0)

int vd_crypt_md_apply(vd_pool *p, const struct vd_op_hdr *h, uint32_t n)
{
    struct vd_crypt *c = p->crypt;

    if (h->type == VD_OP_CRYPT_JOB) {
        const struct vd_op_crypt_job *j = (const void *)h;
        if (h->len < sizeof(*j))
            BAD("pool '%s': metadata op %u too short", p->name, n);
        if (!c)
            BAD("pool '%s': metadata op %u encrypts a volume of a pool "
                "without key slots",
                p->name, n);
        if (j->vol == VD_NO_DEV) {
            __atomic_store_n(&c->job_active, false, __ATOMIC_RELEASE);
            c->last_valid = false;
            return 0;
        }
        c->job_vol = j->vol; /* the volume may come later in a checkpoint */
        c->job_rate = j->rate;
        memcpy(c->job_src, j->src, sizeof(c->job_src));
        c->job_rescrub = true; /* vd_vol_encrypt clears it (live start) */
        c->rs_dev = 0;
        c->rs_pe = 0;
        c->last_valid = false;
        c->fails = 0;
        __atomic_store_n(&c->job_active, true, __ATOMIC_RELEASE);
        return 0;
    }

    if (h->type == VD_OP_KEY_SLOT) {
        const struct vd_op_key_slot *s = (const void *)h;
        if (h->len < sizeof(*s))
            BAD("pool '%s': metadata op %u too short", p->name, n);
        if (s->slot >= VD_KEY_SLOTS)
            BAD("pool '%s': metadata op %u: key slot %u out of range", p->name,
                n, s->slot);
        if ((s->cipher != VD_CIPHER_AES256_XTS_512 &&
             s->cipher != VD_CIPHER_AES256_XTS_4096) ||
            s->kdf != VD_KDF_PBKDF2_SHA256 || s->wrap != VD_WRAP_AES256_GCM)
            BAD("pool '%s': metadata op %u: key slot %u uses cipher %u, kdf "
                "%u, wrap %u, unknown here (written by a newer vdlvm?)",
                p->name, n, s->slot, s->cipher, s->kdf, s->wrap);
        if (s->iterations < VD_PBKDF2_ITER_MIN ||
            s->iterations > VD_PBKDF2_ITER_MAX)
            BAD("pool '%s': metadata op %u: key slot %u has %u PBKDF2 "
                "iterations, outside %u..%u",
                p->name, n, s->slot, s->iterations, VD_PBKDF2_ITER_MIN,
                VD_PBKDF2_ITER_MAX);
        if (c && (c->used & (1u << s->slot)))
            BAD("pool '%s': metadata op %u: key slot %u is already in use",
                p->name, n, s->slot);
        if (c && c->cipher && c->cipher != s->cipher)
            BAD("pool '%s': metadata op %u: key slot %u gives cipher %u, the "
                "pool's is %u",
                p->name, n, s->slot, s->cipher, c->cipher);
        if (!c) {
            if (!(c = calloc(1, sizeof(*c))))
                return -ENOMEM;
            p->crypt = c;
        }
        c->cipher = s->cipher; /* fixed from the first slot on */
        c->slots[s->slot] = *s;
        c->slots[s->slot].h.len = sizeof(*s);
        c->used |= 1u << s->slot;
        c->gen++;
        return 0;
    }
    const struct vd_op_key_remove *o = (const void *)h;
    if (h->len < sizeof(*o))
        BAD("pool '%s': metadata op %u too short", p->name, n);
    if (o->slot >= VD_KEY_SLOTS || !c || !(c->used & (1u << o->slot)))
        BAD("pool '%s': metadata op %u removes key slot %u, which is empty",
            p->name, n, o->slot);
    c->used &= ~(1u << o->slot);
    c->gen++;
    OPENSSL_cleanse(&c->slots[o->slot], sizeof(c->slots[o->slot]));
    return 0;
}

int vd_crypt_md_serialize(const vd_pool *p, struct vd_opbuf *b)
{
    const struct vd_crypt *c = p->crypt;
    int r;

    for (uint32_t i = 0; c && i < VD_KEY_SLOTS; i++)
        if ((c->used & (1u << i)) &&
            (r = vd_opbuf_add(b, &c->slots[i], sizeof(c->slots[i]))) < 0)
            return r;
    if (c && c->job_active) {
        struct vd_op_crypt_job j;
        memset(&j, 0, sizeof(j));
        j.h.type = VD_OP_CRYPT_JOB;
        j.h.len = sizeof(j);
        j.vol = c->job_vol;
        j.rate = c->job_rate;
        memcpy(j.src, c->job_src, sizeof(j.src));
        if ((r = vd_opbuf_add(b, &j, sizeof(j))) < 0)
            return r;
    }
    return 0;
}

/* ---- create, open, close --------------------------------------------------- */

uint32_t vd_crypt_sector(const struct vd_crypt *c)
{
    return c->cipher == VD_CIPHER_AES256_XTS_4096 ? 4096 : VD_CRYPT_SECTOR;
}

uint32_t vd_crypt_dev_flags(const struct vd_conf_dev *c)
{
    return c->encrypt ? VD_DEVF_ENCRYPT : 0;
}

int vd_crypt_create_ops(const struct vd_conf_pool *conf,
                        const uint8_t pool_uuid[16], struct vd_opbuf *ops)
{
    uint8_t kf[VD_KEY_FILE_MAX + 1], key[64];
    struct vd_op_key_slot s;
    size_t kflen = 0;
    char msg[512];
    int r;

    if (!conf->key_file)
        return 0;
    r = vd_crypt_key_file_read(conf->key_file, "encryption.key_file", kf,
                               &kflen, msg, sizeof(msg));
    if (r < 0) {
        vd_log(VD_LOG_ERR, "pool '%s': %s", conf->name, msg);
        return r;
    }
    slot_init(&s, 0);
    if (conf->crypt_sector == 4096)
        s.cipher = VD_CIPHER_AES256_XTS_4096;
    r = RAND_priv_bytes(key, sizeof(key)) == 1 ? 0 : -EIO;
    /* XTS refuses a key whose halves are equal (2^-256) */
    if (r == 0 && !CRYPTO_memcmp(key, key + 32, 32))
        r = -EIO;
    if (r == 0)
        r = slot_wrap(pool_uuid, kf, kflen, key, &s);
    OPENSSL_cleanse(kf, sizeof(kf));
    OPENSSL_cleanse(key, sizeof(key));
    if (r == 0)
        r = vd_opbuf_add(ops, &s, sizeof(s));
    if (r < 0)
        vd_log(VD_LOG_ERR, "pool '%s': making the key slot failed: %s",
               conf->name, strerror(-r));
    return r;
}

static const struct vd_conf_dev *conf_dev(const struct vd_conf_pool *conf,
                                          const char *name)
{
    for (size_t i = 0; i < conf->ndevs; i++)
        if (!strcmp(conf->devs[i].name, name))
            return &conf->devs[i];
    return NULL;
}

int vd_crypt_pool_open(vd_pool *p, const struct vd_conf_pool *conf)
{
    const char *file = conf->file ? conf->file : "the pool definition";
    uint8_t kf[VD_KEY_FILE_MAX + 1];
    struct vd_crypt *c = p->crypt;
    size_t kflen = 0;
    bool any = false;
    char msg[512];
    int r;

    for (uint32_t i = 0; i < p->ndevs; i++) {
        struct vd_dev *d = &p->devs[i];
        const struct vd_conf_dev *cd;
        if (!d->used)
            continue;
        any |= !!(d->flags & VD_DEVF_ENCRYPT);
        if (!(cd = conf_dev(conf, d->name)))
            continue;
        if (cd->encrypt && !(d->flags & VD_DEVF_ENCRYPT)) {
            vd_log(VD_LOG_ERR,
                   "pool '%s': device '%s' is stored unencrypted, but %s:%d "
                   "says encrypt: true; a device is encrypted from when it "
                   "joins the pool on; to encrypt data, add a new device "
                   "with encrypt: true (vdlvm pool apply) and move volumes "
                   "there (vdlvm vol encrypt); remove encrypt: true here",
                   p->name, d->name, file, cd->line);
            return -EINVAL;
        }
        if (!cd->encrypt && (d->flags & VD_DEVF_ENCRYPT)) {
            vd_log(VD_LOG_ERR,
                   "pool '%s': device '%s' is encrypted, but %s:%d does not "
                   "say encrypt: true; add encrypt: true to the device",
                   p->name, d->name, file, cd->line);
            return -EINVAL;
        }
    }
    if (!nslots(c)) {
        if (any) {
            vd_log(VD_LOG_ERR,
                   "pool '%s': encrypted devices but no key slot in the "
                   "metadata; the data cannot be decrypted",
                   p->name);
            return -EACCES;
        }
        if (conf->key_file) {
            vd_log(VD_LOG_ERR,
                   "pool '%s': was created without encryption; %s gives "
                   "encryption.key_file, which cannot apply to existing "
                   "data; remove the encryption key",
                   p->name, file);
            return -EINVAL;
        }
        return 0;
    }
    if (!conf->key_file) {
        vd_log(VD_LOG_ERR,
               "pool '%s': is encrypted and %s has no key file; add "
               "encryption: {key_file: PATH} naming the pool's key file",
               p->name, file);
        return -EACCES;
    }
    r = vd_crypt_key_file_read(conf->key_file, "encryption.key_file", kf,
                               &kflen, msg, sizeof(msg));
    if (r < 0) {
        vd_log(VD_LOG_ERR, "pool '%s': %s", p->name, msg);
        return r;
    }
    struct slots *sl = malloc(sizeof(*sl));
    if (!sl) {
        OPENSSL_cleanse(kf, sizeof(kf));
        return -ENOMEM;
    }
    memcpy(sl->slot, c->slots, sizeof(sl->slot));
    sl->used = c->used;
    memcpy(sl->uuid, p->uuid, 16);
    r = find_slot(sl, kf, kflen, c->key);
    OPENSSL_cleanse(kf, sizeof(kf));
    free(sl);
    if (r == -EACCES) {
        vd_log(VD_LOG_ERR,
               "pool '%s': key file %s opens none of the pool's %d key "
               "slots; nothing changed; give the key file the pool was "
               "created with or one added with 'vdlvm key add'",
               p->name, conf->key_file, nslots(c));
        return r;
    }
    if (r < 0) {
        vd_log(VD_LOG_ERR, "pool '%s': unwrapping the data key failed: %s",
               p->name, strerror(-r));
        return r;
    }
    c->xts = EVP_CIPHER_fetch(NULL, "AES-256-XTS", NULL);
    c->key_file = strdup(conf->key_file);
    if (!c->xts || !c->key_file) {
        OPENSSL_cleanse(c->key, sizeof(c->key));
        return -ENOMEM;
    }
    c->free_mask = ~0ull;
    c->unlocked = true;
    for (uint32_t i = 0; i < p->ndevs; i++)
        if (p->devs[i].used && (p->devs[i].flags & VD_DEVF_ENCRYPT))
            p->devs[i].crypt = c;
    return 0;
}

int vd_crypt_dev_check(const vd_pool *p, const struct vd_conf_dev *c,
                       const char *file)
{
    if (!c->encrypt || (p->crypt && p->crypt->unlocked))
        return 0;
    vd_log(VD_LOG_ERR,
           "%s:%d: device '%s': encrypt: true, but pool '%s' was created "
           "without encryption (no key slot); an encrypted device needs the "
           "pool's data key; nothing changed",
           file, c->encrypt_line, c->name, p->name);
    return -EINVAL;
}

void vd_crypt_dev_attach(vd_pool *p, struct vd_dev *d)
{
    if ((d->flags & VD_DEVF_ENCRYPT) && p->crypt && p->crypt->unlocked)
        d->crypt = p->crypt;
}

void vd_crypt_free(vd_pool *p)
{
    struct vd_crypt *c = p->crypt;

    if (!c)
        return;
    for (uint32_t i = 0; i < VD_MAX_DEVS && p->devs; i++)
        p->devs[i].crypt = NULL;
    for (int i = 0; i < NWORKERS; i++)
        worker_clear(&c->workers[i]);
    EVP_CIPHER_free(c->xts);
    free(c->key_file);
    OPENSSL_cleanse(c, sizeof(*c));
    free(c);
    p->crypt = NULL;
}

/* ---- key add / remove ------------------------------------------------------ */
/* PBKDF2 takes ~0.1 s per slot tried: it runs on a copy of the slots
 * without the admin lock (which thin allocation and every commit need);
 * the commit then takes the lock and goes ahead only if no slot changed
 * meanwhile (gen), else -EAGAIN ("retry"). */

static int slots_get(vd_pool *p, struct slots *sl, const char *what)
{
    struct vd_crypt *c;
    int r = 0;

    vd_admin_lock(p);
    c = p->crypt;
    if (!c || !c->unlocked) {
        vd_log(VD_LOG_ERR,
               "pool '%s': is not encrypted; %s; a pool gets encryption: "
               "{key_file: PATH} when it is created",
               p->name, what);
        r = -EINVAL;
    } else {
        memcpy(sl->slot, c->slots, sizeof(sl->slot));
        sl->used = c->used;
        sl->gen = c->gen;
        memcpy(sl->uuid, p->uuid, 16);
    }
    vd_admin_unlock(p);
    return r;
}

/* Commit op when the slots are still those of sl (admin lock taken). */
static int commit_if_same(vd_pool *p, const struct slots *sl, const void *op,
                          size_t len)
{
    struct vd_opbuf ops = { 0 };
    int r;

    vd_admin_lock(p);
    if (p->crypt->gen != sl->gen) {
        vd_log(VD_LOG_ERR,
               "pool '%s': the key slots changed while this command ran; "
               "nothing changed; run it again",
               p->name);
        r = -EAGAIN;
    } else if ((r = vd_opbuf_add(&ops, op, len)) == 0) {
        r = vd_md_commit(p, &ops);
    }
    vd_admin_unlock(p);
    vd_opbuf_free(&ops);
    return r;
}

/* Read a key file into kf; 0 or the error (logged). */
static int key_file_get(vd_pool *p, const char *path, const char *what,
                        uint8_t *kf, size_t *kflen)
{
    char msg[512];
    int r = vd_crypt_key_file_read(path, what, kf, kflen, msg, sizeof(msg));
    if (r < 0)
        vd_log(VD_LOG_ERR, "pool '%s': %s", p->name, msg);
    return r;
}

int vd_pool_key_add(vd_pool *p, const char *new_file)
{
    uint8_t kf[VD_KEY_FILE_MAX + 1], key[64];
    struct vd_crypt *c = p->crypt;
    struct vd_op_key_slot s;
    struct slots *sl = calloc(1, sizeof(*sl));
    size_t kflen = 0;
    int r, free_slot = -1;

    if (!sl)
        return -ENOMEM;
    if ((r = slots_get(p, sl, "key add has nothing to add to")) < 0)
        goto out;
    /* authorisation: the definition's key file opens a slot of the data
     * key in use (c->key and c->key_file are constant while open) */
    if ((r = key_file_get(p, c->key_file, "encryption.key_file", kf, &kflen)) <
        0)
        goto out;
    r = find_slot(sl, kf, kflen, key);
    OPENSSL_cleanse(kf, sizeof(kf));
    if (r >= 0 && CRYPTO_memcmp(key, c->key, 64))
        r = -EACCES;
    OPENSSL_cleanse(key, sizeof(key));
    if (r < 0) {
        vd_log(VD_LOG_ERR,
               "pool '%s': the key file %s of the pool definition opens no "
               "key slot any more; key add needs it as authorisation: point "
               "encryption.key_file at a key file of the pool and reopen",
               p->name, c->key_file);
        r = r == -EIO ? r : -EACCES;
        goto out;
    }
    if ((r = key_file_get(p, new_file, "--key-file", kf, &kflen)) < 0)
        goto out;
    r = find_slot(sl, kf, kflen, key);
    OPENSSL_cleanse(key, sizeof(key));
    if (r >= 0) {
        vd_log(VD_LOG_ERR,
               "pool '%s': key file %s already opens key slot %d; nothing "
               "changed",
               p->name, new_file, r);
        r = -EEXIST;
        goto out;
    }
    if (r != -EACCES)
        goto out;
    for (int i = 0; i < VD_KEY_SLOTS && free_slot < 0; i++)
        if (!(sl->used & (1u << i)))
            free_slot = i;
    if (free_slot < 0) {
        vd_log(VD_LOG_ERR,
               "pool '%s': all %d key slots are in use; remove one first "
               "with 'vdlvm key remove %s --key-file OLD'",
               p->name, VD_KEY_SLOTS, p->name);
        r = -ENOSPC;
        goto out;
    }
    slot_init(&s, (uint32_t)free_slot);
    s.cipher = c->cipher; /* constant while open */
    r = slot_wrap(sl->uuid, kf, kflen, c->key, &s);
    if (r == 0)
        r = commit_if_same(p, sl, &s, sizeof(s));
    OPENSSL_cleanse(&s, sizeof(s));
    if (r < 0) {
        if (r != -EAGAIN)
            vd_log(VD_LOG_ERR, "pool '%s': adding the key slot failed: %s",
                   p->name, strerror(-r));
        goto out;
    }
    vd_log(VD_LOG_INFO, "pool '%s': key file %s added in key slot %d", p->name,
           new_file, free_slot);
    r = free_slot;
out:
    OPENSSL_cleanse(kf, sizeof(kf));
    OPENSSL_cleanse(sl, sizeof(*sl));
    free(sl);
    return r;
}

int vd_pool_key_remove(vd_pool *p, const char *old_file)
{
    uint8_t kf[VD_KEY_FILE_MAX + 1], key[64];
    struct vd_op_key_remove o = { .h.type = VD_OP_KEY_REMOVE,
                                  .h.len = sizeof(o) };
    struct slots *sl = calloc(1, sizeof(*sl));
    size_t kflen = 0;
    int r, slot;

    if (!sl)
        return -ENOMEM;
    if ((r = slots_get(p, sl, "it has no key slots")) < 0)
        goto out;
    if ((r = key_file_get(p, old_file, "--key-file", kf, &kflen)) < 0)
        goto out;
    slot = find_slot(sl, kf, kflen, key);
    OPENSSL_cleanse(key, sizeof(key));
    if (slot == -EACCES) {
        vd_log(VD_LOG_ERR,
               "pool '%s': key file %s opens no key slot of the pool; "
               "nothing changed",
               p->name, old_file);
        r = -ENOENT;
        goto out;
    }
    if ((r = slot) < 0)
        goto out;
    if (__builtin_popcount(sl->used) == 1) {
        vd_log(VD_LOG_ERR,
               "pool '%s': key file %s opens the last key slot; removing "
               "it would leave the pool's data unreadable; add another "
               "key file first ('vdlvm key add %s --key-file NEW')",
               p->name, old_file, p->name);
        r = -EPERM;
        goto out;
    }
    o.slot = (uint32_t)slot;
    r = commit_if_same(p, sl, &o, sizeof(o));
    if (r < 0) {
        if (r != -EAGAIN)
            vd_log(VD_LOG_ERR, "pool '%s': removing key slot %d failed: %s",
                   p->name, slot, strerror(-r));
        goto out;
    }
    vd_log(VD_LOG_INFO, "pool '%s': key slot %d (key file %s) removed", p->name,
           slot, old_file);
    r = slot;
out:
    OPENSSL_cleanse(kf, sizeof(kf));
    OPENSSL_cleanse(sl, sizeof(*sl));
    free(sl);
    return r;
}

int vd_pool_key_slots(const vd_pool *p)
{
    vd_pool *mp = (vd_pool *)p;
    vd_admin_lock(mp);
    int n = nslots(p->crypt);
    vd_admin_unlock(mp);
    return n;
}

/* ---- key rotate ------------------------------------------------------------
 * One commit holds the new slot and the removal of the slot that the
 * definition's key file opens: a crash leaves the old wrapping or the new
 * one, never neither (a commit is one checksummed record, md.c).  The data
 * key is not changed, so no data is rewritten.  From then on key add's
 * authorisation is the new key file (c->key_file, under the admin lock). */
int vd_pool_key_rotate(vd_pool *p, const char *new_file)
{
    uint8_t kf[VD_KEY_FILE_MAX + 1], key[64];
    struct vd_crypt *c = p->crypt;
    struct vd_op_key_slot s;
    struct vd_op_key_remove o = { .h.type = VD_OP_KEY_REMOVE,
                                  .h.len = sizeof(o) };
    struct slots *sl = calloc(1, sizeof(*sl));
    char old_file[4096] = "";
    size_t kflen = 0;
    int r, old_slot, free_slot = -1;

    if (!sl)
        return -ENOMEM;
    if ((r = slots_get(p, sl, "key rotate has no key to replace")) < 0)
        goto out;
    vd_admin_lock(p);
    snprintf(old_file, sizeof(old_file), "%s", c->key_file);
    vd_admin_unlock(p);
    if ((r = key_file_get(p, old_file, "encryption.key_file", kf, &kflen)) < 0)
        goto out;
    old_slot = find_slot(sl, kf, kflen, key);
    OPENSSL_cleanse(kf, sizeof(kf));
    if (old_slot >= 0 && CRYPTO_memcmp(key, c->key, 64))
        old_slot = -EACCES;
    OPENSSL_cleanse(key, sizeof(key));
    if (old_slot < 0) {
        vd_log(VD_LOG_ERR,
               "pool '%s': the key file %s of the pool definition opens no "
               "key slot any more; key rotate replaces that key file: "
               "point encryption.key_file at a key file of the pool and "
               "reopen; nothing changed",
               p->name, old_file);
        r = old_slot == -EIO ? -EIO : -EACCES;
        goto out;
    }
    if ((r = key_file_get(p, new_file, "--key-file", kf, &kflen)) < 0)
        goto out;
    r = find_slot(sl, kf, kflen, key);
    OPENSSL_cleanse(key, sizeof(key));
    if (r >= 0) {
        vd_log(VD_LOG_ERR,
               "pool '%s': key file %s already opens key slot %d; nothing "
               "changed (key remove the other key file instead)",
               p->name, new_file, r);
        r = -EEXIST;
        goto out;
    }
    if (r != -EACCES)
        goto out;
    for (int i = 0; i < VD_KEY_SLOTS && free_slot < 0; i++)
        if (!(sl->used & (1u << i)))
            free_slot = i;
    if (free_slot < 0) {
        vd_log(VD_LOG_ERR,
               "pool '%s': all %d key slots are in use; key rotate needs a "
               "free one for a moment; remove one first with 'vdlvm key "
               "remove %s --key-file OLD'",
               p->name, VD_KEY_SLOTS, p->name);
        r = -ENOSPC;
        goto out;
    }
    slot_init(&s, (uint32_t)free_slot);
    s.cipher = c->cipher;
    r = slot_wrap(sl->uuid, kf, kflen, c->key, &s);
    o.slot = (uint32_t)old_slot;
    if (r == 0) {
        struct vd_opbuf ops = { 0 };
        char *nf = strdup(new_file);
        vd_admin_lock(p);
        if (!nf) {
            r = -ENOMEM;
        } else if (c->gen != sl->gen) {
            vd_log(VD_LOG_ERR,
                   "pool '%s': the key slots changed while this command "
                   "ran; nothing changed; run it again",
                   p->name);
            r = -EAGAIN;
        } else if ((r = vd_opbuf_add(&ops, &s, sizeof(s))) == 0 &&
                   (r = vd_opbuf_add(&ops, &o, sizeof(o))) == 0 &&
                   (r = vd_md_commit(p, &ops)) == 0) {
            free(c->key_file);
            c->key_file = nf;
            nf = NULL;
        }
        vd_admin_unlock(p);
        free(nf);
        vd_opbuf_free(&ops);
    }
    OPENSSL_cleanse(&s, sizeof(s));
    if (r < 0) {
        if (r != -EAGAIN)
            vd_log(VD_LOG_ERR, "pool '%s': key rotate failed: %s", p->name,
                   strerror(-r));
        goto out;
    }
    vd_log(VD_LOG_INFO,
           "pool '%s': key rotated: key file %s in key slot %d, key slot %d "
           "(key file %s) removed",
           p->name, new_file, free_slot, old_slot, old_file);
    r = free_slot;
out:
    OPENSSL_cleanse(kf, sizeof(kf));
    OPENSSL_cleanse(sl, sizeof(*sl));
    free(sl);
    return r;
}

/* ---- vol encrypt -------------------------------------------------------------
 * Encrypting an existing volume is a move of each of its extents that sit
 * on a device without encrypt: true to one with it, by the extent mover
 * (pool/move.c's public vd_move_extent: online, writes reach both places
 * while an extent moves, a checkpoint per few chunks, resumable).  The job
 * (op 30) is in the metadata, so it goes on after a restart; the mover
 * itself resumes a move that was under way.
 *
 * The plaintext left behind: the mover frees the source extent when it
 * switches (MOVE_END).  The job then reserves it (sets it used in memory,
 * admin lock, so nothing allocates it meanwhile), zeroes it with the
 * device's zero op (hole punch, BLKZEROOUT, WRITE SAME; zero writes
 * otherwise), flushes, and frees it again.  If someone allocated it before
 * the job looked, it is skipped: a new allocation is zeroed (md.c
 * zero_new_extents) and a move target is overwritten whole.  A crash can
 * come between the switch and the zeroing, so a job loaded at open
 * (job_rescrub) zeroes every free extent of the devices it moved from
 * (job_src) before it ends.  Zeroing frees the blocks of a file (punch) or
 * zeroes them on a device; it does not reach what a file system or SSD
 * keeps elsewhere (docs/encryption.md says so).
 *
 * Threads: job_step runs in the background thread's tick (vd_crypt_tick)
 * or, with no background thread, in the admin call that waits; job_busy
 * keeps it to one at a time.  It takes the admin lock for every decision
 * and drops it for vd_move_extent (which takes it) and for the zeroing
 * (device I/O: never under the admin lock). */

static bool pe_is_used(const struct vd_dev *d, uint64_t pe)
{
    return d->used[pe / 8] & (1u << (pe % 8));
}

/* Reserve n free PEs from pe on (admin lock held); false if one is used. */
static bool pe_reserve(struct vd_dev *d, uint64_t pe, uint64_t n, bool on)
{
    for (uint64_t k = 0; on && k < n; k++)
        if (pe_is_used(d, pe + k))
            return false;
    for (uint64_t k = 0; k < n; k++) {
        if (on)
            d->used[(pe + k) / 8] |= 1u << ((pe + k) % 8);
        else
            d->used[(pe + k) / 8] &= ~(1u << ((pe + k) % 8));
    }
    if (on)
        d->used_count += n;
    else
        d->used_count -= n;
    return true;
}

static bool dev_takes(const struct vd_dev *d)
{
    return d->used && (d->flags & VD_DEVF_ENCRYPT) && d->bdev &&
           __atomic_load_n(&d->state, __ATOMIC_ACQUIRE) == VD_DEV_OK &&
           !d->no_alloc;
}

/* Extents of v on plain devices (and the mask of those devices). */
static uint64_t plain_extents(const vd_pool *p, const struct vd_vol *v,
                              uint8_t *mask)
{
    uint64_t n = 0;

    for (uint64_t i = 0; i < v->le_count * v->copies; i++) {
        uint32_t dev = v->map[i].dev;
        if (dev == VD_NO_DEV || (p->devs[dev].flags & VD_DEVF_ENCRYPT))
            continue;
        n++;
        if (mask)
            mask[dev / 8] |= (uint8_t)(1u << (dev % 8));
    }
    return n;
}

/* Zero n PEs from pe of device dev, reserved by the caller; admin lock not
 * held.  0 or -EIO (logged). */
static int scrub(vd_pool *p, uint32_t dev, uint64_t pe, uint64_t n)
{
    struct vd_dev *d = &p->devs[dev];
    uint64_t es = p->extent_size;

    if (!d->bdev || __atomic_load_n(&d->state, __ATOMIC_ACQUIRE) != VD_DEV_OK)
        return -EIO;
    if (vd_dev_zero(d, d->data_offset + pe * es, n * es) < 0 ||
        vd_dev_flush(d) < 0)
        return -EIO;
    return 0;
}

/* End the job (error NULL: done), op 30 with no volume.  Admin lock. */
static void job_end_locked(vd_pool *p, const char *vol, const char *error)
{
    struct vd_crypt *c = p->crypt;
    struct vd_op_crypt_job j;
    struct vd_opbuf ops = { 0 };

    memset(&j, 0, sizeof(j));
    j.h.type = VD_OP_CRYPT_JOB;
    j.vol = VD_NO_DEV;
    ops.keep_data = true;
    if (vd_opbuf_add(&ops, &j, sizeof(j)) < 0 || vd_md_commit(p, &ops) < 0)
        vd_log(VD_LOG_ERR,
               "pool '%s': recording the end of vol encrypt failed (it "
               "goes on after a restart)",
               p->name);
    vd_opbuf_free(&ops);
    __atomic_store_n(&c->job_active, false, __ATOMIC_RELEASE);
    c->last_valid = false;
    snprintf(c->job_error, sizeof(c->job_error), "%s", error ? error : "");
    if (error)
        vd_log(VD_LOG_ERR, "pool '%s': vol encrypt of '%s' stopped: %s",
               p->name, vol, error);
    else
        vd_log(VD_LOG_INFO,
               "pool '%s': volume '%s' is encrypted: every extent is on a "
               "device with encrypt: true (%" PRIu64 " moved, %" PRIu64
               " freed extents zeroed)",
               p->name, vol, c->job_moved, c->job_scrubbed);
}

/* Pick the next free run of PEs on the job's source devices from the
 * rescrub cursor, reserve it (admin lock).  false: none left. */
static bool rescrub_next_locked(vd_pool *p, uint32_t *dev, uint64_t *pe,
                                uint64_t *n)
{
    struct vd_crypt *c = p->crypt;

    for (; c->rs_dev < p->ndevs; c->rs_dev++, c->rs_pe = 0) {
        struct vd_dev *d = &p->devs[c->rs_dev];
        if (!(c->job_src[c->rs_dev / 8] & (1u << (c->rs_dev % 8))) ||
            !d->used || (d->flags & VD_DEVF_ENCRYPT))
            continue;
        while (c->rs_pe < d->pe_count && pe_is_used(d, c->rs_pe))
            c->rs_pe++;
        if (c->rs_pe >= d->pe_count)
            continue;
        uint64_t k = 0;
        while (c->rs_pe + k < d->pe_count && k < 64 &&
               !pe_is_used(d, c->rs_pe + k))
            k++;
        pe_reserve(d, c->rs_pe, k, true);
        *dev = c->rs_dev;
        *pe = c->rs_pe;
        *n = k;
        c->rs_pe += k;
        return true;
    }
    return false;
}

/* One step: 1 when work is left (a move started or running), 0 idle. */
static int job_step_one(vd_pool *p)
{
    struct vd_crypt *c = p->crypt;
    struct vd_move_status ms;
    char vname[VD_NAME_MAX + 1], dname[VD_NAME_MAX + 1], why[512];
    uint32_t sdev = VD_NO_DEV, leg = 0;
    uint64_t spe = 0, sn = 1, le = 0, rate;
    struct vd_vol *v;

    vd_pool_move_status(p, &ms); /* takes the admin lock */
    if (ms.active || ms.evacuating || ms.rebalancing)
        return 1; /* the mover is busy (ours or another job's move) */
    vd_admin_lock(p);
    if (!c->job_active) {
        vd_admin_unlock(p);
        return 0;
    }
    if (!(v = vd_vol_find_id(p, c->job_vol))) {
        job_end_locked(p, "?", "the volume was removed");
        vd_admin_unlock(p);
        return 0;
    }
    snprintf(vname, sizeof(vname), "%s", v->name);
    if (c->last_valid) { /* how did the last move end? */
        c->last_valid = false;
        const struct vd_pe *e =
            c->last_le < v->le_count && c->last_leg < v->copies
                ? &v->map[c->last_le * v->copies + c->last_leg]
                : NULL;
        if (e && e->dev == c->last_src && e->pe == c->last_spe) {
            if (++c->fails >= 3) {
                snprintf(why, sizeof(why),
                         "moving extent %" PRIu64 " leg %u failed 3 times "
                         "(last: %.150s)",
                         c->last_le, c->last_leg,
                         ms.stats.last_error[0] ? ms.stats.last_error : "?");
                job_end_locked(p, vname, why);
                vd_admin_unlock(p);
                return 0;
            }
        } else {
            c->fails = 0;
            c->job_moved++;
            if (pe_reserve(&p->devs[c->last_src], c->last_spe, 1, true)) {
                sdev = c->last_src;
                spe = c->last_spe;
            }
        }
    }
    if (sdev == VD_NO_DEV) {
        /* the next plain extent */
        uint64_t left = 0, first = UINT64_MAX;
        for (uint64_t i = 0; i < v->le_count * v->copies; i++) {
            uint32_t dev = v->map[i].dev;
            if (dev == VD_NO_DEV || (p->devs[dev].flags & VD_DEVF_ENCRYPT))
                continue;
            if (!left++)
                first = i;
        }
        c->job_left = left;
        if (!left) {
            if (c->job_rescrub && rescrub_next_locked(p, &sdev, &spe, &sn))
                goto zero;
            job_end_locked(p, vname, NULL);
            vd_admin_unlock(p);
            return 0;
        }
        le = first / v->copies;
        leg = (uint32_t)(first % v->copies);
        /* the target: an encrypted usable device with room, not holding
         * another leg of this extent, least used */
        uint32_t best = VD_NO_DEV;
        double best_use = 2;
        for (uint32_t i = 0; i < p->ndevs; i++) {
            const struct vd_dev *d = &p->devs[i];
            bool other = false;
            if (!dev_takes(d) || d->used_count >= d->pe_count)
                continue;
            for (uint32_t k = 0; k < v->copies; k++)
                other |= k != leg && v->map[le * v->copies + k].dev == i;
            double use = (double)d->used_count / (double)d->pe_count;
            if (!other && use < best_use) {
                best_use = use;
                best = i;
            }
        }
        if (best == VD_NO_DEV) {
            snprintf(why, sizeof(why),
                     "no device with encrypt: true has a free extent for "
                     "extent %" PRIu64 " leg %u (%" PRIu64 " extents left); "
                     "add one (vdlvm pool apply) and run vol encrypt again",
                     le, leg, left);
            job_end_locked(p, vname, why);
            vd_admin_unlock(p);
            return 0;
        }
        snprintf(dname, sizeof(dname), "%s", p->devs[best].name);
        c->last_valid = true;
        c->last_le = le;
        c->last_leg = leg;
        c->last_src = v->map[first].dev;
        c->last_spe = v->map[first].pe;
        rate = c->job_rate;
        vd_admin_unlock(p);
        int r = vd_move_extent(p, vname, leg, le, dname, rate);
        if (r < 0) {
            vd_admin_lock(p);
            c->last_valid = false;
            if (r != -EBUSY && ++c->fails >= 3 && c->job_active) {
                snprintf(why, sizeof(why),
                         "starting the move of extent %" PRIu64
                         " leg %u to '%s' failed 3 times: %s",
                         le, leg, dname, strerror(-r));
                job_end_locked(p, vname, why);
                vd_admin_unlock(p);
                return 0;
            }
            vd_admin_unlock(p);
        }
        return 1;
    }
zero:
    vd_admin_unlock(p);
    int r = scrub(p, sdev, spe, sn);
    vd_admin_lock(p);
    pe_reserve(&p->devs[sdev], spe, sn, false);
    if (r == 0)
        c->job_scrubbed += sn;
    else
        snprintf(c->job_error, sizeof(c->job_error),
                 "zeroing %" PRIu64 " freed extents at %" PRIu64
                 " of '%s' failed",
                 sn, spe, p->devs[sdev].name);
    vd_admin_unlock(p);
    return 1;
}

static int job_step(vd_pool *p)
{
    struct vd_crypt *c = p->crypt;
    int r;

    if (!c || !__atomic_load_n(&c->job_active, __ATOMIC_ACQUIRE))
        return 0;
    if (__atomic_exchange_n(&c->job_busy, 1, __ATOMIC_ACQUIRE))
        return 1;
    r = job_step_one(p);
    __atomic_store_n(&c->job_busy, 0, __ATOMIC_RELEASE);
    return r;
}

void vd_crypt_tick(vd_pool *p)
{
    /* a few steps: zeroing and starting the next move need no mover time */
    for (int i = 0; i < 64 && !vd_bg_stopping(p); i++) {
        struct vd_move_status ms;
        if (job_step(p) <= 0)
            return;
        vd_pool_move_status(p, &ms);
        if (ms.active || ms.evacuating || ms.rebalancing)
            return; /* the mover's tick copies it */
    }
}

int vd_vol_encrypt_step(vd_pool *p)
{
    if (p->bg) {
        vd_bg_kick(p);
        struct timespec ts = { 0, 100000000L };
        nanosleep(&ts, NULL);
    } else {
        job_step(p);
        vd_move_wait(p, 200);
    }
    return p->crypt && __atomic_load_n(&p->crypt->job_active, __ATOMIC_ACQUIRE);
}

int vd_vol_encrypt(vd_pool *p, const char *vol, uint64_t rate)
{
    struct vd_crypt *c = p->crypt;
    struct vd_op_crypt_job j;
    struct vd_opbuf ops = { 0 };
    struct vd_vol *v;
    uint64_t left, room = 0;
    uint32_t nenc = 0;
    int r;

    memset(&j, 0, sizeof(j));
    vd_admin_lock(p);
    if (!(v = vd_vol_find(p, vol))) {
        vd_log(VD_LOG_ERR, "volume '%s/%s': not found; nothing changed",
               p->name, vol);
        r = -ENOENT;
        goto out;
    }
    if (!c || !c->unlocked) {
        vd_log(VD_LOG_ERR,
               "pool '%s': is not encrypted; vol encrypt moves a volume to "
               "devices with encrypt: true, which need the pool's "
               "encryption: {key_file: PATH} (given when the pool is "
               "created); nothing changed",
               p->name);
        r = -EINVAL;
        goto out;
    }
    if (c->job_active) {
        struct vd_vol *o = vd_vol_find_id(p, c->job_vol);
        vd_log(VD_LOG_ERR,
               "pool '%s': volume '%s' is being encrypted; one volume at a "
               "time (see 'vdlvm status %s'); nothing changed",
               p->name, o ? o->name : "?", p->name);
        r = -EBUSY;
        goto out;
    }
    left = plain_extents(p, v, j.src);
    if (!left) {
        vd_log(VD_LOG_ERR,
               "volume '%s/%s': is already encrypted: all its extents are "
               "on devices with encrypt: true; nothing changed",
               p->name, vol);
        r = -EALREADY;
        goto out;
    }
    for (uint32_t i = 0; i < p->ndevs; i++)
        if (dev_takes(&p->devs[i])) {
            nenc++;
            room += p->devs[i].pe_count - p->devs[i].used_count;
        }
    if (room < left) {
        vd_log(VD_LOG_ERR,
               "volume '%s/%s': %" PRIu64 " of its extents are on devices "
               "without encryption, and the %u usable devices with "
               "encrypt: true have %" PRIu64 " free; add a device with "
               "encrypt: true (vdlvm pool apply) or free space; nothing "
               "changed",
               p->name, vol, left, nenc, room);
        r = -ENOSPC;
        goto out;
    }
    j.h.type = VD_OP_CRYPT_JOB;
    j.vol = v->id;
    j.rate = rate;
    ops.keep_data = true;
    if ((r = vd_opbuf_add(&ops, &j, sizeof(j))) == 0)
        r = vd_md_commit(p, &ops);
    vd_opbuf_free(&ops);
    if (r < 0) {
        vd_log(VD_LOG_ERR, "volume '%s/%s': vol encrypt: %s", p->name, vol,
               strerror(-r));
        goto out;
    }
    c->job_rescrub = false; /* every freed extent is zeroed as it goes */
    c->job_total = left;
    c->job_left = left;
    c->job_moved = 0;
    c->job_scrubbed = 0;
    c->job_error[0] = 0;
    vd_log(VD_LOG_INFO,
           "volume '%s/%s': encrypting: %" PRIu64 " extents to move to "
           "devices with encrypt: true",
           p->name, vol, left);
out:
    vd_admin_unlock(p);
    if (r == 0)
        vd_bg_kick(p);
    return r;
}

int vd_vol_encrypt_status(vd_pool *p, struct vd_crypt_status *st)
{
    struct vd_crypt *c = p->crypt;

    memset(st, 0, sizeof(*st));
    if (!c)
        return 0;
    vd_admin_lock(p);
    st->active = c->job_active;
    if (c->job_active) {
        struct vd_vol *v = vd_vol_find_id(p, c->job_vol);
        snprintf(st->vol, sizeof(st->vol), "%s", v ? v->name : "?");
        st->left = v ? plain_extents(p, v, NULL) : 0;
    }
    st->moved = c->job_moved;
    st->scrubbed = c->job_scrubbed;
    st->total = c->job_total > st->left + st->moved ? c->job_total
                                                    : st->left + st->moved;
    snprintf(st->error, sizeof(st->error), "%s", c->job_error);
    vd_admin_unlock(p);
    return 0;
}
