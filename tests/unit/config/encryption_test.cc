// Unit tests for encryption in the pool definition (config/config.c):
// `encryption: {key_file: PATH}` at the top level and `encrypt: true|false`
// per device; FILE:LINE:COL errors and nothing returned on error.  (The key
// file itself is checked when it is used: pool/crypt.c.)
#include <gtest/gtest.h>

#include <errno.h>
#include <string.h>

#include <string>

#include "config/vdconfig.h"

namespace {

int Parse(const std::string &yaml, vd_conf_pool **out, std::string *err)
{
    char buf[1024] = "";
    int rc = vd_conf_parse("t.yaml", yaml.data(), yaml.size(), out, buf,
                           sizeof(buf));
    *err = buf;
    return rc;
}

::testing::AssertionResult Fails(const std::string &yaml,
                                 const std::string &prefix,
                                 const std::string &what)
{
    vd_conf_pool sentinel{};
    vd_conf_pool *conf = &sentinel;
    std::string e;
    int rc = Parse(yaml, &conf, &e);
    if (rc != -EINVAL)
        return ::testing::AssertionFailure() << "rc " << rc << ", err " << e;
    if (conf != &sentinel)
        return ::testing::AssertionFailure() << "*out was changed on error";
    if (e.rfind(prefix, 0) != 0)
        return ::testing::AssertionFailure()
               << "'" << e << "' does not start with '" << prefix << "'";
    if (e.find(what) == std::string::npos)
        return ::testing::AssertionFailure()
               << "'" << e << "' does not contain '" << what << "'";
    return ::testing::AssertionSuccess();
}

const char kDev0[] = "  - name: d0\n    path: /tmp/vdlvm-enc-d0.img\n"
                     "    size: 64MiB\n";

TEST(ConfigEncryption, KeyFileAndEncrypt_Parsed)
{
    std::string y = std::string("pool: p\nencryption:\n  key_file: /etc/k\n"
                                "devices:\n") +
                    kDev0 + "    encrypt: true\n" +
                    "  - name: d1\n    path: /tmp/vdlvm-enc-d1.img\n"
                    "    size: 64MiB\n    encrypt: false\n";
    vd_conf_pool *conf = nullptr;
    std::string e;
    ASSERT_EQ(Parse(y, &conf, &e), 0) << e;
    ASSERT_NE(conf->key_file, nullptr);
    EXPECT_STREQ(conf->key_file, "/etc/k");
    ASSERT_EQ(conf->ndevs, 2u);
    EXPECT_EQ(conf->devs[0].encrypt, 1);
    EXPECT_EQ(conf->devs[1].encrypt, 0);
    vd_conf_free(conf);
}

TEST(ConfigEncryption, FlowMapping_NoEncryption_Defaults)
{
    vd_conf_pool *conf = nullptr;
    std::string e;
    ASSERT_EQ(Parse(std::string("pool: p\nencryption: {key_file: /k}\n"
                                "devices:\n") +
                        kDev0,
                    &conf, &e),
              0)
        << e;
    EXPECT_STREQ(conf->key_file, "/k");
    EXPECT_EQ(conf->devs[0].encrypt, 0);
    vd_conf_free(conf);
    ASSERT_EQ(Parse(std::string("pool: p\ndevices:\n") + kDev0, &conf, &e), 0);
    EXPECT_EQ(conf->key_file, nullptr);
    vd_conf_free(conf);
}

TEST(ConfigEncryption, SectorSize_512Or4096)
{
    std::string devs = std::string("devices:\n") + kDev0;
    vd_conf_pool *conf = nullptr;
    std::string e;
    ASSERT_EQ(Parse("pool: p\nencryption: {key_file: /k, sector_size: 4096}\n" +
                        devs,
                    &conf, &e),
              0)
        << e;
    EXPECT_EQ(conf->crypt_sector, 4096u);
    vd_conf_free(conf);
    ASSERT_EQ(Parse("pool: p\nencryption: {key_file: /k}\n" + devs, &conf, &e),
              0);
    EXPECT_EQ(conf->crypt_sector, 512u);
    vd_conf_free(conf);
    EXPECT_TRUE(Fails("pool: p\nencryption: {key_file: /k, sector_size: 1024}\n" +
                          devs,
                      "t.yaml:2:41: ", "sector_size 1024 is not 512 or 4096"));
}

TEST(ConfigEncryption, EncryptWithoutKeyFile_Refused)
{
    EXPECT_TRUE(Fails(std::string("pool: p\ndevices:\n") + kDev0 +
                          "    encrypt: true\n",
                      "t.yaml:6:5: ", "encrypt: true needs the pool's key"));
}

TEST(ConfigEncryption, BadValues_Refused)
{
    std::string devs = std::string("devices:\n") + kDev0;
    EXPECT_TRUE(Fails("pool: p\nencryption: /k\n" + devs, "t.yaml:2:13: ",
                      "encryption must be a mapping"));
    EXPECT_TRUE(Fails("pool: p\nencryption:\n" + devs, "t.yaml:2:1: ",
                      "encryption must be a mapping, not empty"));
    EXPECT_TRUE(Fails("pool: p\nencryption: {}\n" + devs, "t.yaml:2:13: ",
                      "missing required key 'key_file'"));
    EXPECT_TRUE(Fails("pool: p\nencryption: {key_file: k}\n" + devs,
                      "t.yaml:2:24: ", "not an absolute path"));
    EXPECT_TRUE(Fails("pool: p\nencryption: {key_file: /k, cipher: x}\n" + devs,
                      "t.yaml:2:28: ", "unknown key 'cipher'"));
    std::string enc = "pool: p\nencryption: {key_file: /k}\n";
    EXPECT_TRUE(Fails(enc + devs + "    encrypt: yes\n", "t.yaml:7:14: ",
                      "encrypt 'yes' is not a boolean; use true or false"));
    EXPECT_TRUE(Fails(enc + devs + "    encrypt: \"true\"\n", "t.yaml:7:14: ",
                      "not a boolean"));
    EXPECT_TRUE(Fails(enc + devs + "    encrypt:\n", "t.yaml:7:5: ",
                      "encrypt has no value"));
}

} // namespace
