"""The Lucene search service of scripts/search/ on its own: real JVM, real Lucene, real HTTP.

A small corpus keeps each start to seconds. Skips when the JDK or Lucene is missing
(scripts/install-deps installs them), except under CI=true where a skip would hide that it never ran.
"""

from __future__ import annotations

import json
import subprocess
import time
from urllib.error import HTTPError
from urllib.parse import quote_plus
from urllib.request import Request, urlopen

import psutil
import pytest

from tests.search_helpers import java_available  # noqa: F401

from calm_search import MAIN_CLASS, SearchConfig, SearchError, SearchService, classpath, jdk_bin  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("java_available")]
DOCS = 1500


def get(url: str) -> tuple[int, dict]:
    try:
        with urlopen(url, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


@pytest.fixture(scope="module")
def service():
    with SearchService(SearchConfig(docs=DOCS, reindex_interval=0.5, reindex_docs=20, heap="128m",
                                    queries=300)) as svc:
        yield svc


def test_ready_handshake_describes_the_service(service):
    r = service.ready
    assert r["pid"] == service.pid and r["docs"] == DOCS and r["port"] > 0
    assert r["heap"]["max"] == 128 * 1024 * 1024  # -Xmx reached the JVM
    assert r["gc"] == ["G1 Young Generation", "G1 Old Generation"]  # G1 is the default
    assert r["index_bytes"] > DOCS * 1000  # a few KB of text per document, indexed and stored
    assert psutil.Process(service.pid).name() == "java"
    assert len(service.query_urls()) == 300


def test_same_seed_same_corpus(service, tmp_path):
    """Another service with the same seed writes the same query log and the same documents.

    Runs first of the tests on the shared service: its re-index (20 documents a slice) starts from
    id 0, so the last id is still at version 0 here."""
    with SearchService(SearchConfig(docs=DOCS, reindex_interval=0, heap="128m", gc="serial", queries=300),
                       root=tmp_path / "twin") as twin:
        assert twin.ready["gc"] == ["Copy", "MarkSweepCompact"]  # --gc reached the JVM
        assert twin.query_log.read_text() == service.query_log.read_text()
        _, mine = get(twin.url(f"/doc?id={DOCS - 1}"))
        _, theirs = get(service.url(f"/doc?id={DOCS - 1}"))
        assert mine["version"] == theirs["version"] == 0, "the shared service re-indexed the whole corpus already"
        assert mine == theirs
        _, other = get(twin.url(f"/doc?id={DOCS - 2}"))
        assert other["body"] != mine["body"]
    assert twin.proc.poll() is not None


def test_ranked_keyword_search(service):
    queries = [q for q in service.query_log.read_text().splitlines() if " " not in q]
    assert len(queries) > 50  # 45% of the log is one-word queries
    answered = 0
    for q in queries[:20]:
        status, res = get(service.url(f"/search?q={quote_plus(q)}&n=5"))
        assert status == 200 and res["query"] == q
        hits = res["hits"]
        assert len(hits) == min(5, res["total_hits"])
        scores = [h["score"] for h in hits]
        assert scores == sorted(scores, reverse=True)  # ranked
        for h in hits:  # every hit holds the word (title, or the highlighted body passage)
            assert q in h["title"].lower().split() or f"<b>{q}</b>" in h["snippet"].lower(), h
        answered += bool(hits)
    assert answered >= 15  # words from the corpus's own vocabulary mostly find something


def test_all_words_required(service):
    """Nutch's semantics: every term must match, so a two-word query finds at most what either finds."""
    words = [q for q in service.query_log.read_text().splitlines() if " " not in q][:2]
    totals = [get(service.url(f"/search?q={quote_plus(w)}"))[1]["total_hits"] for w in words]
    both = get(service.url(f"/search?q={quote_plus(' '.join(words))}"))[1]
    assert both["total_hits"] <= min(totals)
    for h in both["hits"]:
        _, doc = get(service.url(f"/doc?id={h['id']}"))
        text = (doc["title"] + " " + doc["body"]).lower()
        assert all(w in text for w in words)


def test_bad_requests_are_http_errors(service):
    assert get(service.url("/search"))[0] == 400
    assert get(service.url("/search?q=%22unclosed"))[0] == 400
    assert get(service.url("/search?q=ok&n=0"))[0] == 400
    assert get(service.url("/doc?id=nope"))[0] == 404
    with pytest.raises(HTTPError) as exc:
        urlopen(Request(service.url("/search?q=x"), data=b"x", method="POST"), timeout=30)
    assert exc.value.code == 405


def test_reindex_replaces_documents_while_serving(service):
    """The re-index thread rolls through the corpus: a document ahead of it gets a new version and
    new text, and the corpus keeps its size."""
    done = service.stats()["reindexed_docs"]
    target = (done + 40) % DOCS  # the cursor is at done % DOCS and moves 20 documents a slice
    _, before = get(service.url(f"/doc?id={target}"))
    deadline = time.monotonic() + 120
    while service.stats()["reindexed_docs"] < done + 60:  # the service's own counter, not a sleep
        assert time.monotonic() < deadline, service.stats()
        time.sleep(0.1)
    _, after = get(service.url(f"/doc?id={target}"))
    assert after["version"] == before["version"] + 1 and after["body"] != before["body"]
    assert after["url"] == before["url"]  # the same page, re-fetched
    stats = service.stats()
    assert stats["docs"] == DOCS  # updates replace, never add
    assert stats["reindex_rounds"] >= 3


def test_stop_removes_everything(tmp_path):
    svc = SearchService(SearchConfig(docs=200, reindex_interval=0.2, heap="64m", queries=10))
    pid = svc.start()
    root = svc.root
    assert (root / "index").is_dir()
    svc.stop()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not root.exists()


@pytest.mark.parametrize("args, message", [
    (["--docs", "0"], "--docs must be between 1"),
    (["--docs", "many"], "--docs 'many' is not a whole number"),
    (["--colour", "red"], "unknown option '--colour'"),
    ([], "--index-dir is required"),
])
def test_bad_options_one_line(tmp_path, args, message):
    index = [] if not args else ["--index-dir", str(tmp_path / "i")]
    proc = subprocess.run([str(jdk_bin() / "java"), "-cp", classpath(), MAIN_CLASS, *index, *args],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("search-service: error: ") and message in lines[0], proc.stderr


def test_start_failure_is_one_error(tmp_path):
    """A JVM that cannot start (a heap it cannot have) is a SearchError naming why, not a hang."""
    svc = SearchService(SearchConfig(docs=10, heap="64m", jvm_args=["-XX:MaxNewSize=1g", "-XX:NoSuchFlag=1"]),
                        root=tmp_path / "bad")
    with pytest.raises(SearchError, match="NoSuchFlag"):
        svc.start()
    svc.stop()
    with pytest.raises(SearchError, match="heap size"):
        SearchService(SearchConfig(heap="lots")).command()


def test_classes_compiled_elsewhere_are_used_read_only(tmp_path, monkeypatch):
    """A calm-vm guest has an empty tmpfs HOME: it takes the host's compiled classes from the
    shared cache instead of running javac under emulation (CI once saw javac fail there)."""
    import calm_search

    host_classes = calm_search.compile_service()  # the host's build, in its own cache
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-home-cache"))
    monkeypatch.setenv(calm_search.SHARED_CACHE_ENV, str(host_classes.parent.parent))
    assert calm_search.compile_service() == host_classes
    assert not (tmp_path / "empty-home-cache").exists()  # nothing compiled, nothing written
    monkeypatch.delenv(calm_search.SHARED_CACHE_ENV)
    own = calm_search.compile_service()  # without it: compiled into the caller's own cache
    assert own != host_classes and own.is_relative_to(tmp_path / "empty-home-cache")
    assert (own / "calm" / "search" / "SearchService.class").exists()
