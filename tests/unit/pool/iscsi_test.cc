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
