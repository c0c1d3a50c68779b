/* tests/test_conv.c: conversation save/load round trip and the errors for bad files. */
#include <stdlib.h>
#include <string.h>

#include "app/conv.h"
#include "harness.h"

TEST(conv_save_load_round_trip) {
    conv c;
    conv_init(&c);
    conv_set_system(&c, "Be brief.");
    conv_add(&c, "user", "Hi \"there\"\nsecond line \xe4\xbd\xa0\xe5\xa5\xbd");
    conv_add(&c, "assistant", "Hello!");
    err_t e = {0};
    if (!CHECK_INT(conv_save(&c, th_tmp("c.json"), &e), 0)) return;
    conv d;
    conv_init(&d);
    if (!CHECK_INT(conv_load(&d, th_tmp("c.json"), &e), 0)) return;
    CHECK_STR(d.system, "Be brief.");
    CHECK_INT(d.n, 2);
    CHECK_STR(d.msg[0].content, c.msg[0].content);
    CHECK_STR(d.msg[1].role, "assistant");
    conv_drop_oldest(&d);
    CHECK_INT(d.n, 1);
    CHECK_STR(d.msg[0].content, "Hello!");
    conv_free(&c);
    conv_free(&d);
}

TEST(conv_load_rejects_bad_files) {
    conv c;
    conv_init(&c);
    conv_add(&c, "user", "keep me");
    err_t e = {0};
    th_write_file(th_tmp("a.json"), "{not json", 9);
    CHECK_INT(conv_load(&c, th_tmp("a.json"), &e), -1);
    CHECK_CONTAINS(e.msg, "a.json: not JSON");
    const char *bad_role = "{\"messages\":[{\"role\":\"robot\",\"content\":\"x\"}]}";
    th_write_file(th_tmp("b.json"), bad_role, strlen(bad_role));
    CHECK_INT(conv_load(&c, th_tmp("b.json"), &e), -1);
    CHECK_CONTAINS(e.msg, "unknown role 'robot'");
    const char *no_content = "{\"messages\":[{\"role\":\"user\"}]}";
    th_write_file(th_tmp("d.json"), no_content, strlen(no_content));
    CHECK_INT(conv_load(&c, th_tmp("d.json"), &e), -1);
    CHECK_CONTAINS(e.msg, "message 1");
    CHECK_INT(conv_load(&c, th_tmp("missing.json"), &e), -1);
    CHECK_CONTAINS(e.msg, "missing.json");
    CHECK_INT(c.n, 1); /* unchanged after failures */
    CHECK_STR(c.msg[0].content, "keep me");
    conv_free(&c);
}
