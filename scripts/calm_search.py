"""Run calm's Lucene search service (scripts/search/, Java 17) for profiling, cost curves and tests.

WHY compiled at run time: the repository keeps sources only. The classes are built once per
source version with Debian's JDK 17 against Debian's Lucene 8 jars into a cache directory
($XDG_CACHE_HOME/calm/search/KEY, KEY a hash of the sources, the jars and the JDK's release file), so a
changed source or a JDK upgrade rebuilds and nothing generated lands in the work tree.

Each service gets a fresh runtime directory under /tmp (index, query log, ready file, service and GC
logs), removed when it stops. The JVM runs in its own session, so the Popen pid is the JVM (the pid
to give `calm record --pid`) and stopping it cannot leave threads or children behind. Readiness is
the service's own handshake: it writes its ready file (atomically) only once the index is built and
the port listens.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote_plus

from calm.core.ready import NotReady, wait_for
from calm_apt import apt_install

HERE = Path(__file__).resolve().parent / "search"
SOURCES = ("Corpus.java", "Json.java", "SearchIndex.java", "SearchService.java")
MAIN_CLASS = "calm.search.SearchService"
JDK_GLOB = "/usr/lib/jvm/java-17-openjdk-*/bin"
LUCENE_JARS = ("core", "queryparser", "queries", "highlighter", "memory")
DEBIAN_PACKAGES = ("openjdk-17-jdk-headless", "liblucene8-java")
GCS = {
    "g1": ["-XX:+UseG1GC"],
    "parallel": ["-XX:+UseParallelGC"],
    "serial": ["-XX:+UseSerialGC"],
    "z": ["-XX:+UseZGC"],
    "shenandoah": ["-XX:+UseShenandoahGC"],
    "epsilon": ["-XX:+UnlockExperimentalVMOptions", "-XX:+UseEpsilonGC"],  # never collects: a control
}


class SearchError(RuntimeError):
    """The service could not be installed, built, started or stopped; the message says why."""


def jdk_bin() -> Path | None:
    """bin/ of Debian's JDK 17 (javac and jcmd included), or None when it is not installed."""
    for candidate in sorted(glob.glob(JDK_GLOB)):
        if (Path(candidate) / "javac").exists() and (Path(candidate) / "java").exists():
            return Path(candidate)
    return None


def lucene_jars() -> list[Path]:
    """Debian's Lucene 8 jars the service needs, or [] when any is missing."""
    jars = []
    for name in LUCENE_JARS:
        found = sorted(glob.glob(f"/usr/share/java/lucene-{name}-8.*.jar"))
        if not found:
            return []
        jars.append(Path(found[-1]))
    return jars


def installed() -> bool:
    return jdk_bin() is not None and bool(lucene_jars())


def ensure_installed() -> None:
    """Installs Debian's JDK 17 and Lucene 8 when missing (idempotent; needs root and apt)."""
    if installed():
        return
    apt_install(DEBIAN_PACKAGES, SearchError)
    if not installed():
        raise SearchError(f"{' '.join(DEBIAN_PACKAGES)} installed but no javac under {JDK_GLOB} "
                          "or no /usr/share/java/lucene-*-8.*.jar")


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "calm" / "search"


# A read-only cache of classes compiled elsewhere, looked in first: a calm-vm guest has a tmpfs HOME
# but sees the host's root, so the host's build saves compiling under TCG (about 20 s per javac run,
# measured) and keeps a compiler run out of the emulated guest.
SHARED_CACHE_ENV = "CALM_SEARCH_SHARED_CACHE"


def classpath() -> str:
    return os.pathsep.join(str(j) for j in [compile_service(), *lucene_jars()])


def compile_service() -> Path:
    """The classes directory for the current sources, compiling them first when needed."""
    jdk, jars = jdk_bin(), lucene_jars()
    if jdk is None or not jars:
        raise SearchError("the search service needs Debian's openjdk-17-jdk-headless and liblucene8-java: "
                          "run scripts/install-deps")
    release = jdk.parent / "release"  # JAVA_VERSION etc.: an upgraded JDK rebuilds
    digest = hashlib.sha256(str(jdk.resolve()).encode() + (release.read_bytes() if release.exists() else b""))
    for name in SOURCES:
        digest.update(name.encode() + b"\0" + (HERE / name).read_bytes())
    for jar in jars:
        digest.update(str(jar).encode() + b"\0")
    key = digest.hexdigest()[:16]
    shared = os.environ.get(SHARED_CACHE_ENV)
    for root in ([Path(shared)] if shared else []) + [cache_root()]:
        if (root / key / "classes" / "calm" / "search" / "SearchService.class").exists():
            return root / key / "classes"
    target = cache_root() / key / "classes"
    target.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix="classes-", dir=target.parent))
    proc = subprocess.run([str(jdk / "javac"), "-encoding", "UTF-8", "-Xlint:all", "-Werror", "-d", str(build),
                           "-cp", os.pathsep.join(map(str, jars)), *(str(HERE / s) for s in SOURCES)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        shutil.rmtree(build, ignore_errors=True)
        # a JVM that crashes prints its fatal-error report on stdout, not stderr
        how = f"killed by signal {-proc.returncode}" if proc.returncode < 0 else f"exit {proc.returncode}"
        said = " | ".join(line for line in (proc.stderr + proc.stdout).strip().splitlines()[-12:] if line.strip())
        raise SearchError(f"javac failed ({how}): {said[-2000:] or 'no output'}")
    try:
        build.rename(target)  # atomic: a concurrent build that won the race keeps its copy
    except OSError:
        shutil.rmtree(build, ignore_errors=True)
    return target


@dataclass
class SearchConfig:
    """The service's options (scripts/search/SearchService.java) and the JVM's."""

    docs: int = 200_000
    doc_bytes: int = 3000
    seed: int = 1
    heap: str = "512m"
    gc: str = "g1"
    reindex_interval: float = 10.0  # s between re-index slices, 0 = never
    reindex_docs: int = 0  # documents per slice; 0 = 0.2% of the corpus
    threads: int = 8  # HTTP worker threads
    queries: int = 2000  # lines of the query log
    jvm_args: list[str] = field(default_factory=list)

    def service_args(self) -> list[str]:
        return ["--docs", str(self.docs), "--doc-bytes", str(self.doc_bytes), "--seed", str(self.seed),
                "--reindex-interval", f"{self.reindex_interval:g}", "--reindex-docs", str(self.reindex_docs),
                "--threads", str(self.threads), "--queries", str(self.queries)]

    def jvm_options(self) -> list[str]:
        if self.gc not in GCS:
            raise SearchError(f"unknown GC '{self.gc}' (one of {', '.join(GCS)})")
        if not re.fullmatch(r"[1-9][0-9]*[kKmMgG]?", self.heap):
            raise SearchError(f"heap size '{self.heap}' is not a JVM size such as 512m or 2g")
        # Xms = Xmx: a fixed-size heap, as search servers are run (no resizing during the profile)
        return [f"-Xms{self.heap}", f"-Xmx{self.heap}", *GCS[self.gc], *self.jvm_args]


class SearchService:
    """One JVM: `with SearchService(SearchConfig(docs=5000)) as svc: svc.pid, svc.url("/search?q=x")`.

    `prefix` runs it under another command, e.g. ["ip", "netns", "exec", NAME] (which execs, so the
    pid is still the JVM's). `host`/`port` is where it listens (port 0: the kernel picks one)."""

    def __init__(self, config: SearchConfig | None = None, host: str = "127.0.0.1", port: int = 0,
                 prefix: list[str] | None = None, root: Path | None = None, gc_log: bool = True):
        self.config = config or SearchConfig()
        self.host, self.port = host, port
        self.prefix = prefix or []
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="calm-search-"))
        self.keep_root = root is not None
        self.gc_log = gc_log
        self.proc: subprocess.Popen | None = None
        self.ready: dict = {}

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    @property
    def log_path(self) -> Path:
        return self.root / "service.log"

    @property
    def gc_log_path(self) -> Path:
        return self.root / "gc.log"

    @property
    def query_log(self) -> Path:
        return self.root / "queries.txt"

    def url(self, path: str = "/") -> str:
        port = self.ready.get("port", self.port)
        return f"http://{self.host}:{port}{path}"

    def command(self) -> list[str]:
        jdk = jdk_bin()
        if jdk is None:
            raise SearchError("no JDK 17 (run scripts/install-deps: openjdk-17-jdk-headless)")
        jvm = self.config.jvm_options()
        if self.gc_log:
            # timenanos is System.nanoTime(), CLOCK_MONOTONIC on Linux: the clock of calm's traces
            jvm.append(f"-Xlog:gc:file={self.gc_log_path}:timenanos,uptime,level,tags")
        return [*self.prefix, str(jdk / "java"), *jvm, "-cp", classpath(), MAIN_CLASS,
                "--host", self.host, "--port", str(self.port), "--index-dir", str(self.root / "index"),
                "--ready-file", str(self.root / "ready.json"), "--query-log", str(self.query_log),
                *self.config.service_args()]

    def start(self, timeout: float = 900.0) -> int:
        """Starts the JVM and waits for its ready handshake; returns the JVM's pid.

        The timeout bounds a hang only: building the default 200k-document index takes minutes."""
        cmd = self.command()
        self.root.mkdir(parents=True, exist_ok=True)
        ready = self.root / "ready.json"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        try:
            wait_for(ready, self.proc, "the search service", timeout)
        except NotReady as exc:
            if exc.exit_status is not None:
                raise SearchError(f"{exc}: {self._log_tail()}") from None
            self.stop()
            raise SearchError(f"{exc} (see {self.log_path})") from None
        self.ready = json.loads(ready.read_text())
        if self.ready.get("pid") != self.proc.pid:
            raise SearchError(f"ready file names pid {self.ready.get('pid')}, not the JVM {self.proc.pid}")
        return self.proc.pid

    def _log_tail(self) -> str:
        text = self.log_path.read_text(errors="replace").strip() if self.log_path.exists() else ""
        lines = [ln for ln in text.splitlines() if ln.strip()]
        return " / ".join(lines[-3:]) or "no output"

    def query_urls(self) -> list[str]:
        """One /search URL per line of the service's query log (repeats kept: they weight the mix)."""
        queries = [q for q in self.query_log.read_text().splitlines() if q.strip()]
        return [self.url(f"/search?q={quote_plus(q)}") for q in queries]

    def stats(self) -> dict:
        from urllib.request import urlopen

        with urlopen(self.url("/stats"), timeout=30) as resp:  # loopback only: our own service
            return json.loads(resp.read())

    def stop(self, timeout: float = 20.0) -> None:
        """Stops the JVM (`stop_process`) and removes its runtime directory unless it was given."""
        self.stop_process(timeout)
        if not self.keep_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def stop_process(self, timeout: float = 20.0) -> None:
        """SIGTERM (the JVM's shutdown hook closes the server and the index), then SIGKILL; the
        runtime directory (logs) stays for the caller to copy."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def __enter__(self) -> "SearchService":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
