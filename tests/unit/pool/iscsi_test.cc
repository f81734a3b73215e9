// Unit tests for pool/iscsi.c: what the remote driver checks before and
// while it logs in, with no iSCSI target (tests/integration/test-remote.sh
// covers a real peer: I/O, timeouts, reconnects, CHAP).
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <string>

#include "pool/pool_int.h"

namespace {

void quiet_log(int, const char *) {}

double now_s()
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

class IscsiTest : public ::testing::Test {
  protected:
    std::string dir;
    int sock = -1;
    char msg[512] = "";
    struct vd_bdev *b = nullptr;

    void SetUp() override
    {
        char tmpl[] = "/tmp/vdlvm-iscsi-test.XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir = tmpl;
        vd_log_set_fn(quiet_log);
    }
    void TearDown() override
    {
        if (b)
            b->ops->close(b);
        if (sock >= 0)
            close(sock);
        std::string cmd = "rm -rf '" + dir + "'";
        ASSERT_EQ(system(cmd.c_str()), 0);
        vd_log_set_fn(nullptr);
    }
    // A TCP socket on 127.0.0.1; listening (the kernel completes the
    // handshake, nobody ever answers: a silent peer) or not (refused).
    int Port(bool listening)
    {
        struct sockaddr_in a = {};
        socklen_t l = sizeof(a);
        sock = socket(AF_INET, SOCK_STREAM, 0);
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        EXPECT_EQ(bind(sock, (struct sockaddr *)&a, sizeof(a)), 0);
        if (listening) {
            EXPECT_EQ(listen(sock, 8), 0);
        }
        EXPECT_EQ(getsockname(sock, (struct sockaddr *)&a, &l), 0);
        return ntohs(a.sin_port);
    }
    std::string Url(int port)
    {
        return "iscsi://127.0.0.1:" + std::to_string(port) +
               "/iqn.2024-01.org.vdlvm.test:none/1";
    }
    std::string SecretFile(const char *content, mode_t mode)
    {
        std::string p = dir + "/secret";
        FILE *f = fopen(p.c_str(), "w");
        EXPECT_NE(f, nullptr);
        fputs(content, f);
        fclose(f);
        chmod(p.c_str(), mode);
        return p;
    }
    int Open(const std::string &url, uint32_t timeout_ms = 2000,
             const char *user = nullptr, const std::string &secret = "")
    {
        struct vd_conf_dev c = {};
        c.name = (char *)"b0";
        c.iscsi_url = (char *)url.c_str();
        c.timeout_ms = timeout_ms;
        c.chap_user = (char *)user;
        c.chap_secret_file = secret.empty() ? nullptr : (char *)secret.c_str();
        return vd_bdev_iscsi_open(&c, &b, msg, sizeof(msg));
    }
};

TEST_F(IscsiTest, UrlWithCredentials_Refused)
{
    EXPECT_EQ(Open("iscsi://user%pass@127.0.0.1/iqn.2024-01.org.x:y/1"), -EINVAL);
    EXPECT_NE(strstr(msg, "chap.secret_file"), nullptr) << msg;
    EXPECT_EQ(strstr(msg, "pass"), nullptr) << "the message repeats the secret: " << msg;
    EXPECT_EQ(b, nullptr);
}

TEST_F(IscsiTest, NotAnIscsiUrl_Refused)
{
    EXPECT_EQ(Open("http://127.0.0.1/x"), -EINVAL);
    EXPECT_NE(strstr(msg, "iscsi://HOST"), nullptr) << msg;
}

TEST_F(IscsiTest, ConnectionRefused_SaysSoAtOnce)
{
    int port = Port(false);
    double t0 = now_s();
    EXPECT_EQ(Open(Url(port)), -ECONNREFUSED);
    EXPECT_LT(now_s() - t0, 1.0);
    EXPECT_NE(strstr(msg, "Connection refused"), nullptr) << msg;
}

TEST_F(IscsiTest, SilentPeer_LoginTimesOutWithinTimeout)
{
    int port = Port(true);
    double t0 = now_s();
    EXPECT_EQ(Open(Url(port), 500), -ETIMEDOUT);
    double t = now_s() - t0;
    EXPECT_GE(t, 0.45);
    EXPECT_LT(t, 1.5);
    EXPECT_NE(strstr(msg, "no answer within 500 ms"), nullptr) << msg;
}

TEST_F(IscsiTest, SecretFileReadableByOthers_RefusedWithFix)
{
    std::string s = SecretFile("topsecret\n", 0644);
    EXPECT_EQ(Open(Url(Port(false)), 2000, "u", s), -EPERM);
    EXPECT_NE(strstr(msg, ("chmod 600 " + s).c_str()), nullptr) << msg;
    EXPECT_EQ(strstr(msg, "topsecret"), nullptr) << msg;
}

TEST_F(IscsiTest, SecretFileEmpty_Refused)
{
    std::string s = SecretFile("\n", 0600);
    EXPECT_EQ(Open(Url(Port(false)), 2000, "u", s), -EINVAL);
    EXPECT_NE(strstr(msg, "empty"), nullptr) << msg;
}

TEST_F(IscsiTest, SecretFileBadMutualLine_Refused)
{
    std::string s = SecretFile("topsecret\nonlyuser\n", 0600);
    EXPECT_EQ(Open(Url(Port(false)), 2000, "u", s), -EINVAL);
    EXPECT_NE(strstr(msg, "mutual CHAP"), nullptr) << msg;
    EXPECT_EQ(strstr(msg, "topsecret"), nullptr) << msg;
}

TEST_F(IscsiTest, SecretFileMissing_NamesIt)
{
    std::string s = dir + "/nope";
    EXPECT_EQ(Open(Url(Port(false)), 2000, "u", s), -ENOENT);
    EXPECT_NE(strstr(msg, s.c_str()), nullptr) << msg;
}

TEST_F(IscsiTest, GoodSecretFile_GetsToTheConnection)
{
    std::string s = SecretFile("topsecret\ntuser tsecret\n", 0600);
    EXPECT_EQ(Open(Url(Port(false)), 2000, "u", s), -ECONNREFUSED) << msg;
}

TEST_F(IscsiTest, ChapUserWithoutSecretFile_Refused)
{
    EXPECT_EQ(Open(Url(Port(false)), 2000, "u"), -EINVAL);
    EXPECT_NE(strstr(msg, "chap.secret_file"), nullptr) << msg;
}

} // namespace

// ---- pool ownership: reservation keys and PERSISTENT RESERVE IN data ----
// (pool/owner.c; tests/integration/test-remote-owner.sh runs the protocol
// against real peers).
#include "pool/owner.h"

TEST(OwnerKey, ShortHostName_IsTheKeyAndNamesTheHost)
{
    uint64_t k = vd_owner_key("nodea");
    EXPECT_EQ(k, 0x566e6f6465610000ull); // 'V' "nodea" NUL NUL
    char buf[160];
    vd_owner_key_describe(k, buf, sizeof(buf));
    EXPECT_NE(strstr(buf, "host 'nodea'"), nullptr) << buf;
    EXPECT_NE(strstr(buf, "0x566e6f6465610000"), nullptr) << buf;
}

TEST(OwnerKey, SevenCharacters_StillReadable)
{
    char buf[160];
    vd_owner_key_describe(vd_owner_key("host-07"), buf, sizeof(buf));
    EXPECT_NE(strstr(buf, "host 'host-07'"), nullptr) << buf;
}

TEST(OwnerKey, LongHostName_HashedStableAndDistinct)
{
    uint64_t a = vd_owner_key("storage-node-01.example.com");
    uint64_t b = vd_owner_key("storage-node-02.example.com");
    EXPECT_EQ(a, vd_owner_key("storage-node-01.example.com"));
    EXPECT_NE(a, b);
    EXPECT_EQ(a >> 56, (uint64_t)'H');
    EXPECT_NE(a, vd_owner_key("storage"));
    char buf[160];
    vd_owner_key_describe(a, buf, sizeof(buf));
    EXPECT_NE(strstr(buf, "a host with reservation key 0x48"), nullptr) << buf;
}

TEST(OwnerKey, NeverZeroAndShortNamesNeverCollideWithHashes)
{
    EXPECT_NE(vd_owner_key(""), 0u);
    EXPECT_NE(vd_owner_key("a"), 0u);
    EXPECT_NE(vd_owner_key("abcdefg") >> 56, vd_owner_key("abcdefgh") >> 56);
}

TEST(OwnerKey, ForeignKey_NotMistakenForAName)
{
    char buf[160];
    vd_owner_key_describe(0x1234567890abcdefull, buf, sizeof(buf));
    EXPECT_NE(strstr(buf, "a host with reservation key 0x1234567890abcdef"),
              nullptr) << buf;
    // 'V' tag but non-name bytes, or bytes after the padding
    vd_owner_key_describe(0x5641000042000000ull, buf, sizeof(buf));
    EXPECT_EQ(strstr(buf, "host '"), nullptr) << buf;
    vd_owner_key_describe(0x5600000000000000ull, buf, sizeof(buf));
    EXPECT_EQ(strstr(buf, "host '"), nullptr) << buf;
}

TEST(OwnerHost, SanitisedLowerCase)
{
    char h[64];
    vd_owner_host(h, sizeof(h));
    ASSERT_GT(strlen(h), 0u);
    for (const char *p = h; *p; p++)
        EXPECT_TRUE((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
                    *p == '.' || *p == '-') << h;
}

TEST(PrParse, ReadKeys_TwoKeys)
{
    const uint8_t d[] = {0, 0, 0, 7,  0, 0, 0, 16, // generation, length
                         0x56, 0x6e, 0x6f, 0x64, 0x65, 0x61, 0, 0,
                         0x48, 1, 2, 3, 4, 5, 6, 7};
    uint64_t k[4];
    size_t n = 9;
    ASSERT_EQ(vd_pr_parse_keys(d, sizeof(d), k, 4, &n), 0);
    ASSERT_EQ(n, 2u);
    EXPECT_EQ(k[0], 0x566e6f6465610000ull);
    EXPECT_EQ(k[1], 0x4801020304050607ull);
}

TEST(PrParse, ReadKeys_TruncatedByAllocationLengthOrMax)
{
    const uint8_t d[] = {0, 0, 0, 1, 0, 0, 0, 24, // 3 keys announced
                         0, 0, 0, 0, 0, 0, 0, 1,
                         0, 0, 0, 0, 0, 0, 0, 2,
                         0, 0, 0, 0}; // third cut short
    uint64_t k[4];
    size_t n;
    ASSERT_EQ(vd_pr_parse_keys(d, sizeof(d), k, 4, &n), 0);
    EXPECT_EQ(n, 2u);
    ASSERT_EQ(vd_pr_parse_keys(d, sizeof(d), k, 1, &n), 0);
    EXPECT_EQ(n, 1u);
    EXPECT_EQ(k[0], 1u);
}

TEST(PrParse, ReadKeys_NoneAndShort)
{
    const uint8_t d[] = {0, 0, 0, 1, 0, 0, 0, 0};
    uint64_t k[1];
    size_t n = 5;
    ASSERT_EQ(vd_pr_parse_keys(d, sizeof(d), k, 1, &n), 0);
    EXPECT_EQ(n, 0u);
    EXPECT_EQ(vd_pr_parse_keys(d, 7, k, 1, &n), -EINVAL);
}

TEST(PrParse, ReadReservation_HeldWriteExclusiveRegistrantsOnly)
{
    uint8_t d[24] = {0, 0, 0, 3, 0, 0, 0, 16,
                     0x56, 0x6e, 0x6f, 0x64, 0x65, 0x61, 0, 0};
    d[21] = 0x05; // scope LU (0), type 5
    int held;
    uint64_t key;
    uint8_t type;
    ASSERT_EQ(vd_pr_parse_reservation(d, sizeof(d), &held, &key, &type), 0);
    EXPECT_EQ(held, 1);
    EXPECT_EQ(key, 0x566e6f6465610000ull);
    EXPECT_EQ(type, VD_PR_WE_REGISTRANTS_ONLY);
}

TEST(PrParse, ReadReservation_NoneHeld)
{
    const uint8_t d[8] = {0, 0, 0, 3, 0, 0, 0, 0};
    int held = 1;
    uint64_t key = 9;
    uint8_t type = 9;
    ASSERT_EQ(vd_pr_parse_reservation(d, sizeof(d), &held, &key, &type), 0);
    EXPECT_EQ(held, 0);
    EXPECT_EQ(key, 0u);
    EXPECT_EQ(type, 0);
}

TEST(PrParse, ReadReservation_ShortAnswerRefused)
{
    const uint8_t d[16] = {0, 0, 0, 3, 0, 0, 0, 16};
    int held;
    uint64_t key;
    uint8_t type;
    EXPECT_EQ(vd_pr_parse_reservation(d, 4, &held, &key, &type), -EINVAL);
    EXPECT_EQ(vd_pr_parse_reservation(d, sizeof(d), &held, &key, &type), -EINVAL);
}
