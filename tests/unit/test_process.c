/* Process-level pieces: handshake line, cookie, socket path, host:port. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "loop/conn.h"
#include "loop/process.h"
#include "loop/server.h"

static void handshake_line_exact(void **state) {
    (void)state;
    char line[128];
    int n = proc_format_handshake(line, sizeof line, "unix", "/tmp/plugin123");
    assert_int_equal(n, (int)strlen("1|2|unix|/tmp/plugin123|grpc|\n"));
    assert_string_equal(line, "1|2|unix|/tmp/plugin123|grpc|\n");
    n = proc_format_handshake(line, sizeof line, "tcp", "127.0.0.1:10000");
    assert_string_equal(line, "1|2|tcp|127.0.0.1:10000|grpc|\n");
}

static void handshake_line_too_long(void **state) {
    (void)state;
    char line[16];
    assert_int_equal(proc_format_handshake(line, sizeof line, "unix", "/a/very/long/path/indeed"), -1);
}

static void cookie(void **state) {
    (void)state;
    unsetenv(PROC_COOKIE_KEY);
    assert_int_equal(proc_check_cookie(), -1);
    setenv(PROC_COOKIE_KEY, "panel", 1);
    assert_int_equal(proc_check_cookie(), -1);
    setenv(PROC_COOKIE_KEY, "datasource", 1);
    assert_int_equal(proc_check_cookie(), 0);
    assert_non_null(strstr(proc_cookie_note(), "This binary is a plugin"));
}

static void socket_path(void **state) {
    (void)state;
    char p[108];
    assert_int_equal(srv_unix_socket_path(p, sizeof p, "/tmp/", 42), 0);
    assert_string_equal(p, "/tmp/plugin42");
    char longdir[200];
    memset(longdir, 'd', sizeof longdir - 1);
    longdir[0] = '/';
    longdir[sizeof longdir - 1] = '\0';
    assert_int_equal(srv_unix_socket_path(p, sizeof p, longdir, 42), -1);
}

static void hostport(void **state) {
    (void)state;
    char host[64];
    int port;
    assert_int_equal(srv_split_hostport("127.0.0.1:50051", host, sizeof host, &port), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 50051);
    assert_int_equal(srv_split_hostport(":0", host, sizeof host, &port), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 0);
    assert_int_equal(srv_split_hostport("[::1]:80", host, sizeof host, &port), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(srv_split_hostport("localhost", host, sizeof host, &port), -1);
    assert_int_equal(srv_split_hostport("h:65536", host, sizeof host, &port), -1);
    assert_int_equal(srv_split_hostport("h:", host, sizeof host, &port), -1);
    assert_int_equal(srv_split_hostport("h:1x", host, sizeof host, &port), -1);
}

/* A storm's output buffers go once drained; everyday ones stay. */
static void output_buffers_trimmed_once_drained(void **state) {
    (void)state;
    static uint8_t burst[200 * 1024];
    conn_t c;
    memset(&c, 0, sizeof c);
    assert_int_equal(conn_append(&c, burst, sizeof burst), 0);
    assert_true(c.out_cap > CONN_BUF_KEEP);
    conn_trim_buffers(&c); /* not drained yet: kept */
    assert_non_null(c.out);
    c.out_len = 0;
    conn_trim_buffers(&c);
    assert_null(c.out);
    assert_int_equal(c.out_cap, 0);
    assert_int_equal(conn_append(&c, burst, 1000), 0); /* grows again from nothing */
    assert_true(c.out_cap >= 1000 && c.out_cap <= CONN_BUF_KEEP);
    c.out_len = 0;
    conn_trim_buffers(&c);
    assert_non_null(c.out); /* small: kept for the next write */
    /* the buffer a write is still sending is never touched */
    c.wbuf = malloc(CONN_BUF_KEEP * 2);
    c.wbuf_cap = CONN_BUF_KEEP * 2;
    c.writing = true;
    conn_trim_buffers(&c);
    assert_non_null(c.wbuf);
    c.writing = false;
    conn_trim_buffers(&c);
    assert_null(c.wbuf);
    free(c.out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(handshake_line_exact), cmocka_unit_test(handshake_line_too_long),
        cmocka_unit_test(cookie),               cmocka_unit_test(socket_path),
        cmocka_unit_test(hostport),             cmocka_unit_test(output_buffers_trimmed_once_drained),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
