/* tally in C: the same module as tally.wat, built with Debian's clang and lld, no libc:
 *
 *   clang --target=wasm32 -nostdlib -O2 -Wl,--no-entry -Wl,--export=run \
 *         -Wl,-z,stack-size=16384 -Wl,--initial-memory=65536 -o tally.wasm tally.c
 *
 * (docs/wasm.md explains the flags.) One vote per wallet per proposal: in its action's
 * namespace, ID -> the number of votes as decimal text, and ID/WALLET -> "" per voter. */

#define IMPORT(name) __attribute__((import_module("swarmvm"), import_name(name)))

IMPORT("input_len") int input_len(void);
IMPORT("input_read") void input_read(char *ptr);
IMPORT("caller") void caller(char *ptr);
IMPORT("get") int get(const char *key, int klen, char *value, int vcap);
IMPORT("set") void set(const char *key, int klen, const char *value, int vlen);
IMPORT("fail") __attribute__((noreturn)) void fail(const char *msg, int len);

/* No libc on wasm32 here: the compiler may still call these two. */
void *memset(void *dst, int c, unsigned long n) {
    unsigned char *d = dst;
    while (n--) *d++ = (unsigned char)c;
    return dst;
}
void *memcpy(void *dst, const void *src, unsigned long n) {
    unsigned char *d = dst;
    const unsigned char *s = src;
    while (n--) *d++ = *s++;
    return dst;
}

static char input[32768]; /* a vote is far smaller; one page of memory in all */
static int n;

#define LIT(s) s, (int)(sizeof(s) - 1)

static __attribute__((noreturn)) void shape(void) {
    fail(LIT("tally: expected {\"action\": ..., \"proposal\": {\"id\": ...}}"));
}

static int at(int pos, const char *lit, int len) {
    if (pos + len > n) return 0;
    for (int i = 0; i < len; i++)
        if (input[pos + i] != lit[i]) return 0;
    return 1;
}

static int id_char(char c) {
    return (c >= '0' && c <= ':') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           c == '_' || c == '.' || c == '-';
}

int run(void) {
    static char key[64 + 1 + 43];
    static char count[20];
    n = input_len();
    if (n > (int)sizeof(input)) shape();
    input_read(input);

    int p = 0;
    if (!at(p, LIT("{\"action\":\""))) shape();
    p += 11;
    while (p < n && input[p] != '"') p++; /* action names hold no escapes */
    p++;
    if (!at(p, LIT(",\"proposal\":{"))) shape();
    p += 13;
    if (at(p, LIT("\"description\":\""))) {
        p += 15;
        for (;;) {
            if (p >= n) shape();
            char c = input[p++];
            if (c == '"') break;
            if (c == '\\') p++;
        }
        if (p >= n || input[p] != ',') shape();
        p++;
    }
    if (!at(p, LIT("\"id\":\""))) shape();
    p += 6;
    int id = p;
    while (p < n && input[p] != '"') {
        if (!id_char(input[p])) shape();
        p++;
    }
    if (p >= n) shape();
    int id_len = p - id;
    if (id_len == 0 || id_len > 64) shape();
    p++;
    if (!at(p, LIT("}}")) || p + 2 != n) shape();

    memcpy(key, input + id, id_len);
    key[id_len] = '/';
    caller(key + id_len + 1);
    if (get(key, id_len + 44, count, 0) >= 0)
        fail(LIT("tally: this wallet already voted on this proposal"));
    set(key, id_len + 44, count, 0);

    int len = get(key, id_len, count, sizeof count);
    unsigned long long votes = 0;
    for (int i = 0; i < len; i++) votes = votes * 10 + (unsigned long long)(count[i] - '0');
    votes++;
    char digits[20];
    int d = 20;
    do {
        digits[--d] = (char)('0' + votes % 10);
        votes /= 10;
    } while (votes);
    set(key, id_len, digits + d, 20 - d);
    return 0;
}
