/*
 * harness: stands in for Fluent Bit in tests. It loads an output plugin .so
 * the way Fluent Bit's Go proxy does (src/flb_plugin_proxy.c,
 * src/proxy/go/go.c) and reproduces the conditions a plugin meets there:
 *
 *  - signal handlers are installed before the .so (and its Go runtime) loads,
 *    and SIGPIPE is ignored (flb_config_init), again at each hot reload;
 *  - FLBPluginRegister runs on the main thread, Init/flush/exit on an engine
 *    thread, or flushes on worker threads "flb-out-<name>-w<N>" (workers);
 *  - every flush runs inside a coroutine on a small heap stack (24 KiB, as
 *    Fluent Bit on x86-64 before v5.1), with a guard page below it;
 *  - config keys are looked up case-insensitively, first value wins, and the
 *    keys Fluent Bit's core swallows never reach the plugin;
 *  - the chunk buffer is valid only during the call (poisoned after);
 *  - FLB_RETRY re-dispatches the identical bytes, up to the retry limit;
 *  - a hot reload (-R) exits every instance, unregisters the plugin, then
 *    registers it and starts the instances again in the same process.
 *
 * Reports go to stderr ("harness: ..."); stdout belongs to the plugin.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#define FLB_ERROR 0
#define FLB_OK    1
#define FLB_RETRY 2

/* The structures Fluent Bit shares with Go plugins (fluent-bit-go's view). */
struct flb_plugin_proxy_def {
    int type;
    int proxy;
    int flags;
    char *name;
    char *description;
};

struct flb_api {
    char *(*output_get_property)(char *, void *);
    char *(*input_get_property)(char *, void *);
};

struct flb_plugin_proxy_context {
    void *remote_context;
};

struct flbgo_output_plugin {
    void *_;
    struct flb_api *api;
    void *o_ins;
    struct flb_plugin_proxy_context *context;
};

typedef int (*register_fn)(struct flb_plugin_proxy_def *);
typedef int (*init_fn)(void *);
typedef int (*flush_ctx_fn)(void *, void *, int, char *);
typedef int (*flush_fn)(void *, int, char *);
typedef int (*exit_ctx_fn)(void *);
typedef int (*exit_fn)(void);
typedef void (*unregister_fn)(struct flb_plugin_proxy_def *);

struct prop {
    char *key;
    char *val;
};

struct instance {
    int id;
    struct prop *props;
    int nprops;
    struct flbgo_output_plugin plugin;
    struct flb_plugin_proxy_context proxy_ctx;
    /* work queue for this instance's workers */
    int *jobs;
    int njobs;
    int next_job;
    pthread_mutex_t lock;
};

struct flush {
    int inst;
    char *tag;
    unsigned char *data;
    size_t len;
    char *path; /* -F: read at each dispatch and freed after, not held */
};

static struct {
    const char *so_path;
    int ninst;
    struct instance *inst;
    struct flush *flushes;
    int nflushes;
    int loops;
    int retries;
    int retry_wait_ms;
    int pause_ms; /* before each dispatch: lets tests change the world between flushes */
    int linger_ms; /* after the last flush, before exit: the plugin's own goroutines run on */
    int workers;
    size_t stack_size;
    int quiet;
    int reloads;
    int kill_after; /* -K n: SIGKILL once the n-th flush call returned, before Fluent Bit would take its answer */

    register_fn cb_register;
    init_fn cb_init;
    flush_ctx_fn cb_flush_ctx;
    flush_fn cb_flush;
    exit_ctx_fn cb_exit_ctx;
    exit_fn cb_exit;
    unregister_fn cb_unregister;

    pthread_mutex_t stats_lock;
    long n_flushes, n_ok, n_retry, n_error, n_dropped;
    double flush_ns; /* time spent inside the plugin's flush calls */
    int init_failed;
} H = {.ninst = 1, .loops = 1, .retries = 1, .stack_size = 24576};

static volatile sig_atomic_t stop_requested;

static void on_stop_signal(int sig)
{
    (void) sig;
    stop_requested = 1;
}

static void on_crash_signal(int sig)
{
    /* async-signal-safe: write(2) only, then die as Fluent Bit would */
    char msg[] = "harness: caught fatal signal XX\n";
    msg[29] = '0' + (sig / 10) % 10;
    msg[30] = '0' + sig % 10;
    ssize_t ignored = write(2, msg, sizeof(msg) - 1);
    (void) ignored;
    signal(sig, SIG_DFL);
    raise(sig);
}

/* flb_config_init ignores SIGPIPE, before the plugin loads and again when a
 * hot reload makes a new context: a write to a closed pipe or socket fails
 * with EPIPE instead of killing Fluent Bit. The Go runtime of the .so
 * installs its own SIGPIPE handler over it when it loads. */
static void ignore_sigpipe(void)
{
    signal(SIGPIPE, SIG_IGN);
}

/* Like flb_signal_init: plain handlers, installed before the plugin loads. */
static void install_signals(void)
{
    signal(SIGINT, on_stop_signal);
    signal(SIGTERM, on_stop_signal);
    signal(SIGQUIT, on_stop_signal);
    signal(SIGHUP, on_stop_signal);
    signal(SIGSEGV, on_crash_signal);
    signal(SIGFPE, on_crash_signal);
    ignore_sigpipe();
}

static void die(int code, const char *fmt, const char *arg)
{
    fprintf(stderr, "harness: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    exit(code);
}

static void usage(void)
{
    fprintf(stderr,
            "usage: harness [options] PLUGIN.so\n"
            "  -i N            number of instances (default 1)\n"
            "  -s N:KEY=VALUE  property for instance N (repeatable; first value of a key wins)\n"
            "  -f N:TAG:FILE   flush FILE as one chunk to instance N with TAG (repeatable, in order)\n"
            "  -F N:TAG:FILE   like -f, but FILE is read when it is flushed and freed after\n"
            "  -R N            hot reloads: after the run, exit, unregister, register and run again, N times\n"
            "  -l K            repeat the list of flushes K times (default 1)\n"
            "  -r N            retry limit (default 1)\n"
            "  -d MS           wait between retries in ms (default 0)\n"
            "  -p MS           pause before each flush in ms (default 0)\n"
            "  -W MS           wait after the last flush, before exit, in ms (default 0)\n"
            "  -w N            worker threads per instance (default 0: engine thread)\n"
            "  -k BYTES        coroutine stack size (default 24576)\n"
            "  -K N            SIGKILL itself once the N-th flush call returned, before taking its answer\n"
            "  -q              no per-flush lines\n");
    exit(2);
}

/* Keys Fluent Bit's core consumes for every output; a plugin never sees them. */
static int is_core_key(const char *k)
{
    static const char *exact[] = {"match", "match_regex", "alias", "log_level", "host", "port",
                                  "ipv6", "retry_limit", "workers", "tls", NULL};
    static const char *prefix[] = {"net.", "tls.", "storage.", "oauth2", NULL};
    for (int i = 0; exact[i]; i++) {
        if (strcasecmp(k, exact[i]) == 0) {
            return 1;
        }
    }
    for (int i = 0; prefix[i]; i++) {
        if (strncasecmp(k, prefix[i], strlen(prefix[i])) == 0) {
            return 1;
        }
    }
    return 0;
}

/* flb_output_get_property: case-insensitive, first match, NULL when unset. */
static char *get_property(char *key, void *o_ins)
{
    struct instance *in = o_ins;
    for (int i = 0; i < in->nprops; i++) {
        if (strcasecmp(in->props[i].key, key) == 0) {
            return in->props[i].val;
        }
    }
    return NULL;
}

static char *no_input_property(char *key, void *i_ins)
{
    (void) key;
    (void) i_ins;
    return NULL;
}

static struct flb_api api = {get_property, no_input_property};

static int parse_instance(const char *s, const char **rest)
{
    char *end;
    long n = strtol(s, &end, 10);
    if (end == s || *end != ':' || n < 0) {
        return -1;
    }
    *rest = end + 1;
    return (int) n;
}

static unsigned char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        die(2, "cannot open chunk %s", path);
    }
    size_t cap = 1 << 16, n = 0;
    unsigned char *buf = malloc(cap);
    size_t r;
    while (buf && (r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
    }
    fclose(f);
    if (!buf) {
        die(2, "out of memory reading %s", path);
    }
    *len = n;
    return buf;
}

/* ---- coroutines ------------------------------------------------------- */

struct coro {
    ucontext_t caller;
    ucontext_t callee;
    void *map;
    size_t map_len;
    struct instance *in;
    const struct flush *fl;
    unsigned char *buf;
    int rc;
};

static __thread struct coro *current;

static double now_ns(void);

static void coro_main(void)
{
    struct coro *co = current;
    double start = now_ns();
    if (H.cb_flush_ctx) {
        co->rc = H.cb_flush_ctx(co->in->proxy_ctx.remote_context, co->buf, (int) co->fl->len, co->fl->tag);
    }
    else {
        co->rc = H.cb_flush(co->buf, (int) co->fl->len, co->fl->tag);
    }
    double spent = now_ns() - start;
    pthread_mutex_lock(&H.stats_lock);
    H.flush_ns += spent;
    pthread_mutex_unlock(&H.stats_lock);
    /* returning resumes uc_link, the caller */
}

/* Runs one flush call on a fresh small stack, as Fluent Bit's flb_coro does. */
static int flush_in_coroutine(struct instance *in, const struct flush *fl)
{
    long page = sysconf(_SC_PAGESIZE);
    struct coro co = {.in = in, .fl = fl};
    size_t stack = (H.stack_size + page - 1) / page * page;

    co.map_len = stack + page;
    co.map = mmap(NULL, co.map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (co.map == MAP_FAILED) {
        die(2, "mmap coroutine stack: %s", strerror(errno));
    }
    /* guard page below the stack: an overflow faults instead of corrupting */
    mprotect(co.map, page, PROT_NONE);

    /* a private copy, valid only for the call, like a Fluent Bit chunk */
    co.buf = malloc(fl->len ? fl->len : 1);
    if (!co.buf) {
        die(2, "%s", "out of memory");
    }
    memcpy(co.buf, fl->data, fl->len);

    getcontext(&co.callee);
    co.callee.uc_stack.ss_sp = (char *) co.map + page;
    co.callee.uc_stack.ss_size = stack;
    co.callee.uc_link = &co.caller;
    makecontext(&co.callee, coro_main, 0);
    current = &co;
    swapcontext(&co.caller, &co.callee);
    current = NULL;

    memset(co.buf, 0xA5, fl->len); /* poison: the plugin must not keep it */
    free(co.buf);
    munmap(co.map, co.map_len);
    return co.rc;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long) (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

/* One chunk: dispatch, and re-dispatch the same bytes on RETRY. */
static void dispatch(struct instance *in, const struct flush *stored)
{
    int attempt = 1;
    int rc;
    struct flush loaded = *stored;
    const struct flush *fl = stored;
    if (stored->path) {
        loaded.data = read_file(stored->path, &loaded.len);
        fl = &loaded;
    }
    for (;;) {
        rc = flush_in_coroutine(in, fl);
        if (H.kill_after > 0 && __atomic_add_fetch(&H.kill_after, -1, __ATOMIC_SEQ_CST) == 0) {
            /* a crash between the plugin's answer and the engine's:
               the chunk is delivered again after a restart */
            kill(getpid(), SIGKILL);
        }
        if (!H.quiet) {
            fprintf(stderr, "harness: flush instance=%d tag=%s bytes=%zu attempt=%d rc=%d\n",
                    in->id, fl->tag, fl->len, attempt, rc);
        }
        pthread_mutex_lock(&H.stats_lock);
        if (rc == FLB_OK) {
            H.n_ok++;
        }
        else if (rc == FLB_RETRY) {
            H.n_retry++;
        }
        else {
            H.n_error++;
        }
        pthread_mutex_unlock(&H.stats_lock);
        if (rc != FLB_RETRY || attempt > H.retries || stop_requested) {
            break;
        }
        attempt++;
        sleep_ms(H.retry_wait_ms);
    }
    pthread_mutex_lock(&H.stats_lock);
    H.n_flushes++;
    if (rc != FLB_OK) {
        H.n_dropped++;
    }
    pthread_mutex_unlock(&H.stats_lock);
    if (stored->path) {
        free(loaded.data);
    }
}

struct worker_arg {
    struct instance *in;
    int n;
};

static void *worker_main(void *p)
{
    struct worker_arg *w = p;
    /* Fluent Bit names them flb-out-<name>-w<N>; Linux keeps 15 bytes of a name */
    char name[16];
    snprintf(name, sizeof(name), "flb-out-ctq-w%d", w->n);
    pthread_setname_np(pthread_self(), name);
    for (;;) {
        pthread_mutex_lock(&w->in->lock);
        int j = w->in->next_job < w->in->njobs ? w->in->jobs[w->in->next_job++] : -1;
        pthread_mutex_unlock(&w->in->lock);
        if (j < 0 || stop_requested) {
            break;
        }
        dispatch(w->in, &H.flushes[j % H.nflushes]);
    }
    return NULL;
}

static void run_flushes(void)
{
    int total = H.nflushes * H.loops;
    if (H.workers == 0) {
        for (int j = 0; j < total && !stop_requested; j++) {
            const struct flush *fl = &H.flushes[j % H.nflushes];
            sleep_ms(H.pause_ms);
            dispatch(&H.inst[fl->inst], fl);
        }
        return;
    }
    /* each instance gets its own queue and its own worker threads */
    for (int i = 0; i < H.ninst; i++) {
        struct instance *in = &H.inst[i];
        free(in->jobs);
        in->jobs = calloc(total + 1, sizeof(int));
        in->njobs = in->next_job = 0;
        for (int j = 0; j < total; j++) {
            if (H.flushes[j % H.nflushes].inst == i) {
                in->jobs[in->njobs++] = j;
            }
        }
    }
    int nthreads = H.ninst * H.workers;
    pthread_t *th = calloc(nthreads, sizeof(pthread_t));
    struct worker_arg *args = calloc(nthreads, sizeof(struct worker_arg));
    for (int t = 0; t < nthreads; t++) {
        args[t].in = &H.inst[t / H.workers];
        args[t].n = t % H.workers;
        pthread_create(&th[t], NULL, worker_main, &args[t]);
    }
    for (int t = 0; t < nthreads; t++) {
        pthread_join(th[t], NULL);
    }
    free(th);
    free(args);
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec * 1e9 + (double) ts.tv_nsec;
}

static void *engine_main(void *p)
{
    (void) p;
    pthread_setname_np(pthread_self(), "flb-pipeline");
    for (int i = 0; i < H.ninst; i++) {
        struct instance *in = &H.inst[i];
        in->plugin.api = &api;
        in->plugin.o_ins = in;
        in->plugin.context = &in->proxy_ctx;
        in->proxy_ctx.remote_context = NULL; /* a new context at each (re)start */
        int rc = H.cb_init(&in->plugin);
        if (rc <= 0 || in->proxy_ctx.remote_context == NULL) {
            fprintf(stderr, "harness: init instance=%d rc=%d failed%s\n", i, rc,
                    rc > 0 ? " (no context set)" : "");
            H.init_failed = 1;
            return NULL;
        }
    }
    double start = now_ns();
    run_flushes();
    /* linger, but stop at SIGTERM as Fluent Bit would */
    for (int waited = 0; waited < H.linger_ms && !stop_requested; waited += 20) {
        sleep_ms(20);
    }
    double elapsed = now_ns() - start;
    for (int i = 0; i < H.ninst; i++) {
        if (H.cb_exit_ctx) {
            H.cb_exit_ctx(H.inst[i].proxy_ctx.remote_context);
        }
    }
    if (H.cb_exit) {
        H.cb_exit();
    }
    fprintf(stderr, "harness: summary flushes=%ld ok=%ld retry=%ld error=%ld dropped=%ld elapsed_ns=%.0f flush_ns=%.0f\n",
            H.n_flushes, H.n_ok, H.n_retry, H.n_error, H.n_dropped, elapsed, H.flush_ns);
    return NULL;
}

/* The process's peak resident memory since its execve, from /proc. */
static long peak_rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof(line), f)) {
        if (sscanf(line, "VmHWM: %ld kB", &kb) == 1) {
            break;
        }
    }
    if (f) {
        fclose(f);
    }
    return kb;
}

static void *need_symbol(void *so, const char *name)
{
    void *sym = dlsym(so, name);
    if (!sym) {
        die(2, "plugin lacks required symbol %s", name);
    }
    return sym;
}

int main(int argc, char **argv)
{
    int opt;
    struct { int inst; char *kv; } *sets = calloc(argc, sizeof(*sets));
    int nsets = 0;
    H.flushes = calloc(argc, sizeof(struct flush));

    while ((opt = getopt(argc, argv, "i:s:f:F:l:r:d:p:W:w:k:qR:K:")) != -1) {
        const char *rest;
        switch (opt) {
        case 'i': H.ninst = atoi(optarg); break;
        case 'l': H.loops = atoi(optarg); break;
        case 'r': H.retries = atoi(optarg); break;
        case 'd': H.retry_wait_ms = atoi(optarg); break;
        case 'p': H.pause_ms = atoi(optarg); break;
        case 'W': H.linger_ms = atoi(optarg); break;
        case 'w': H.workers = atoi(optarg); break;
        case 'k': H.stack_size = (size_t) atol(optarg); break;
        case 'q': H.quiet = 1; break;
        case 'R': H.reloads = atoi(optarg); break;
        case 'K': H.kill_after = atoi(optarg); break;
        case 's': {
            int n = parse_instance(optarg, &rest);
            if (n < 0 || !strchr(rest, '=')) {
                usage();
            }
            sets[nsets].inst = n;
            sets[nsets++].kv = strdup(rest);
            break;
        }
        case 'f':
        case 'F': {
            int n = parse_instance(optarg, &rest);
            const char *colon = n < 0 ? NULL : strchr(rest, ':');
            if (!colon) {
                usage();
            }
            struct flush *fl = &H.flushes[H.nflushes++];
            fl->inst = n;
            fl->tag = strndup(rest, colon - rest);
            if (opt == 'F') {
                fl->path = strdup(colon + 1);
            }
            else {
                fl->data = read_file(colon + 1, &fl->len);
            }
            break;
        }
        default: usage();
        }
    }
    if (optind != argc - 1 || H.ninst < 1 || H.loops < 1 || H.retries < 0 || H.workers < 0 || H.stack_size < 4096 || H.reloads < 0) {
        usage();
    }
    H.so_path = argv[optind];
    H.inst = calloc(H.ninst, sizeof(struct instance));
    for (int i = 0; i < H.ninst; i++) {
        H.inst[i].id = i;
        H.inst[i].props = calloc(nsets + 1, sizeof(struct prop));
        pthread_mutex_init(&H.inst[i].lock, NULL);
    }
    for (int s = 0; s < nsets; s++) {
        if (sets[s].inst >= H.ninst) {
            die(2, "property for a missing instance: %s", sets[s].kv);
        }
        char *eq = strchr(sets[s].kv, '=');
        *eq = '\0';
        if (is_core_key(sets[s].kv)) {
            fprintf(stderr, "harness: core key %s not passed to plugin\n", sets[s].kv);
            continue;
        }
        struct instance *in = &H.inst[sets[s].inst];
        in->props[in->nprops].key = sets[s].kv;
        in->props[in->nprops++].val = eq + 1;
    }
    for (int f = 0; f < H.nflushes; f++) {
        if (H.flushes[f].inst >= H.ninst) {
            die(2, "flush for a missing instance: %s", H.flushes[f].tag);
        }
    }
    pthread_mutex_init(&H.stats_lock, NULL);

    install_signals();
    void *so = dlopen(H.so_path, RTLD_LAZY);
    if (!so) {
        die(2, "dlopen: %s", dlerror());
    }
    H.cb_register = (register_fn) need_symbol(so, "FLBPluginRegister");
    H.cb_init = (init_fn) need_symbol(so, "FLBPluginInit");
    H.cb_flush_ctx = (flush_ctx_fn) dlsym(so, "FLBPluginFlushCtx");
    H.cb_flush = (flush_fn) dlsym(so, "FLBPluginFlush");
    H.cb_exit_ctx = (exit_ctx_fn) dlsym(so, "FLBPluginExitCtx");
    H.cb_exit = (exit_fn) dlsym(so, "FLBPluginExit");
    H.cb_unregister = (unregister_fn) dlsym(so, "FLBPluginUnregister");
    if (!H.cb_flush_ctx && !H.cb_flush) {
        die(2, "%s", "plugin has neither FLBPluginFlushCtx nor FLBPluginFlush");
    }

    for (int run = 0; run <= H.reloads; run++) {
        if (run > 0) {
            /* flb_reload: the old context is gone, a new one is made */
            fprintf(stderr, "harness: hot reload %d\n", run);
            ignore_sigpipe();
        }
        struct flb_plugin_proxy_def def = {0};
        int rc = H.cb_register(&def);
        if (rc != 0 || def.type != 2 || def.proxy != 11 || !def.name) {
            fprintf(stderr, "harness: register failed rc=%d type=%d proxy=%d\n", rc, def.type, def.proxy);
            return 2;
        }
        fprintf(stderr, "harness: registered name=%s description=%s\n", def.name, def.description ? def.description : "");

        pthread_t engine;
        pthread_create(&engine, NULL, engine_main, NULL);
        pthread_join(engine, NULL);
        if (H.init_failed) {
            return 1;
        }
        if (H.cb_unregister) {
            H.cb_unregister(&def);
        }
        if (stop_requested) {
            break;
        }
    }
    /* VmHWM, not getrusage's ru_maxrss: Linux keeps ru_maxrss across
     * execve, so a harness started by a big test process would report the
     * parent's peak as its own. */
    fprintf(stderr, "harness: maxrss_kb=%ld\n", peak_rss_kb());
    /* no dlclose: a Go runtime cannot be unloaded, and Fluent Bit does not try */
    return 0;
}
