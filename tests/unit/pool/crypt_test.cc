// Unit tests for pool/crypt.c: encrypted devices (AES-256-XTS at the
// device I/O layer), key slots, key files.
#include "../pool_fixture.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "pool/crypt.h"

namespace {
using vdtest_pool::PoolTest;

class CryptTest : public PoolTest {
  protected:
    std::string key1, key2;
    void SetUp() override
    {
        PoolTest::SetUp();
        key1 = dir + "/key1";
        key2 = dir + "/key2";
        WriteKey(key1, 'a', 0600);
        WriteKey(key2, 'b', 0600);
        Encrypt(key1);
    }
    static void WriteKey(const std::string &path, char fill, mode_t mode)
    {
        std::string k(64, fill);
        k[0] = 'K';
        int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        ASSERT_GE(fd, 0);
        ASSERT_EQ(write(fd, k.data(), k.size()), (ssize_t)k.size());
        close(fd);
        ASSERT_EQ(chmod(path.c_str(), mode), 0);
    }
    void Encrypt(const std::string &key)
    {
        conf.key_file = (char *)key.c_str();
        for (auto &d : devs)
            d.encrypt = 1;
    }
    // 4 KiB that appear nowhere by chance
    static std::vector<char> Pattern()
    {
        std::vector<char> p(4096);
        for (size_t i = 0; i < p.size(); i++)
            p[i] = (char)("vdlvm crypt test pattern "[i % 25] ^ (i / 25));
        return p;
    }
    std::string Backing(int i)
    {
        std::ifstream f(paths[i], std::ios::binary);
        std::stringstream s;
        s << f.rdbuf();
        return s.str();
    }
    bool BackingHas(int i, const std::vector<char> &pat)
    {
        std::string b = Backing(i);
        return memmem(b.data(), b.size(), pat.data(), pat.size()) != nullptr;
    }
    std::string Md(int i) // header and metadata area
    {
        return Backing(i).substr(0, VD_MD_OFFSET + VD_MD_SIZE);
    }
    int OpenRc(vd_pool **p)
    {
        *p = nullptr;
        return vd_pool_open(&conf, p);
    }
};

// The pattern written through a volume reads back, and no backing file
// holds it; the same test without encryption finds it (the search works).
TEST_F(CryptTest, Linear_RoundTrip_BackingHoldsNoPlaintext)
{
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    vd_pool *p = Open();
    ASSERT_NE(p, nullptr);
    ASSERT_EQ(vd_vol_create(p, "vol0", 100ull << 20, nullptr), 0);
    vd_vol *v = vd_vol_open(p, "vol0");
    ASSERT_NE(v, nullptr);
    std::vector<char> pat = Pattern(), copy = pat, r(4096);
    // in every extent of the volume (it spans all three devices)
    for (uint64_t off = 0; off < (100ull << 20); off += 4ull << 20)
        ASSERT_EQ(vd_vol_pwrite(v, pat.data(), pat.size(), off + 8192, 0), 0);
    EXPECT_EQ(pat, copy) << "the caller's buffer was modified";
    for (uint64_t off = 0; off < (100ull << 20); off += 4ull << 20) {
        ASSERT_EQ(vd_vol_pread(v, r.data(), r.size(), off + 8192), 0);
        ASSERT_EQ(r, pat) << off;
    }
    ASSERT_EQ(vd_vol_flush(v), 0);
    vd_vol_close(v);
    vd_pool_close(p);
    for (int i = 0; i < 3; i++)
        EXPECT_FALSE(BackingHas(i, pat)) << paths[i] << " holds plaintext";
    // reopen: reads back with the key
    p = Open();
    ASSERT_NE(p, nullptr);
    v = vd_vol_open(p, "vol0");
    ASSERT_EQ(vd_vol_pread(v, r.data(), r.size(), (96ull << 20) + 8192), 0);
    EXPECT_EQ(r, pat);
    vd_vol_close(v);
    vd_pool_close(p);
}

TEST_F(PoolTest, CryptControl_Unencrypted_BackingHoldsPlaintext)
{
    std::vector<char> pat(4096);
    for (size_t i = 0; i < pat.size(); i++)
        pat[i] = (char)("vdlvm crypt test pattern "[i % 25] ^ (i / 25));
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    vd_pool *p = Open();
    ASSERT_EQ(vd_vol_create(p, "vol0", 8ull << 20, nullptr), 0);
    vd_vol *v = vd_vol_open(p, "vol0");
    ASSERT_EQ(vd_vol_pwrite(v, pat.data(), pat.size(), 8192, 0), 0);
    vd_vol_close(v);
    vd_pool_close(p);
    bool found = false;
    for (auto &path : paths) {
        std::ifstream f(path, std::ios::binary);
        std::stringstream s;
        s << f.rdbuf();
        std::string b = s.str();
        found |= memmem(b.data(), b.size(), pat.data(), pat.size()) != nullptr;
    }
    EXPECT_TRUE(found);
}

// Never-written sectors of an encrypted device read as zeros (zeroed
// extents stay raw zeros); written zeros are encrypted like any data.
TEST_F(CryptTest, NeverWritten_ReadsZeros_WrittenZerosEncrypted)
{
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    vd_pool *p = Open();
    ASSERT_EQ(vd_vol_create(p, "vol0", 8ull << 20, nullptr), 0);
    vd_vol *v = vd_vol_open(p, "vol0");
    std::vector<char> r(1 << 20, 'x'), z(1 << 20, 0);
    ASSERT_EQ(vd_vol_pread(v, r.data(), r.size(), 0), 0);
    EXPECT_EQ(r, z);
    std::vector<char> zeros(4096, 0);
    ASSERT_EQ(vd_vol_pwrite(v, zeros.data(), zeros.size(), 0, 0), 0);
    ASSERT_EQ(vd_vol_pread(v, r.data(), 4096, 0), 0);
    EXPECT_TRUE(!memcmp(r.data(), z.data(), 4096));
    vd_vol_close(v);
    vd_pool_close(p);
    // the first data sector of device 0 holds ciphertext, not zeros
    std::string b = Backing(0);
    uint64_t doff = VD_MD_OFFSET + VD_MD_SIZE;
    doff = (doff + VD_DATA_ALIGN - 1) / VD_DATA_ALIGN * VD_DATA_ALIGN;
    EXPECT_NE(b.substr(doff, 512), std::string(512, '\0'));
}

// Writes that are not 512-aligned go through the read-modify-write bounce.
TEST_F(CryptTest, Unaligned_WriteRead_RoundTrip)
{
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    vd_pool *p = Open();
    ASSERT_EQ(vd_vol_create(p, "vol0", 8ull << 20, nullptr), 0);
    vd_vol *v = vd_vol_open(p, "vol0");
    std::vector<char> a(3000, 'a'), b(100, 'b'), r(3000);
    ASSERT_EQ(vd_vol_pwrite(v, a.data(), a.size(), 700, 0), 0);
    ASSERT_EQ(vd_vol_pwrite(v, b.data(), b.size(), 1000, 0), 0);
    ASSERT_EQ(vd_vol_pread(v, r.data(), r.size(), 700), 0);
    std::vector<char> want = a;
    memcpy(want.data() + 300, b.data(), b.size());
    EXPECT_EQ(r, want);
    std::vector<char> head(700);
    ASSERT_EQ(vd_vol_pread(v, head.data(), head.size(), 0), 0);
    EXPECT_EQ(head, std::vector<char>(700, 0));
    vd_vol_close(v);
    vd_pool_close(p);
}

// sector_size 4096: 512-byte writes go through read-modify-write of whole
// 4 KiB sectors; the format (cipher 2) survives key add and reopen.
TEST_F(CryptTest, Sector4096_RoundTrip_SmallWrites_KeyAdd)
{
    conf.crypt_sector = 4096;
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    vd_pool *p = Open();
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(vd_crypt_sector(p->crypt), 4096u);
    ASSERT_EQ(vd_vol_create(p, "vol0", 8ull << 20, nullptr), 0);
    vd_vol *v = vd_vol_open(p, "vol0");
    std::vector<char> pat = Pattern(), r(4096), a(512, 'a'), b(1000, 'b');
    ASSERT_EQ(vd_vol_pwrite(v, pat.data(), pat.size(), 8192, 0), 0);
    ASSERT_EQ(vd_vol_pwrite(v, a.data(), a.size(), 8192 + 512, 0), 0);
    ASSERT_EQ(vd_vol_pwrite(v, b.data(), b.size(), 3 * 4096 + 100, 0), 0);
    std::vector<char> want = pat;
    memcpy(want.data() + 512, a.data(), a.size());
    ASSERT_EQ(vd_vol_pread(v, r.data(), r.size(), 8192), 0);
    EXPECT_EQ(r, want);
    std::vector<char> r2(1200), want2(1200, 0);
    memcpy(want2.data() + 100, b.data(), b.size());
    ASSERT_EQ(vd_vol_pread(v, r2.data(), r2.size(), 3 * 4096), 0);
    EXPECT_EQ(r2, want2);
    vd_vol_close(v);
    EXPECT_EQ(vd_pool_key_add(p, key2.c_str()), 1);
    vd_pool_close(p);
    for (int i = 0; i < 3; i++)
        EXPECT_FALSE(BackingHas(i, pat));
    conf.key_file = (char *)key2.c_str();
    p = Open();
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(vd_crypt_sector(p->crypt), 4096u);
    v = vd_vol_open(p, "vol0");
    ASSERT_EQ(vd_vol_pread(v, r.data(), r.size(), 8192), 0);
    EXPECT_EQ(r, want);
    vd_vol_close(v);
    vd_pool_close(p);
}

TEST_F(CryptTest, WrongKeyFile_OpenRefused_NothingChanged)
{
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    std::string md0 = Md(0);
    conf.key_file = (char *)key2.c_str();
    vd_pool *p;
    log_lines.clear();
    EXPECT_EQ(OpenRc(&p), -EACCES);
    EXPECT_EQ(p, nullptr);
    ASSERT_FALSE(log_lines.empty());
    EXPECT_NE(log_lines.back().find("key2 opens none"), std::string::npos)
        << log_lines.back();
    EXPECT_EQ(Md(0), md0);
    // no key file at all
    conf.key_file = nullptr;
    EXPECT_EQ(OpenRc(&p), -EACCES);
    EXPECT_EQ(Md(0), md0);
    conf.key_file = (char *)key1.c_str();
    p = Open();
    ASSERT_NE(p, nullptr);
    vd_pool_close(p);
}

TEST_F(CryptTest, KeyFileMode0644_Refused)
{
    ASSERT_EQ(chmod(key1.c_str(), 0644), 0);
    log_lines.clear();
    EXPECT_EQ(vd_pool_create(&conf, 0), -EPERM);
    ASSERT_FALSE(log_lines.empty());
    EXPECT_NE(log_lines.back().find("chmod 600 " + key1), std::string::npos)
        << log_lines.back();
    EXPECT_NE(access(paths[0].c_str(), F_OK), 0) << "nothing created";
    ASSERT_EQ(chmod(key1.c_str(), 0600), 0);
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    ASSERT_EQ(chmod(key1.c_str(), 0640), 0);
    vd_pool *p;
    EXPECT_EQ(OpenRc(&p), -EPERM);
}

TEST_F(CryptTest, KeyAdd_NewKeyOpens_KeyRemove_OldRefused)
{
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    vd_pool *p = Open();
    ASSERT_EQ(vd_vol_create(p, "vol0", 8ull << 20, nullptr), 0);
    vd_vol *v = vd_vol_open(p, "vol0");
    std::vector<char> pat = Pattern(), r(4096);
    ASSERT_EQ(vd_vol_pwrite(v, pat.data(), pat.size(), 0, 0), 0);
    vd_vol_close(v);
    EXPECT_EQ(vd_pool_key_slots(p), 1);
    EXPECT_EQ(vd_pool_key_remove(p, key1.c_str()), -EPERM) << "last slot";
    EXPECT_EQ(vd_pool_key_add(p, key2.c_str()), 1);
    EXPECT_EQ(vd_pool_key_add(p, key2.c_str()), -EEXIST);
    EXPECT_EQ(vd_pool_key_slots(p), 2);
    vd_pool_close(p);

    // the new key file opens the pool and reads the data
    conf.key_file = (char *)key2.c_str();
    p = Open();
    ASSERT_NE(p, nullptr);
    v = vd_vol_open(p, "vol0");
    ASSERT_EQ(vd_vol_pread(v, r.data(), r.size(), 0), 0);
    EXPECT_EQ(r, pat);
    vd_vol_close(v);
    EXPECT_EQ(vd_pool_key_remove(p, key1.c_str()), 0);
    EXPECT_EQ(vd_pool_key_slots(p), 1);
    EXPECT_EQ(vd_pool_key_remove(p, key2.c_str()), -EPERM) << "last slot";
    EXPECT_EQ(vd_pool_key_remove(p, key1.c_str()), -ENOENT);
    vd_pool_close(p);

    conf.key_file = (char *)key1.c_str();
    EXPECT_EQ(OpenRc(&p), -EACCES) << "the removed key file still opens";
    conf.key_file = (char *)key2.c_str();
    p = Open();
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(vd_pool_key_slots(p), 1);
    vd_pool_close(p);
}

TEST_F(CryptTest, KeyAdd_BadNewKeyFile_NothingChanged)
{
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    vd_pool *p = Open();
    std::string md0 = Md(0);
    ASSERT_EQ(chmod(key2.c_str(), 0644), 0);
    EXPECT_EQ(vd_pool_key_add(p, key2.c_str()), -EPERM);
    EXPECT_EQ(vd_pool_key_add(p, (dir + "/nope").c_str()), -ENOENT);
    EXPECT_EQ(vd_pool_key_slots(p), 1);
    EXPECT_EQ(Md(0), md0);
    vd_pool_close(p);
}

TEST_F(CryptTest, NoWait_WriteRead_Encrypted)
{
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    vd_pool *p = Open();
    ASSERT_EQ(vd_vol_create(p, "vol0", 8ull << 20, nullptr), 0);
    vd_vol *v = vd_vol_open(p, "vol0");
    std::vector<char> pat = Pattern(), copy = pat, r(4096);
    int rc = vd_vol_pwrite(v, pat.data(), pat.size(), 4096, VD_IO_NOWAIT);
    ASSERT_TRUE(rc == 0 || rc == -EAGAIN) << rc;
    if (rc == -EAGAIN) {
        ASSERT_EQ(vd_vol_pwrite(v, pat.data(), pat.size(), 4096, 0), 0);
    }
    EXPECT_EQ(pat, copy);
    // just written: a page-cache hit, decrypted
    rc = vd_vol_pread_flags(v, r.data(), r.size(), 4096, VD_IO_NOWAIT);
    ASSERT_TRUE(rc == 0 || rc == -EAGAIN) << rc;
    if (rc == 0) {
        EXPECT_EQ(r, pat);
    }
    ASSERT_EQ(vd_vol_pread(v, r.data(), r.size(), 4096), 0);
    EXPECT_EQ(r, pat);
    // unaligned NOWAIT: refused (the bounce path blocks), not garbled
    EXPECT_EQ(vd_vol_pwrite(v, pat.data(), 100, 4096 + 10, VD_IO_NOWAIT),
              -EAGAIN);
    vd_vol_close(v);
    vd_pool_close(p);
    for (int i = 0; i < 3; i++)
        EXPECT_FALSE(BackingHas(i, pat));
}

// On tmpfs the NOWAIT path always serves (no EAGAIN): the NOWAIT write
// and read themselves encrypt and decrypt.
TEST_F(CryptTest, NoWait_OnTmpfs_ServedEncrypted)
{
    struct stat st;
    if (stat("/dev/shm", &st) != 0)
        GTEST_SKIP() << "no /dev/shm";
    std::string shm = "/dev/shm/vdlvm-crypt-test-" + std::to_string(getpid());
    for (size_t i = 0; i < paths.size(); i++) {
        paths[i] = shm + "-d" + std::to_string(i);
        devs[i].path = (char *)paths[i].c_str();
    }
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    vd_pool *p = Open();
    ASSERT_NE(p, nullptr);
    ASSERT_EQ(vd_vol_create(p, "vol0", 8ull << 20, nullptr), 0);
    vd_vol *v = vd_vol_open(p, "vol0");
    std::vector<char> pat = Pattern(), copy = pat, r(4096);
    EXPECT_EQ(vd_vol_pwrite(v, pat.data(), pat.size(), 8192, VD_IO_NOWAIT), 0);
    EXPECT_EQ(pat, copy);
    EXPECT_EQ(vd_vol_pread_flags(v, r.data(), r.size(), 8192, VD_IO_NOWAIT), 0);
    EXPECT_EQ(r, pat);
    vd_vol_close(v);
    vd_pool_close(p);
    for (int i = 0; i < 3; i++)
        EXPECT_FALSE(BackingHas(i, pat));
    p = Open(); // and the blocking path reads what NOWAIT wrote
    v = vd_vol_open(p, "vol0");
    ASSERT_EQ(vd_vol_pread(v, r.data(), r.size(), 8192), 0);
    EXPECT_EQ(r, pat);
    vd_vol_close(v);
    vd_pool_close(p);
    for (auto &path : paths)
        unlink(path.c_str());
}

TEST_F(CryptTest, Mirror_BothLegsEncrypted)
{
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    vd_pool *p = Open();
    struct vd_vol_opts o;
    vd_vol_opts_init(&o);
    o.layout = VD_LAYOUT_MIRROR;
    o.copies = 2;
    o.allow_same_node = 1;
    ASSERT_EQ(vd_vol_create(p, "m", 8ull << 20, &o), 0);
    vd_vol *v = vd_vol_open(p, "m");
    ASSERT_NE(v, nullptr);
    std::vector<char> pat = Pattern(), r(4096);
    ASSERT_EQ(vd_vol_pwrite(v, pat.data(), pat.size(), 65536, VD_IO_FUA), 0);
    ASSERT_EQ(vd_vol_pread(v, r.data(), r.size(), 65536), 0);
    EXPECT_EQ(r, pat);
    vd_vol_close(v);
    vd_pool_close(p);
    for (int i = 0; i < 3; i++)
        EXPECT_FALSE(BackingHas(i, pat)) << paths[i];
    // both legs hold the same ciphertext length of data: reopen and verify
    // reads the legs equal (decrypted per device, different tweaks)
    p = Open();
    ASSERT_NE(p, nullptr);
    v = vd_vol_open(p, "m");
    ASSERT_EQ(vd_vol_pread(v, r.data(), r.size(), 65536), 0);
    EXPECT_EQ(r, pat);
    vd_vol_close(v);
    vd_pool_close(p);
}

TEST_F(CryptTest, Thin_RoundTrip_NoPlaintext)
{
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    vd_pool *p = Open();
    struct vd_vol_opts o;
    vd_vol_opts_init(&o);
    o.thin = 1;
    ASSERT_EQ(vd_vol_create(p, "t", 64ull << 20, &o), 0);
    vd_vol *v = vd_vol_open(p, "t");
    ASSERT_NE(v, nullptr);
    std::vector<char> pat = Pattern(), r(4096), z(4096, 0);
    ASSERT_EQ(vd_vol_pwrite(v, pat.data(), pat.size(), 40ull << 20, 0), 0);
    ASSERT_EQ(vd_vol_pread(v, r.data(), r.size(), 40ull << 20), 0);
    EXPECT_EQ(r, pat);
    ASSERT_EQ(vd_vol_pread(v, r.data(), r.size(), (40ull << 20) + 8192), 0);
    EXPECT_EQ(r, z);
    ASSERT_EQ(vd_vol_flush(v), 0);
    vd_vol_close(v);
    vd_pool_close(p);
    for (int i = 0; i < 3; i++)
        EXPECT_FALSE(BackingHas(i, pat));
    p = Open();
    ASSERT_NE(p, nullptr);
    v = vd_vol_open(p, "t");
    ASSERT_EQ(vd_vol_pread(v, r.data(), r.size(), 40ull << 20), 0);
    EXPECT_EQ(r, pat);
    vd_vol_close(v);
    vd_pool_close(p);
}

// The definition must agree with the metadata on which devices are
// encrypted; encryption cannot be switched on for an existing pool.
TEST_F(CryptTest, EncryptFlagMismatch_Refused)
{
    devs[2].encrypt = 0; // d2 plaintext
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    vd_pool *p;
    devs[2].encrypt = 1;
    EXPECT_EQ(OpenRc(&p), -EINVAL);
    devs[2].encrypt = 0;
    devs[0].encrypt = 0;
    EXPECT_EQ(OpenRc(&p), -EINVAL);
    devs[0].encrypt = 1;
    p = Open();
    ASSERT_NE(p, nullptr);
    vd_pool_close(p);
}

TEST_F(PoolTest, CryptUnencryptedPool_KeyFileGiven_Refused)
{
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    std::string key = dir + "/k";
    int fd = open(key.c_str(), O_WRONLY | O_CREAT, 0600);
    ASSERT_EQ(write(fd, "0123456789abcdef0123", 20), 20);
    close(fd);
    conf.key_file = (char *)key.c_str();
    vd_pool *p = nullptr;
    EXPECT_EQ(vd_pool_open(&conf, &p), -EINVAL);
    conf.key_file = nullptr;
    p = Open();
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(vd_pool_key_add(p, key.c_str()), -EINVAL);
    vd_pool_close(p);
}

// Hostile metadata: slot numbers, iteration counts and removals of empty
// slots are refused, not trusted.
TEST_F(CryptTest, MdApply_BadSlotRecords_Refused)
{
    vd_pool pool{};
    snprintf(pool.name, sizeof(pool.name), "x");
    struct vd_op_key_slot s {};
    s.h.type = VD_OP_KEY_SLOT;
    s.h.len = sizeof(s);
    s.cipher = VD_CIPHER_AES256_XTS_512;
    s.kdf = VD_KDF_PBKDF2_SHA256;
    s.wrap = VD_WRAP_AES256_GCM;
    s.iterations = VD_PBKDF2_ITER;
    s.slot = VD_KEY_SLOTS;
    EXPECT_EQ(vd_crypt_md_apply(&pool, &s.h, 0), -EINVAL);
    s.slot = 0;
    s.iterations = 1u << 31;
    EXPECT_EQ(vd_crypt_md_apply(&pool, &s.h, 0), -EINVAL);
    s.iterations = VD_PBKDF2_ITER;
    EXPECT_EQ(vd_crypt_md_apply(&pool, &s.h, 0), 0);
    EXPECT_EQ(vd_crypt_md_apply(&pool, &s.h, 0), -EINVAL) << "slot in use";
    struct vd_op_key_remove rm {};
    rm.h.type = VD_OP_KEY_REMOVE;
    rm.h.len = sizeof(rm);
    rm.slot = 3;
    EXPECT_EQ(vd_crypt_md_apply(&pool, &rm.h, 0), -EINVAL);
    s.slot = 1;
    s.cipher = VD_CIPHER_AES256_XTS_4096;
    EXPECT_EQ(vd_crypt_md_apply(&pool, &s.h, 0), -EINVAL) << "mixed ciphers";
    rm.slot = 0;
    EXPECT_EQ(vd_crypt_md_apply(&pool, &rm.h, 0), 0);
    vd_crypt_free(&pool);
}

} // namespace

namespace {
// The key file check alone: mode, owner, symbolic link, size.
TEST(CryptKeyFile, Checks_MessagesNameTheFileAndTheFix)
{
    char tmpl[] = "/tmp/vdlvm-keyfile-test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    std::string d = tmpl, k = d + "/k", l = d + "/link", s = d + "/short";
    uint8_t buf[VD_KEY_FILE_MAX + 1];
    size_t len = 0;
    char msg[512];
    int fd = open(k.c_str(), O_WRONLY | O_CREAT, 0600);
    ASSERT_EQ(write(fd, "0123456789abcdefXYZ", 19), 19);
    close(fd);
    EXPECT_EQ(vd_crypt_key_file_read(k.c_str(), "kf", buf, &len, msg,
                                     sizeof(msg)),
              0);
    EXPECT_EQ(len, 19u);
    EXPECT_EQ(memcmp(buf, "0123456789abcdefXYZ", 19), 0);
    ASSERT_EQ(chmod(k.c_str(), 0604), 0);
    EXPECT_EQ(vd_crypt_key_file_read(k.c_str(), "kf", buf, &len, msg,
                                     sizeof(msg)),
              -EPERM);
    EXPECT_NE(std::string(msg).find("(mode 604); chmod 600 " + k),
              std::string::npos)
        << msg;
    ASSERT_EQ(chmod(k.c_str(), 0400), 0);
    ASSERT_EQ(symlink(k.c_str(), l.c_str()), 0);
    EXPECT_EQ(vd_crypt_key_file_read(l.c_str(), "kf", buf, &len, msg,
                                     sizeof(msg)),
              -EINVAL);
    EXPECT_NE(std::string(msg).find("symbolic link"), std::string::npos) << msg;
    fd = open(s.c_str(), O_WRONLY | O_CREAT, 0600);
    ASSERT_EQ(write(fd, "short\n", 6), 6);
    close(fd);
    EXPECT_EQ(vd_crypt_key_file_read(s.c_str(), "kf", buf, &len, msg,
                                     sizeof(msg)),
              -EINVAL);
    EXPECT_NE(std::string(msg).find("holds 6 bytes"), std::string::npos) << msg;
    EXPECT_EQ(vd_crypt_key_file_read(d.c_str(), "kf", buf, &len, msg,
                                     sizeof(msg)),
              -EINVAL)
        << "a directory";
    std::string cmd = "rm -rf '" + d + "'";
    ASSERT_EQ(system(cmd.c_str()), 0);
}

// ---- vol encrypt and key rotate --------------------------------------------

// d0 and d1 plain, d2 encrypted (the pool has a key file).
class VolEncryptTest : public CryptTest {
  protected:
    void SetUp() override
    {
        CryptTest::SetUp();
        devs[0].encrypt = 0;
        devs[1].encrypt = 0;
        if (getenv("VD_TEST_LOG"))
            vd_log_set_fn([](int, const char *m) { fprintf(stderr, "%s\n", m); });
    }
    // Wait (at most 30 s) until the pool's vol encrypt job is over.
    static void WaitJob(vd_pool *p)
    {
        struct vd_crypt_status st;
        for (int i = 0; i < 300; i++) {
            vd_vol_encrypt_status(p, &st);
            if (!st.active)
                return;
            vd_vol_encrypt_step(p);
        }
        FAIL() << "vol encrypt did not end";
    }
    static void WritePattern(vd_vol *v, uint64_t size)
    {
        std::vector<char> pat = Pattern();
        for (uint64_t off = 0; off < size; off += 4ull << 20)
            ASSERT_EQ(vd_vol_pwrite(v, pat.data(), pat.size(), off + 8192, 0),
                      0);
        ASSERT_EQ(vd_vol_flush(v), 0);
    }
    static void CheckPattern(vd_vol *v, uint64_t size)
    {
        std::vector<char> pat = Pattern(), r(4096);
        for (uint64_t off = 0; off < size; off += 4ull << 20) {
            ASSERT_EQ(vd_vol_pread(v, r.data(), r.size(), off + 8192), 0);
            ASSERT_EQ(r, pat) << off;
        }
    }
    uint64_t ExtentsOn(vd_pool *p, int dev)
    {
        return vd_pool_dev_extents(p, names[dev].c_str());
    }
};

// A volume on a plain device moves, online, to the encrypted one: it reads
// back, and neither device holds the plaintext afterwards (the freed
// extents were zeroed); a second vol encrypt says "already encrypted".
TEST_F(VolEncryptTest, Linear_MovesToEncryptedDevice_PlaintextZeroed)
{
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    vd_pool *p = Open();
    ASSERT_NE(p, nullptr);
    const uint64_t size = 24ull << 20;
    ASSERT_EQ(vd_vol_create(p, "vol0", size, nullptr), 0);
    vd_vol *v = vd_vol_open(p, "vol0");
    ASSERT_NE(v, nullptr);
    WritePattern(v, size);
    const uint64_t plain = ExtentsOn(p, 0) + ExtentsOn(p, 1);
    const uint64_t enc0 = ExtentsOn(p, 2);
    ASSERT_GT(plain, 0u);
    EXPECT_TRUE(BackingHas(0, Pattern())) << "the control: plaintext on d0";
    ASSERT_EQ(vd_vol_encrypt(p, "vol0", 0), 0);
    struct vd_crypt_status st;
    vd_vol_encrypt_status(p, &st);
    EXPECT_TRUE(st.active);
    EXPECT_EQ(std::string(st.vol), "vol0");
    EXPECT_EQ(st.total, plain);
    // writes while it runs land too
    std::vector<char> w(4096, 'W'), r(4096);
    ASSERT_EQ(vd_vol_pwrite(v, w.data(), w.size(), size - 4096, 0), 0);
    WaitJob(p);
    vd_vol_encrypt_status(p, &st);
    EXPECT_FALSE(st.active);
    EXPECT_EQ(st.error[0], 0) << st.error;
    EXPECT_EQ(st.left, 0u);
    EXPECT_EQ(st.moved, plain);
    EXPECT_EQ(st.scrubbed, plain);
    EXPECT_EQ(ExtentsOn(p, 0) + ExtentsOn(p, 1), 0u);
    EXPECT_EQ(ExtentsOn(p, 2), enc0 + plain);
    CheckPattern(v, size);
    ASSERT_EQ(vd_vol_pread(v, r.data(), r.size(), size - 4096), 0);
    EXPECT_EQ(r, w);
    EXPECT_EQ(vd_vol_encrypt(p, "vol0", 0), -EALREADY);
    vd_vol_close(v);
    vd_pool_close(p);
    for (int i = 0; i < 3; i++)
        EXPECT_FALSE(BackingHas(i, Pattern())) << paths[i];
    p = Open();
    ASSERT_NE(p, nullptr);
    v = vd_vol_open(p, "vol0");
    CheckPattern(v, size);
    vd_vol_close(v);
    vd_pool_close(p);
}

// Unknown volume, unencrypted pool, no room on encrypted devices, a job
// already running: a message, an error, nothing changed.
TEST_F(VolEncryptTest, BadInput_NothingChanged)
{
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    vd_pool *p = Open();
    ASSERT_NE(p, nullptr);
    ASSERT_EQ(vd_vol_create(p, "big", 100ull << 20, nullptr), 0);
    ASSERT_EQ(vd_vol_create(p, "small", 8ull << 20, nullptr), 0);
    uint64_t seq = p->seq;
    log_lines.clear();
    EXPECT_EQ(vd_vol_encrypt(p, "nosuch", 0), -ENOENT);
    EXPECT_EQ(vd_vol_encrypt(p, "big", 0), -ENOSPC);
    ASSERT_FALSE(log_lines.empty());
    EXPECT_NE(log_lines.back().find("encrypt: true have"), std::string::npos)
        << log_lines.back();
    EXPECT_EQ(p->seq, seq) << "a refused vol encrypt committed";
    struct vd_crypt_status st;
    vd_vol_encrypt_status(p, &st);
    EXPECT_FALSE(st.active);
    // one job at a time (the mover held so that it stays pending)
    __atomic_store_n(&g_move_test_hold, true, __ATOMIC_RELEASE);
    ASSERT_EQ(vd_vol_encrypt(p, "small", 0), 0);
    EXPECT_EQ(vd_vol_encrypt(p, "big", 0), -EBUSY);
    __atomic_store_n(&g_move_test_hold, false, __ATOMIC_RELEASE);
    WaitJob(p);
    EXPECT_EQ(vd_vol_encrypt(p, "small", 0), -EALREADY);
    vd_pool_close(p);
}

TEST_F(PoolTest, VolEncrypt_UnencryptedPool_Refused)
{
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    vd_pool *p = Open();
    ASSERT_EQ(vd_vol_create(p, "vol0", 8ull << 20, nullptr), 0);
    uint64_t seq = p->seq;
    EXPECT_EQ(vd_vol_encrypt(p, "vol0", 0), -EINVAL);
    EXPECT_EQ(vd_vol_encrypt(p, "nosuch", 0), -ENOENT);
    EXPECT_EQ(p->seq, seq);
    vd_pool_close(p);
}

// The job and the move under way are in the metadata: after a close in the
// middle (as after a crash) the next open finishes them, and the free
// extents of the source device are zeroed (the rescrub).
TEST_F(VolEncryptTest, Resume_AfterReopen_FinishesAndZeroes)
{
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    vd_pool *p = Open();
    ASSERT_NE(p, nullptr);
    const uint64_t size = 16ull << 20;
    ASSERT_EQ(vd_vol_create(p, "vol0", size, nullptr), 0);
    vd_vol *v = vd_vol_open(p, "vol0");
    WritePattern(v, size);
    vd_vol_close(v);
    __atomic_store_n(&g_move_test_hold, true, __ATOMIC_RELEASE);
    ASSERT_EQ(vd_vol_encrypt(p, "vol0", 0), 0);
    struct vd_move_status ms;
    for (int i = 0; i < 100; i++) { // the job starts its first move
        vd_crypt_tick(p);
        vd_pool_move_status(p, &ms);
        if (ms.active)
            break;
        usleep(20000);
    }
    ASSERT_TRUE(ms.active);
    EXPECT_EQ(vd_move_run(p, 1000000000LL, 1u << 20), 1) << "a partial copy";
    vd_pool_close(p);
    __atomic_store_n(&g_move_test_hold, false, __ATOMIC_RELEASE);
    EXPECT_TRUE(BackingHas(0, Pattern()));

    p = Open();
    ASSERT_NE(p, nullptr);
    struct vd_crypt_status st;
    vd_vol_encrypt_status(p, &st);
    EXPECT_TRUE(st.active) << "the job was not kept";
    WaitJob(p);
    vd_vol_encrypt_status(p, &st);
    EXPECT_EQ(st.error[0], 0) << st.error;
    EXPECT_EQ(ExtentsOn(p, 0) + ExtentsOn(p, 1), 0u);
    EXPECT_GE(st.scrubbed, 1u);
    v = vd_vol_open(p, "vol0");
    CheckPattern(v, size);
    vd_vol_close(v);
    vd_pool_close(p);
    for (int i = 0; i < 3; i++)
        EXPECT_FALSE(BackingHas(i, Pattern())) << paths[i];
}

// pool apply adds a device with encrypt: true to a pool with a key file:
// it joins encrypted, and vol encrypt moves a volume onto it.
TEST_F(VolEncryptTest, Apply_EncryptedDevice_ThenVolEncrypt)
{
    devs[2].encrypt = 0;
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    vd_pool *p = Open();
    ASSERT_NE(p, nullptr);
    ASSERT_EQ(vd_vol_create(p, "vol0", 8ull << 20, nullptr), 0);
    EXPECT_EQ(vd_vol_encrypt(p, "vol0", 0), -ENOSPC) << "no encrypted device";
    vd_vol *v = vd_vol_open(p, "vol0");
    WritePattern(v, 8ull << 20);
    std::vector<struct vd_conf_dev> d2 = devs;
    std::string path3 = dir + "/d3.img";
    struct vd_conf_dev n = devs[0];
    n.name = (char *)"d3";
    n.path = (char *)path3.c_str();
    n.encrypt = 1;
    d2.push_back(n);
    struct vd_conf_pool c2 = conf;
    c2.devs = d2.data();
    c2.ndevs = d2.size();
    char plan[1024];
    ASSERT_EQ(vd_pool_apply(p, &c2, 0, plan, sizeof(plan)), 0) << plan;
    EXPECT_NE(std::string(plan).find("encrypted"), std::string::npos) << plan;
    ASSERT_EQ(vd_vol_encrypt(p, "vol0", 0), 0);
    WaitJob(p);
    EXPECT_EQ(vd_pool_dev_extents(p, "d3"), 2u);
    CheckPattern(v, 8ull << 20);
    vd_vol_close(v);
    vd_pool_close(p);
    std::ifstream f(path3, std::ios::binary);
    std::stringstream s;
    s << f.rdbuf();
    std::string b = s.str();
    std::vector<char> pat = Pattern();
    EXPECT_EQ(memmem(b.data(), b.size(), pat.data(), pat.size()), nullptr);
    EXPECT_FALSE(BackingHas(0, pat));
    // the definition with d3 opens (its flag matches)
    conf = c2;
    devs = d2;
    conf.devs = devs.data();
    p = Open();
    ASSERT_NE(p, nullptr);
    vd_pool_close(p);
}

// key rotate: the new key file opens the pool, the old one no longer does;
// the data is the same; a key file that already opens a slot is refused.
TEST_F(CryptTest, KeyRotate_NewOpens_OldRefused_NoRewrite)
{
    ASSERT_EQ(vd_pool_create(&conf, 0), 0);
    vd_pool *p = Open();
    ASSERT_EQ(vd_vol_create(p, "vol0", 8ull << 20, nullptr), 0);
    vd_vol *v = vd_vol_open(p, "vol0");
    std::vector<char> pat = Pattern(), r(4096);
    ASSERT_EQ(vd_vol_pwrite(v, pat.data(), pat.size(), 0, 0), 0);
    ASSERT_EQ(vd_vol_flush(v), 0);
    vd_vol_close(v);
    std::string before = Backing(0).substr(VD_MD_OFFSET + VD_MD_SIZE);
    EXPECT_EQ(vd_pool_key_rotate(p, key1.c_str()), -EEXIST);
    EXPECT_EQ(vd_pool_key_rotate(p, key2.c_str()), 1);
    EXPECT_EQ(vd_pool_key_slots(p), 1);
    // key add is now authorised by key2
    std::string key3 = dir + "/key3";
    WriteKey(key3, 'c', 0600);
    EXPECT_EQ(vd_pool_key_add(p, key3.c_str()), 0);
    EXPECT_EQ(vd_pool_key_remove(p, key3.c_str()), 0);
    vd_pool_close(p);
    EXPECT_EQ(Backing(0).substr(VD_MD_OFFSET + VD_MD_SIZE), before)
        << "data rewritten";
    vd_pool *q;
    EXPECT_EQ(OpenRc(&q), -EACCES) << "the old key file still opens";
    conf.key_file = (char *)key2.c_str();
    p = Open();
    ASSERT_NE(p, nullptr);
    v = vd_vol_open(p, "vol0");
    ASSERT_EQ(vd_vol_pread(v, r.data(), r.size(), 0), 0);
    EXPECT_EQ(r, pat);
    vd_vol_close(v);
    vd_pool_close(p);
}
} // namespace
