package calm.search;

import java.io.BufferedWriter;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.SplittableRandom;

/**
 * The generated corpus: a vocabulary with Zipf word frequencies, documents of a few KB, and a query
 * log drawn from the same vocabulary.
 *
 * Why generated rather than a real crawl: the profile must be reproducible on a fresh machine with
 * no downloads, and the memory behaviour under study (index build, query-time garbage, re-indexing)
 * depends on the corpus's size and term statistics, not on its meaning. Zipf-distributed words give
 * posting lists of realistic skew (a few huge, most tiny), so queries cost what they cost on text.
 *
 * Every document is a pure function of (seed, id, version): re-indexing document i at version v+1
 * produces a new text without storing the old one, as a crawler re-fetching a changed page would.
 */
final class Corpus {
    /** Consonant-vowel syllables; words are numbers written in this alphabet. */
    private static final String[] SYLLABLES = {
        "ka", "to", "ri", "ne", "mo", "sa", "lu", "pe", "di", "ga", "ho", "ju", "be", "fi", "vo", "za",
        "ke", "ta", "ro", "ni", "ma", "so", "li", "pu", "da", "go", "hi", "ja", "bo", "fe", "vi", "zu",
        "kan", "tor", "rin", "nel", "mor", "sal", "lun", "per", "dis", "gan", "hol", "jun", "ber", "fin", "vol", "zar",
        "kri", "tra", "pro", "ste", "glo", "bra", "dru", "fle", "sku", "pla", "cre", "twi", "spa", "shu", "thi", "qua",
    };
    /** Words of rank below this are too common to be worth querying (a search engine's stop words). */
    static final int QUERY_MIN_RANK = 30;

    final long seed;
    final int docs;
    final int meanBytes;
    final String[] words;
    private final AliasSampler zipf;
    private final double meanWordBytes;

    Corpus(long seed, int docs, int meanBytes, int vocabulary, double zipfExponent) {
        this.seed = seed;
        this.docs = docs;
        this.meanBytes = meanBytes;
        this.words = vocabulary(seed, vocabulary);
        double[] weights = new double[vocabulary];
        double total = 0, bytes = 0;
        for (int r = 0; r < vocabulary; r++) {
            weights[r] = 1.0 / Math.pow(r + 1, zipfExponent);
            total += weights[r];
            bytes += weights[r] * (words[r].length() + 1);
        }
        this.zipf = new AliasSampler(weights);
        this.meanWordBytes = bytes / total;
    }

    /**
     * Distinct words; frequent (low-rank) words are short, as in natural language. Ranks are split
     * into classes of 2, 3, 4... syllables; within a class of capacity 64^k, rank j becomes the code
     * j * ODD mod 64^k (a bijection, so words stay distinct) whose base-64 digits pick syllables.
     */
    static String[] vocabulary(long seed, int n) {
        String[] syl = SYLLABLES.clone();
        SplittableRandom rng = new SplittableRandom(seed ^ 0x5eedL);
        for (int i = syl.length - 1; i > 0; i--) {
            int j = rng.nextInt(i + 1);
            String t = syl[i];
            syl[i] = syl[j];
            syl[j] = t;
        }
        String[] out = new String[n];
        int r = 0;
        for (int k = 2; r < n; k++) {
            long capacity = 1L << (6 * k);
            for (long j = 0; j < capacity && r < n; j++, r++) {
                long code = (j * 0x9E3779B1L) & (capacity - 1); // odd multiplier: a bijection mod 2^6k
                StringBuilder w = new StringBuilder();
                for (int d = 0; d < k; d++) {
                    w.append(syl[(int) (code & 63)]);
                    code >>>= 6;
                }
                out[r] = w.toString();
            }
        }
        return out;
    }

    /** A generated page: what a crawler would hand to the indexer. */
    record Doc(int id, int version, String url, String title, String body) {}

    Doc doc(int id, int version) {
        SplittableRandom rng = new SplittableRandom(mix(seed, id, version));
        int titleWords = 3 + rng.nextInt(6);
        StringBuilder title = new StringBuilder();
        for (int k = 0; k < titleWords; k++) {
            if (k > 0) title.append(' ');
            title.append(words[zipf.sample(rng)]);
        }
        // lognormal length around the mean (sigma 0.5), at least a sentence
        double len = meanBytes * Math.exp(0.5 * gaussian(rng) - 0.125);
        int target = (int) Math.max(80, Math.min(8 * meanBytes, len));
        StringBuilder body = new StringBuilder(target + 32);
        int inSentence = 0;
        while (body.length() < target) {
            String w = words[zipf.sample(rng)];
            if (inSentence == 0) {
                body.append(Character.toUpperCase(w.charAt(0))).append(w, 1, w.length());
            } else {
                body.append(w);
            }
            if (++inSentence >= 6 + rng.nextInt(14)) {
                body.append(". ");
                inSentence = 0;
            } else {
                body.append(' ');
            }
        }
        String url = "http://site" + (id % 4999) + ".example/page/" + id;
        return new Doc(id, version, url, title.toString(), body.toString());
    }

    double meanWordBytes() {
        return meanWordBytes;
    }

    /**
     * Writes a query log of n lines, each 1 to 3 words drawn with the corpus's own Zipf
     * frequencies (popular terms are queried often, as in real logs), skipping stop words.
     */
    void writeQueryLog(Path file, int n, long querySeed) throws IOException {
        SplittableRandom rng = new SplittableRandom(querySeed);
        try (BufferedWriter out = Files.newBufferedWriter(file, StandardCharsets.UTF_8)) {
            for (int i = 0; i < n; i++) {
                double u = rng.nextDouble();
                int terms = u < 0.45 ? 1 : u < 0.8 ? 2 : 3;
                StringBuilder q = new StringBuilder();
                for (int k = 0; k < terms; k++) {
                    int r;
                    do {
                        r = zipf.sample(rng);
                    } while (r < QUERY_MIN_RANK);
                    if (k > 0) q.append(' ');
                    q.append(words[r]);
                }
                out.write(q.toString());
                out.write('\n');
            }
        }
    }

    static long mix(long seed, int id, int version) {
        long z = seed * 0x9E3779B97F4A7C15L + id * 0xBF58476D1CE4E5B9L + version * 0x94D049BB133111EBL;
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        return z ^ (z >>> 31);
    }

    private static double gaussian(SplittableRandom rng) {
        double u1 = 1.0 - rng.nextDouble(), u2 = rng.nextDouble();
        return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
    }

    /** Walker/Vose alias method: O(1) draws from a fixed discrete distribution. */
    static final class AliasSampler {
        private final double[] prob;
        private final int[] alias;

        AliasSampler(double[] weights) {
            int n = weights.length;
            prob = new double[n];
            alias = new int[n];
            double sum = 0;
            for (double w : weights) sum += w;
            double[] scaled = new double[n];
            int[] small = new int[n], large = new int[n];
            int ns = 0, nl = 0;
            for (int i = 0; i < n; i++) {
                scaled[i] = weights[i] * n / sum;
                if (scaled[i] < 1) small[ns++] = i; else large[nl++] = i;
            }
            while (ns > 0 && nl > 0) {
                int s = small[--ns], l = large[--nl];
                prob[s] = scaled[s];
                alias[s] = l;
                scaled[l] += scaled[s] - 1;
                if (scaled[l] < 1) small[ns++] = l; else large[nl++] = l;
            }
            while (nl > 0) prob[large[--nl]] = 1;
            while (ns > 0) prob[small[--ns]] = 1;
        }

        int sample(SplittableRandom rng) {
            int i = rng.nextInt(prob.length);
            return rng.nextDouble() < prob[i] ? i : alias[i];
        }
    }
}
