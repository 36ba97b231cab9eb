package calm.search;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLong;
import java.util.stream.Stream;

import org.apache.lucene.analysis.Analyzer;
import org.apache.lucene.analysis.standard.StandardAnalyzer;
import org.apache.lucene.document.Document;
import org.apache.lucene.document.Field;
import org.apache.lucene.document.StoredField;
import org.apache.lucene.document.StringField;
import org.apache.lucene.document.TextField;
import org.apache.lucene.index.IndexWriter;
import org.apache.lucene.index.IndexWriterConfig;
import org.apache.lucene.index.Term;
import org.apache.lucene.queryparser.classic.MultiFieldQueryParser;
import org.apache.lucene.queryparser.classic.ParseException;
import org.apache.lucene.queryparser.classic.QueryParser;
import org.apache.lucene.search.IndexSearcher;
import org.apache.lucene.search.Query;
import org.apache.lucene.search.ScoreDoc;
import org.apache.lucene.search.SearcherManager;
import org.apache.lucene.search.TermQuery;
import org.apache.lucene.search.TopDocs;
import org.apache.lucene.search.uhighlight.UnifiedHighlighter;
import org.apache.lucene.store.FSDirectory;

/**
 * The Lucene side: builds the index of the whole corpus on disk, answers ranked keyword queries
 * with highlighted snippets, and re-indexes slices of documents while it serves.
 *
 * Why on disk (FSDirectory, memory-mapped by Lucene) rather than in the Java heap: that is how
 * Nutch and Solr run, so the heap holds what a search server's heap holds (the indexing buffer,
 * query-time objects, caches) and the index files live in the page cache, as file mappings.
 *
 * Re-indexing replaces a rolling window of documents with their next version (a crawler re-fetching
 * changed pages), then publishes a near-real-time reader and commits: segments are written, merged
 * in the background, and readers reopened, so the heap and the index keep changing under load.
 */
final class SearchIndex implements AutoCloseable {
    private static final String[] FIELDS = {"title", "body"};
    private static final Map<String, Float> BOOSTS = Map.of("title", 2.0f, "body", 1.0f);

    private final Corpus corpus;
    private final Path dir;
    private final Analyzer analyzer = new StandardAnalyzer();
    private final FSDirectory directory;
    private final IndexWriter writer;
    private final SearcherManager searchers;
    private final int[] versions;
    private int cursor;
    final AtomicLong reindexRounds = new AtomicLong();
    final AtomicLong reindexedDocs = new AtomicLong();
    volatile double lastReindexSeconds;

    SearchIndex(Corpus corpus, Path dir, double ramBufferMb) throws IOException {
        this.corpus = corpus;
        this.dir = dir;
        this.directory = FSDirectory.open(dir);
        IndexWriterConfig cfg = new IndexWriterConfig(analyzer)
            .setOpenMode(IndexWriterConfig.OpenMode.CREATE)
            .setRAMBufferSizeMB(ramBufferMb);
        this.writer = new IndexWriter(directory, cfg);
        this.searchers = new SearcherManager(writer, null);
        this.versions = new int[corpus.docs];
    }

    /** Indexes every document at version 0 with `threads` threads; returns the seconds it took. */
    double build(int threads) throws IOException, InterruptedException {
        long t0 = System.nanoTime();
        List<Thread> workers = new ArrayList<>();
        IOException[] failure = new IOException[1];
        for (int t = 0; t < threads; t++) {
            final int first = t;
            Thread w = new Thread(() -> {
                try {
                    for (int id = first; id < corpus.docs; id += threads) {
                        writer.addDocument(document(corpus.doc(id, 0)));
                    }
                } catch (IOException e) {
                    synchronized (failure) {
                        failure[0] = e;
                    }
                }
            }, "indexer-" + t);
            w.start();
            workers.add(w);
        }
        for (Thread w : workers) w.join();
        if (failure[0] != null) throw failure[0];
        writer.commit();
        searchers.maybeRefreshBlocking();
        return (System.nanoTime() - t0) / 1e9;
    }

    private static Document document(Corpus.Doc d) {
        Document doc = new Document();
        doc.add(new StringField("id", Integer.toString(d.id()), Field.Store.YES));
        doc.add(new StoredField("url", d.url()));
        doc.add(new StoredField("version", d.version()));
        doc.add(new TextField("title", d.title(), Field.Store.YES));
        doc.add(new TextField("body", d.body(), Field.Store.YES));
        return doc;
    }

    /** Replaces the next `count` documents (wrapping around) with their next version. */
    void reindexSlice(int count) throws IOException {
        long t0 = System.nanoTime();
        for (int k = 0; k < count; k++) {
            int id;
            int version;
            synchronized (this) {
                id = cursor;
                cursor = (cursor + 1) % corpus.docs;
                version = ++versions[id];
            }
            writer.updateDocument(new Term("id", Integer.toString(id)), document(corpus.doc(id, version)));
        }
        searchers.maybeRefreshBlocking();
        writer.commit();
        reindexRounds.incrementAndGet();
        reindexedDocs.addAndGet(count);
        lastReindexSeconds = (System.nanoTime() - t0) / 1e9;
    }

    /** One search hit, ready to be written as JSON. */
    record Hit(String id, String url, String title, float score, String snippet) {}

    record Result(long totalHits, boolean totalExact, List<Hit> hits) {}

    static final class BadQuery extends Exception {
        private static final long serialVersionUID = 1L;

        BadQuery(String message) {
            super(message);
        }
    }

    /** Ranked search over title (boosted) and body, all terms required (as Nutch does). */
    Result search(String text, int n) throws IOException, BadQuery {
        Query query;
        try {
            MultiFieldQueryParser parser = new MultiFieldQueryParser(FIELDS, analyzer, BOOSTS);
            parser.setDefaultOperator(QueryParser.Operator.AND);
            query = parser.parse(text);
        } catch (ParseException | IllegalArgumentException e) {
            throw new BadQuery(e.getMessage().split("\n")[0]);
        }
        IndexSearcher searcher = searchers.acquire();
        try {
            TopDocs top = searcher.search(query, n);
            UnifiedHighlighter highlighter = new UnifiedHighlighter(searcher, analyzer);
            String[] snippets = top.scoreDocs.length == 0 ? new String[0]
                : highlighter.highlight("body", query, top, 2);
            List<Hit> hits = new ArrayList<>(top.scoreDocs.length);
            for (int i = 0; i < top.scoreDocs.length; i++) {
                ScoreDoc sd = top.scoreDocs[i];
                Document doc = searcher.doc(sd.doc, java.util.Set.of("id", "url", "title"));
                hits.add(new Hit(doc.get("id"), doc.get("url"), doc.get("title"), sd.score,
                                 snippets[i] == null ? "" : snippets[i]));
            }
            return new Result(top.totalHits.value,
                              top.totalHits.relation == org.apache.lucene.search.TotalHits.Relation.EQUAL_TO, hits);
        } finally {
            searchers.release(searcher);
        }
    }

    /** The stored fields of document `id` (as the crawler last fetched it), or null. */
    Map<String, Object> document(String id) throws IOException {
        IndexSearcher searcher = searchers.acquire();
        try {
            TopDocs top = searcher.search(new TermQuery(new Term("id", id)), 1);
            if (top.scoreDocs.length == 0) return null;
            Document doc = searcher.doc(top.scoreDocs[0].doc);
            Map<String, Object> out = new LinkedHashMap<>();
            out.put("id", doc.get("id"));
            out.put("version", doc.getField("version").numericValue());
            out.put("url", doc.get("url"));
            out.put("title", doc.get("title"));
            out.put("body", doc.get("body"));
            return out;
        } finally {
            searchers.release(searcher);
        }
    }

    Map<String, Object> stats() throws IOException {
        Map<String, Object> out = new HashMap<>();
        IndexSearcher searcher = searchers.acquire();
        try {
            out.put("docs", searcher.getIndexReader().numDocs());
            out.put("segments", searcher.getIndexReader().leaves().size());
        } finally {
            searchers.release(searcher);
        }
        out.put("index_bytes", indexBytes());
        out.put("reindex_rounds", reindexRounds.get());
        out.put("reindexed_docs", reindexedDocs.get());
        out.put("last_reindex_s", lastReindexSeconds);
        return out;
    }

    long indexBytes() throws IOException {
        try (Stream<Path> files = Files.list(dir)) {
            return files.mapToLong(p -> p.toFile().length()).sum();
        }
    }

    /** Drops uncommitted changes (the index directory is thrown away after the run). */
    @Override
    public void close() throws IOException {
        searchers.close();
        writer.rollback();
        directory.close();
    }
}
