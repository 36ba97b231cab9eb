package calm.search;

import java.io.IOException;
import java.io.OutputStream;
import java.lang.management.GarbageCollectorMXBean;
import java.lang.management.ManagementFactory;
import java.lang.management.MemoryUsage;
import java.net.InetSocketAddress;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;

/**
 * A small Lucene search service for calm's profiles: the slides' experiment (a JVM search engine
 * under Poisson queries with a 1 s SLA) on a corpus generated from a fixed seed.
 *
 * Start-up: generate and index the corpus, write the query log if asked, start the HTTP server, and
 * only then announce readiness (the ready file, written atomically, and a "ready" line on stdout),
 * so a caller waits on that handshake instead of sleeping.
 *
 * HTTP (the JDK's built-in server): GET /search?q=WORDS[&amp;n=10] answers the top n hits as JSON
 * (id, url, title, score, highlighted snippet); GET /doc?id=N the stored document (Nutch's "cached"
 * page); GET /stats the index, re-index, heap and GC counters; GET /health "ok". Logs go to stderr.
 *
 * Options are `--name value`; bad ones get one line on stderr and exit status 2.
 */
public final class SearchService {
    private static final Map<String, String> DEFAULTS = new LinkedHashMap<>();

    static {
        DEFAULTS.put("host", "127.0.0.1");
        DEFAULTS.put("port", "0");
        DEFAULTS.put("docs", "200000");
        DEFAULTS.put("doc-bytes", "3000");
        DEFAULTS.put("vocabulary", "50000");
        DEFAULTS.put("zipf", "1.07");
        DEFAULTS.put("seed", "1");
        DEFAULTS.put("index-dir", "");
        DEFAULTS.put("index-threads", "0");
        DEFAULTS.put("ram-buffer-mb", "32");
        DEFAULTS.put("threads", "8");
        DEFAULTS.put("results", "10");
        DEFAULTS.put("reindex-interval", "10");
        DEFAULTS.put("reindex-docs", "0");
        DEFAULTS.put("ready-file", "");
        DEFAULTS.put("query-log", "");
        DEFAULTS.put("queries", "2000");
    }

    private final Map<String, String> opt;
    private final SearchIndex index;
    private final long started = System.nanoTime();

    private SearchService(Map<String, String> opt, SearchIndex index) {
        this.opt = opt;
        this.index = index;
    }

    public static void main(String[] args) throws Exception {
        Map<String, String> opt;
        int docs, docBytes, vocabulary, port, threads, results, reindexDocs, indexThreads, queries;
        double zipf, reindexInterval, ramBuffer;
        long seed;
        try {
            opt = parse(args);
            docs = positive(opt, "docs");
            docBytes = positive(opt, "doc-bytes");
            vocabulary = positive(opt, "vocabulary");
            if (vocabulary <= Corpus.QUERY_MIN_RANK) {
                throw new IllegalArgumentException("--vocabulary must be above " + Corpus.QUERY_MIN_RANK);
            }
            zipf = number(opt, "zipf", 0.0);
            seed = Long.parseLong(opt.get("seed"));
            port = integer(opt, "port", 0, 65535);
            threads = positive(opt, "threads");
            results = positive(opt, "results");
            indexThreads = integer(opt, "index-threads", 0, 256);
            ramBuffer = number(opt, "ram-buffer-mb", 1.0);
            reindexInterval = number(opt, "reindex-interval", 0.0);
            reindexDocs = integer(opt, "reindex-docs", 0, Integer.MAX_VALUE);
            queries = integer(opt, "queries", 0, Integer.MAX_VALUE);
            if (opt.get("index-dir").isEmpty()) {
                throw new IllegalArgumentException("--index-dir is required (an empty directory for the index)");
            }
        } catch (IllegalArgumentException e) {
            System.err.println("search-service: error: " + e.getMessage());
            System.exit(2);
            return;
        }
        if (indexThreads == 0) indexThreads = Runtime.getRuntime().availableProcessors();
        if (reindexDocs == 0) reindexDocs = Math.max(1, docs / 500); // 0.2%: a crawler refreshing ~1%/min

        Corpus corpus = new Corpus(seed, docs, docBytes, vocabulary, zipf);
        Path dir = Path.of(opt.get("index-dir"));
        Files.createDirectories(dir);
        SearchIndex index = new SearchIndex(corpus, dir, ramBuffer);
        log("indexing %d documents of ~%d bytes (vocabulary %d, seed %d) with %d threads into %s",
            docs, docBytes, vocabulary, seed, indexThreads, dir);
        double buildSeconds = index.build(indexThreads);
        log("indexed in %.1f s, %d bytes on disk", buildSeconds, index.indexBytes());
        if (!opt.get("query-log").isEmpty()) {
            corpus.writeQueryLog(Path.of(opt.get("query-log")), queries, seed + 1000);
        }
        SearchService service = new SearchService(opt, index);
        HttpServer server = HttpServer.create(new InetSocketAddress(opt.get("host"), port), 1024);
        ExecutorService pool = Executors.newFixedThreadPool(threads, r -> {
            Thread t = new Thread(r, "http");
            t.setDaemon(true);
            return t;
        });
        server.setExecutor(pool);
        final int n = results;
        server.createContext("/search", ex -> service.handle(ex, () -> service.search(ex, n)));
        server.createContext("/doc", ex -> service.handle(ex, () -> service.doc(ex)));
        server.createContext("/stats", ex -> service.handle(ex, service::stats));
        server.createContext("/health", ex -> service.handle(ex, () -> new Reply(200, "text/plain", "ok\n")));
        server.start();

        ScheduledExecutorService reindexer = Executors.newSingleThreadScheduledExecutor(r -> {
            Thread t = new Thread(r, "reindexer");
            t.setDaemon(true);
            return t;
        });
        if (reindexInterval > 0) {
            final int slice = reindexDocs;
            long period = (long) (reindexInterval * 1e9);
            reindexer.scheduleWithFixedDelay(() -> {
                try {
                    index.reindexSlice(slice);
                } catch (Throwable e) {
                    log("re-index failed: %s", e);
                }
            }, period, period, TimeUnit.NANOSECONDS);
        }
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            server.stop(0);
            reindexer.shutdown(); // no interrupt: an interrupted Lucene write closes its file channel
            try {
                reindexer.awaitTermination(10, TimeUnit.SECONDS);
                index.close();
            } catch (Exception e) {
                log("close: %s", e);
            }
        }, "shutdown"));

        int actualPort = server.getAddress().getPort();
        Map<String, Object> ready = new LinkedHashMap<>();
        ready.put("pid", ProcessHandle.current().pid());
        ready.put("host", opt.get("host"));
        ready.put("port", actualPort);
        ready.put("docs", docs);
        ready.put("doc_bytes", docBytes);
        ready.put("seed", seed);
        ready.put("build_seconds", buildSeconds);
        ready.put("index_bytes", index.indexBytes());
        ready.put("reindex_interval_s", reindexInterval);
        ready.put("reindex_docs", reindexDocs);
        ready.put("query_log", opt.get("query-log"));
        ready.put("queries", opt.get("query-log").isEmpty() ? 0 : queries);
        ready.put("heap", heap());
        ready.put("gc", gcNames());
        if (!opt.get("ready-file").isEmpty()) {
            Path file = Path.of(opt.get("ready-file"));
            Path tmp = file.resolveSibling(file.getFileName() + ".tmp");
            Files.writeString(tmp, Json.write(ready) + "\n");
            Files.move(tmp, file, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        }
        log("serving http://%s:%d/search?q=... with %d threads", opt.get("host"), actualPort, threads);
        System.out.println("ready " + Json.write(ready));
        System.out.flush();
        Thread.currentThread().join(); // serve until SIGTERM (the shutdown hook closes everything)
    }

    /** What a handler answers: status, content type, body. */
    record Reply(int status, String type, String body) {}

    interface Handler {
        Reply run() throws Exception;
    }

    private void handle(HttpExchange ex, Handler h) throws IOException {
        Reply reply;
        try {
            if (!"GET".equals(ex.getRequestMethod())) {
                reply = new Reply(405, "text/plain", "only GET\n");
            } else {
                reply = h.run();
            }
        } catch (SearchIndex.BadQuery e) {
            reply = new Reply(400, "application/json", Json.write(Map.of("error", e.getMessage())) + "\n");
        } catch (Exception e) {
            log("%s %s: %s", ex.getRequestMethod(), ex.getRequestURI(), e);
            reply = new Reply(500, "application/json", Json.write(Map.of("error", String.valueOf(e))) + "\n");
        }
        byte[] body = reply.body().getBytes(StandardCharsets.UTF_8);
        ex.getResponseHeaders().set("Content-Type", reply.type() + "; charset=utf-8");
        ex.sendResponseHeaders(reply.status(), body.length);
        try (OutputStream out = ex.getResponseBody()) {
            out.write(body);
        }
    }

    private Reply search(HttpExchange ex, int defaultResults) throws Exception {
        Map<String, String> params = query(ex.getRequestURI().getRawQuery());
        String q = params.getOrDefault("q", "").strip();
        if (q.isEmpty()) throw new SearchIndex.BadQuery("give a query: /search?q=WORDS");
        int n = defaultResults;
        if (params.containsKey("n")) {
            try {
                n = Integer.parseInt(params.get("n"));
            } catch (NumberFormatException e) {
                throw new SearchIndex.BadQuery("n must be a whole number");
            }
            if (n < 1 || n > 1000) throw new SearchIndex.BadQuery("n must be between 1 and 1000");
        }
        long t0 = System.nanoTime();
        SearchIndex.Result r = index.search(q, n);
        List<Object> hits = new ArrayList<>();
        for (SearchIndex.Hit h : r.hits()) {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("id", h.id());
            m.put("url", h.url());
            m.put("title", h.title());
            m.put("score", h.score());
            m.put("snippet", h.snippet());
            hits.add(m);
        }
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("query", q);
        out.put("total_hits", r.totalHits());
        out.put("total_exact", r.totalExact());
        out.put("took_ms", (System.nanoTime() - t0) / 1e6);
        out.put("hits", hits);
        return new Reply(200, "application/json", Json.write(out) + "\n");
    }

    private Reply doc(HttpExchange ex) throws Exception {
        String id = query(ex.getRequestURI().getRawQuery()).getOrDefault("id", "");
        Map<String, Object> d = index.document(id);
        if (d == null) {
            return new Reply(404, "application/json", Json.write(Map.of("error", "no document '" + id + "'")) + "\n");
        }
        return new Reply(200, "application/json", Json.write(d) + "\n");
    }

    private Reply stats() throws IOException {
        Map<String, Object> out = new LinkedHashMap<>(index.stats());
        out.put("uptime_s", (System.nanoTime() - started) / 1e9);
        out.put("heap", heap());
        List<Object> gcs = new ArrayList<>();
        for (GarbageCollectorMXBean gc : ManagementFactory.getGarbageCollectorMXBeans()) {
            gcs.add(Map.of("name", gc.getName(), "count", gc.getCollectionCount(), "time_ms", gc.getCollectionTime()));
        }
        out.put("gc", gcs);
        return new Reply(200, "application/json", Json.write(out) + "\n");
    }

    private static Map<String, Object> heap() {
        MemoryUsage h = ManagementFactory.getMemoryMXBean().getHeapMemoryUsage();
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("used", h.getUsed());
        m.put("committed", h.getCommitted());
        m.put("max", h.getMax());
        return m;
    }

    private static List<Object> gcNames() {
        List<Object> names = new ArrayList<>();
        for (GarbageCollectorMXBean gc : ManagementFactory.getGarbageCollectorMXBeans()) names.add(gc.getName());
        return names;
    }

    static Map<String, String> query(String raw) {
        Map<String, String> out = new HashMap<>();
        if (raw == null) return out;
        for (String pair : raw.split("&")) {
            int eq = pair.indexOf('=');
            String k = eq < 0 ? pair : pair.substring(0, eq);
            String v = eq < 0 ? "" : pair.substring(eq + 1);
            try {
                out.put(URLDecoder.decode(k, StandardCharsets.UTF_8), URLDecoder.decode(v, StandardCharsets.UTF_8));
            } catch (IllegalArgumentException e) {
                out.put(k, v);
            }
        }
        return out;
    }

    static Map<String, String> parse(String[] args) {
        Map<String, String> opt = new LinkedHashMap<>(DEFAULTS);
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            if (!a.startsWith("--") || !DEFAULTS.containsKey(a.substring(2))) {
                throw new IllegalArgumentException("unknown option '" + a + "' (options: --"
                    + String.join(", --", DEFAULTS.keySet()) + ")");
            }
            if (i + 1 >= args.length) throw new IllegalArgumentException(a + " needs a value");
            opt.put(a.substring(2), args[++i]);
        }
        return opt;
    }

    private static int positive(Map<String, String> opt, String name) {
        return integer(opt, name, 1, Integer.MAX_VALUE);
    }

    private static int integer(Map<String, String> opt, String name, int min, int max) {
        String v = opt.get(name);
        int x;
        try {
            x = Integer.parseInt(v);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("--" + name + " '" + v + "' is not a whole number");
        }
        if (x < min || x > max) {
            throw new IllegalArgumentException("--" + name + " must be between " + min + " and " + max + ", not " + v);
        }
        return x;
    }

    private static double number(Map<String, String> opt, String name, double min) {
        String v = opt.get(name);
        double x;
        try {
            x = Double.parseDouble(v);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("--" + name + " '" + v + "' is not a number");
        }
        if (!(x >= min) || Double.isInfinite(x)) {
            throw new IllegalArgumentException("--" + name + " must be at least " + min + ", not " + v);
        }
        return x;
    }

    static void log(String fmt, Object... args) {
        System.err.printf("search-service: " + fmt + "%n", args);
    }
}
