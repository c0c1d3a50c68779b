/* tests/test_cli_run.c: `ernie run` and `ernie perplexity` through the real binary, on the trained
 * demo checkpoint (tools/demo/checkpoint, transformers' save_pretrained output) and the golden MoE
 * fixture. References: transformers' greedy sample and fp32 perplexity recorded when the demo was
 * trained (tools/demo/checkpoint/ppl_ref.json). */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define DEMO "tools/demo/checkpoint"

TEST(run_greedy_matches_transformers_sample) {
    char *o, *e;
    char *args[] = {"run", DEMO, "-p", "Tell me a fortune.", "--temp", "0", "-n", "40", NULL};
    if (!CHECK_INT(th_ernie(&o, &e, NULL, args), 0)) FAIL("stderr: %s", e);
    /* transformers' greedy continuation of the same chat prompt (tools/demo/README.md) */
    CHECK_STR(o, "The best way to get something done is to be done.\n");
    CHECK_STR(e, "");
    free(o), free(e);
}

TEST(run_reads_stdin_and_prints_ids) {
    char *o, *e;
    char *args[] = {"run", DEMO, "--temp", "0", "-n", "7", "--output", "ids", NULL};
    CHECK_INT(th_ernie(&o, &e, "Quote Genesis 1:3\n", args), 0);
    int n = 0;
    for (char *t = strtok(o, " \n"); t; t = strtok(NULL, " \n")) {
        char *end;
        long v = strtol(t, &end, 10);
        CHECK(*end == 0 && v >= 0 && v < 4032);
        n++;
    }
    CHECK_INT(n, 7);
    free(o), free(e);
}

TEST(run_stats_and_dump_logits) {
    char *o, *e;
    const char *dump = th_tmp("l.f32");
    char *args[] = {"run", "tests/fixtures/golden/moe", "--raw", "-p", "hello world", "--temp", "0", "-n", "3",
                    "--stats", "--dump-logits", (char *)dump, NULL};
    CHECK_INT(th_ernie(&o, &e, NULL, args), 0);
    CHECK_CONTAINS(e, "tok/s");
    size_t len = 0;
    char *d = th_read_file(dump, &len);
    CHECK(d && len > 0 && len % (2112 * 4) == 0); /* [prompt tokens x vocab] float32 */
    free(d), free(o), free(e);
}

TEST(run_errors_are_one_line) {
    char *o, *e;
    char *a1[] = {"run", "/nonexistent/model", "-p", "x", NULL};
    CHECK_INT(th_ernie(&o, &e, NULL, a1), 1);
    CHECK_CONTAINS(e, "ernie: run: /nonexistent/model:");
    CHECK_STR(o, "");
    free(o), free(e);
    char *a2[] = {"run", DEMO, "-p", "x", "-f", "y", NULL};
    CHECK_INT(th_ernie(&o, &e, NULL, a2), 2);
    CHECK_CONTAINS(e, "not both");
    free(o), free(e);
    char *a3[] = {"run", DEMO, "-p", "a long prompt that will not fit", "-c", "16", NULL};
    CHECK_INT(th_ernie(&o, &e, NULL, a3), 1);
    CHECK_CONTAINS(e, "context holds 16");
    free(o), free(e);
    char *a4[] = {"run", DEMO, "-p", "x", "--temp", "hot", NULL};
    CHECK_INT(th_ernie(&o, &e, NULL, a4), 2);
    CHECK_CONTAINS(e, "invalid value 'hot' for --temp");
    free(o), free(e);
    char *a5[] = {"run", DEMO, "-p", "x", "--output", "json", NULL};
    CHECK_INT(th_ernie(&o, &e, NULL, a5), 2);
    free(o), free(e);
    char *a6[] = {"run", "tests/fixtures/tok", "-p", "x", NULL}; /* a folder with no config.json */
    CHECK_INT(th_ernie(&o, &e, NULL, a6), 1);
    CHECK_CONTAINS(e, "config.json");
    free(o), free(e);
}

TEST(perplexity_matches_transformers) {
    json_error_t je;
    json_t *ref = json_load_file(DEMO "/ppl_ref.json", 0, &je);
    if (!CHECK(ref)) return;
    /* the first 4 windows of 256 tokens; transformers' fp32 mean NLL of each is in the reference */
    json_t *wn = json_object_get(ref, "window_mean_nll");
    double want = 0;
    for (int i = 0; i < 4; i++) want += json_number_value(json_array_get(wn, (size_t)i)) / 4;
    json_decref(ref);
    char *o, *e;
    char *args[] = {"perplexity", DEMO, "tools/demo/data/heldout.txt", "-c", "256", "--windows", "4", "--json", NULL};
    if (!CHECK_INT(th_ernie(&o, &e, NULL, args), 0)) FAIL("stderr: %s", e);
    json_t *got = json_loads(o, 0, &je);
    if (CHECK(got)) {
        double nll = json_number_value(json_object_get(got, "nll"));
        CHECK_NEAR(nll, want, 1e-4);
        CHECK_INT(json_integer_value(json_object_get(got, "tokens_scored")), 4 * 255);
        json_decref(got);
    }
    free(o), free(e);
}

/* A damaged model file is refused at load with the tensor's name (a flipped byte in the weights used
 * to run and print garbage); the undamaged file runs. */
TEST(run_refuses_a_damaged_file) {
    const char *path = th_tmp("d.ernie");
    char *o, *e;
    char *imp[] = {"import", "tests/fixtures/golden/moe", "-o", (char *)path, "--recipe", "q2.5", NULL};
    if (!CHECK_INT(th_ernie(&o, &e, NULL, imp), 0)) FAIL("stderr: %s", e);
    free(o), free(e);
    char *run[] = {"run", (char *)path, "--raw", "-p", "hello", "-n", "2", "--temp", "0", NULL};
    CHECK_INT(th_ernie(&o, &e, NULL, run), 0);
    free(o), free(e);
    size_t len;
    char *b = th_read_file(path, &len);
    if (!CHECK(b && len > 1000)) return free(b);
    b[len * 3 / 4] ^= 0x10;
    CHECK_INT(th_write_file(path, b, len), 0);
    free(b);
    CHECK_INT(th_ernie(&o, &e, NULL, run), 1);
    CHECK_CONTAINS(e, "is corrupt");
    CHECK_CONTAINS(e, "tensor 'model.");
    CHECK(o[0] == 0);
    free(o), free(e);
    char *chat[] = {"chat", (char *)path, NULL};
    CHECK_INT(th_ernie(&o, &e, "hi\n", chat), 1);
    CHECK_CONTAINS(e, "is corrupt");
    free(o), free(e);
}

/* --stop: the greedy reply of run_greedy_matches_transformers_sample cut before the first stop string to
 * be complete ("get" ends before "something" starts), and generation ends there (fewer tokens). */
TEST(run_stop_strings_cut_the_reply) {
    char *o, *e;
    char *a1[] = {"run", DEMO, "-p", "Tell me a fortune.", "--temp", "0", "-n", "40", "--stop", "something",
                  "--stop", "way to", "--stats", NULL};
    if (!CHECK_INT(th_ernie(&o, &e, NULL, a1), 0)) FAIL("stderr: %s", e);
    CHECK_STR(o, "The best \n");
    int ngen = -1;
    const char *g = strstr(e, "generation: ");
    if (CHECK(g != NULL)) ngen = atoi(g + 12);
    CHECK(ngen > 0 && ngen < 12); /* the whole reply is 12 or more tokens */
    free(o), free(e);
    char *a2[] = {"run", DEMO, "-p", "Tell me a fortune.", "--temp", "0", "-n", "40", "--stop", "no such text", NULL};
    CHECK_INT(th_ernie(&o, &e, NULL, a2), 0);
    CHECK_STR(o, "The best way to get something done is to be done.\n");
    free(o), free(e);
    char *a3[] = {"run", DEMO, "-p", "x", "--stop", "a", "--output", "ids", NULL};
    CHECK_INT(th_ernie(&o, &e, NULL, a3), 2);
    CHECK_CONTAINS(e, "--stop works on text");
    free(o), free(e);
}

/* --json: one object at the end instead of the stream; its text and counts agree with the plain output
 * (transformers' greedy sample, 12 tokens) and with --output ids. */
TEST(run_json_result) {
    char *o, *e;
    char *a1[] = {"--json", "run", DEMO, "-p", "Tell me a fortune.", "--temp", "0", "-n", "40", NULL};
    if (!CHECK_INT(th_ernie(&o, &e, NULL, a1), 0)) FAIL("stderr: %s", e);
    json_error_t je;
    json_t *r = json_loads(o, 0, &je);
    if (CHECK(r != NULL)) {
        CHECK_STR(json_string_value(json_object_get(r, "text")), "The best way to get something done is to be done.");
        CHECK_STR(json_string_value(json_object_get(r, "stop")), "stop_token");
        CHECK_INT(json_integer_value(json_object_get(r, "generated_tokens")), 12);
        CHECK(json_integer_value(json_object_get(r, "prompt_tokens")) > 0);
        CHECK(json_real_value(json_object_get(r, "generation_seconds")) > 0);
    }
    json_decref(r);
    free(o), free(e);
    char *a2[] = {"run", DEMO, "-p", "Tell me a fortune.", "--temp", "0", "-n", "5", "--output", "ids", "--json", NULL};
    char *a3[] = {"run", DEMO, "-p", "Tell me a fortune.", "--temp", "0", "-n", "5", "--output", "ids", NULL};
    char *o3, *e3;
    CHECK_INT(th_ernie(&o, &e, NULL, a2), 0);
    CHECK_INT(th_ernie(&o3, &e3, NULL, a3), 0);
    r = json_loads(o, 0, &je);
    if (CHECK(r != NULL)) {
        json_t *ids = json_object_get(r, "ids");
        CHECK_INT((long long)json_array_size(ids), 5);
        char line[128] = "";
        for (size_t i = 0; i < json_array_size(ids); i++)
            snprintf(line + strlen(line), sizeof line - strlen(line), i ? " %lld" : "%lld",
                     (long long)json_integer_value(json_array_get(ids, i)));
        strcat(line, "\n");
        CHECK_STR(line, o3);
        CHECK_STR(json_string_value(json_object_get(r, "stop")), "length");
    }
    json_decref(r);
    free(o), free(e), free(o3), free(e3);
}
