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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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
                   "says encrypt: true; a device is encrypted from the "
                   "pool's creation on (encrypting existing data is a move "
                   "of its extents, not supported yet); remove encrypt: true",
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
