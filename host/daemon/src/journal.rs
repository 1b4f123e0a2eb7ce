//! The file journal: the kernel's [`Journal`] on local disk (the default;
//! the interface is what a database-backed journal would implement too).
//! This module is only file I/O; what events mean is the kernel's
//! (`aos_kernel::replay`), and how lines are written is the kernel's codec
//! (`aos_kernel::codec`), the same one every reader uses.
//!
//! **Files.** `$AOS_HOME/journal/run-<ms>-<os pid>.jsonl` (0600, directory
//! 0700) are *segments*. Each segment starts with a snapshot — `snapshot`,
//! one `restored` line per process the journal knows (its whole
//! [`RestoreRequest`]), `reaped_pids`, `snapshot_end` — followed by one
//! line per [`KernelEvent`]. A segment whose snapshot is complete says
//! everything: a restart reads the newest complete segment only (a
//! snapshot plus a tail), never the whole history. Segments of the past
//! move to `journal/archive/`, pruned by count and age ([`prune_archive`]).
//! Journals of older versions (no snapshot) are read in full, oldest first.
//!
//! **Group commit.** [`FileJournal::append`] only queues the event (no
//! I/O) and returns its lsn. One writer thread takes everything queued,
//! encodes it, writes it with one `write` and one `fdatasync`, then
//! publishes the new durable lsn to the kernel, which wakes exactly the
//! processes waiting for it. While the thread writes, new events queue for
//! the next batch, so the more processes run, the more events share a
//! write and an fsync.
//!
//! **Fail-stop.** A failed write or fsync is published as a
//! [`JournalFault`] (the kernel pauses every process that waits for its
//! events, visibly); the segment is cut back to its last good length (no
//! torn line stays in the middle of a file, and after a failed fsync the
//! same bytes are written again rather than trusted), and the batch is
//! retried with backoff (50 ms to 2 s) until it succeeds; then the fault is
//! cleared and the processes continue by themselves. Nothing is dropped.
//!
//! **Rotation.** The writer folds every durable event into its own
//! [`Replay`] (the kernel's fold). When the tail of the current segment
//! grows past `rotate_bytes` and past the size of its snapshot (so
//! snapshots cost at most as much again as the events they replace), it
//! writes a new segment starting with a snapshot of that fold, and moves
//! the old one to the archive. A restart therefore reads at most one
//! snapshot and a tail of about `max(rotate_bytes, snapshot size)`.
//!
//! File operations go through [`Storage`], so tests inject write and fsync
//! failures ([`FaultyStorage`]).

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use aos_kernel::codec;
use aos_kernel::durability::{DurabilityWatch, Journal, JournalError, JournalFault, Lsn};
use aos_kernel::replay::Replay;
use aos_kernel::{now_ms, KernelEvent, Pid, RestoreRequest};

/// Journal records that are not kernel events: a segment's snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum SnapshotRecord {
    /// Start of a snapshot of `processes` processes, taken after event `lsn` of this run.
    Snapshot { lsn: Lsn, processes: usize, at_ms: u64 },
    /// One process's whole state.
    Restored { snapshot: Box<RestoreRequest> },
    /// Pids reaped by the retention rules (inclusive ranges).
    ReapedPids { ranges: Vec<(Pid, Pid)> },
    /// The snapshot is complete.
    SnapshotEnd { lsn: Lsn },
}

const SNAPSHOT_TAGS: [&str; 4] = ["snapshot", "restored", "reaped_pids", "snapshot_end"];

/// Settings of the file journal (`[journal]` in aos.toml).
#[derive(Clone)]
pub struct JournalOptions {
    /// fsync each batch (else only written to the OS).
    pub fsync: bool,
    /// Rotate when the current segment's tail exceeds this (and its snapshot's size).
    pub rotate_bytes: u64,
    /// Archived segments kept (count) and their age limit.
    pub max_archived: usize,
    pub archive_ttl: Duration,
    /// Where file operations go (tests inject faults).
    pub storage: Arc<dyn Storage>,
}

impl JournalOptions {
    pub fn new(fsync: bool) -> Self {
        JournalOptions {
            fsync,
            rotate_bytes: 32 << 20,
            max_archived: 64,
            archive_ttl: Duration::from_secs(86_400),
            storage: Arc::new(OsStorage),
        }
    }
}

/// File operations of the journal.
pub trait Storage: Send + Sync {
    /// Creates a new segment file (0600), opened for appending.
    fn create(&self, path: &Path) -> io::Result<Box<dyn SegmentFile>>;
    /// Makes a directory's entries (a new file, a rename) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// An open segment.
pub trait SegmentFile: Send {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()>;
    fn sync_data(&mut self) -> io::Result<()>;
    /// Cuts the file back to `len` bytes (after a failed write or fsync).
    fn set_len(&mut self, len: u64) -> io::Result<()>;
}

/// Real files.
pub struct OsStorage;

impl Storage for OsStorage {
    fn create(&self, path: &Path) -> io::Result<Box<dyn SegmentFile>> {
        use std::os::unix::fs::OpenOptionsExt;
        let f = std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path)?;
        Ok(Box::new(f))
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        std::fs::File::open(dir)?.sync_all()
    }
}

impl SegmentFile for std::fs::File {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        Write::write_all(self, buf)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        std::fs::File::sync_data(self)
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        std::fs::File::set_len(self, len)
    }
}

/// Real files, with write and fsync failures switched on and off by a test.
#[derive(Default)]
pub struct FaultyStorage {
    /// Writes fail with this OS error (e.g. `libc::ENOSPC`), 0 = none.
    pub fail_writes: Arc<AtomicU64>,
    /// fsyncs fail with this OS error (e.g. `libc::EIO`), 0 = none.
    pub fail_fsync: Arc<AtomicU64>,
}

struct FaultyFile {
    file: std::fs::File,
    fail_writes: Arc<AtomicU64>,
    fail_fsync: Arc<AtomicU64>,
}

impl Storage for FaultyStorage {
    fn create(&self, path: &Path) -> io::Result<Box<dyn SegmentFile>> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path)?;
        Ok(Box::new(FaultyFile { file, fail_writes: self.fail_writes.clone(), fail_fsync: self.fail_fsync.clone() }))
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        OsStorage.sync_dir(dir)
    }
}

impl SegmentFile for FaultyFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self.fail_writes.load(Ordering::SeqCst) {
            0 => Write::write_all(&mut self.file, buf),
            errno => {
                // Like a disk filling up: part of the buffer lands, then the error.
                let _ = Write::write_all(&mut self.file, &buf[..buf.len() / 2]);
                Err(io::Error::from_raw_os_error(errno as i32))
            }
        }
    }
    fn sync_data(&mut self) -> io::Result<()> {
        match self.fail_fsync.load(Ordering::SeqCst) {
            0 => self.file.sync_data(),
            errno => Err(io::Error::from_raw_os_error(errno as i32)),
        }
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }
}

/// Counters of the writer, for `aos kernel status` and the bench.
#[derive(Debug, Default)]
struct Stats {
    events: AtomicU64,
    batches: AtomicU64,
    bytes: AtomicU64,
    fsyncs: AtomicU64,
    fsync_nanos: AtomicU64,
    write_nanos: AtomicU64,
    rotations: AtomicU64,
    failures: AtomicU64,
}

/// What `aos kernel status` shows about the journal.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JournalStatus {
    /// The segment being written.
    pub segment: PathBuf,
    pub segment_bytes: u64,
    pub fsync: bool,
    /// Events appended / made durable in this run.
    pub appended: Lsn,
    pub durable: Lsn,
    /// Set while events cannot be written (the processes waiting for them are paused).
    pub fault: Option<JournalFault>,
    pub batches: u64,
    pub events: u64,
    pub bytes: u64,
    pub fsyncs: u64,
    /// Time spent in fsync and in write, in this run (ms).
    pub fsync_ms: u64,
    pub write_ms: u64,
    /// Snapshots written since start (rotations).
    pub rotations: u64,
    /// Write or fsync failures since start.
    pub failures: u64,
}

struct Queue {
    events: Vec<KernelEvent>,
    appended: Lsn,
    snapshot: bool,
    closing: bool,
}

struct Shared {
    dir: PathBuf,
    opts: JournalOptions,
    queue: Mutex<Queue>,
    wake: Condvar,
    watch: DurabilityWatch,
    stats: Stats,
    /// (path, bytes) of the current segment.
    segment: Mutex<(PathBuf, u64)>,
}

/// The daemon's journal (see the module documentation).
pub struct FileJournal {
    shared: Arc<Shared>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    opened: Mutex<Option<Replay>>,
    /// What opening found (unreadable lines, incomplete snapshots ...).
    pub report: Vec<String>,
}

/// Appends to `out` the snapshot lines of `state`.
fn encode_snapshot(state: &Replay, lsn: Lsn, out: &mut Vec<u8>) {
    let put = |r: &SnapshotRecord, out: &mut Vec<u8>| {
        if let Err(e) = codec::encode_into(r, out) {
            tracing::error!("journal: cannot encode a snapshot record: {e}");
        }
    };
    put(&SnapshotRecord::Snapshot { lsn, processes: state.procs.len(), at_ms: now_ms() }, out);
    for s in state.procs.values() {
        // Encoded from a reference: no clone of the history.
        #[derive(Serialize)]
        #[serde(tag = "event", rename = "restored")]
        struct RestoredRef<'a> {
            snapshot: &'a RestoreRequest,
        }
        if let Err(e) = codec::encode_into(&RestoredRef { snapshot: s }, out) {
            tracing::error!("journal: cannot encode the snapshot of pid {}: {e}", s.info.pid);
        }
    }
    let ranges = state.reaped_ranges();
    if !ranges.is_empty() {
        put(&SnapshotRecord::ReapedPids { ranges }, out);
    }
    put(&SnapshotRecord::SnapshotEnd { lsn }, out);
}

/// What one segment file says.
struct SegmentRead {
    /// It starts with a snapshot ...
    has_snapshot: bool,
    /// ... that is complete.
    complete: bool,
    bad: usize,
}

/// Replays the lines of `data` into `state`.
fn replay_bytes(data: &[u8], state: &mut Replay) -> SegmentRead {
    let mut read = SegmentRead { has_snapshot: false, complete: false, bad: 0 };
    let mut first = true;
    for line in data.split(|&b| b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let tag = codec::event_tag(line);
        if first {
            read.has_snapshot = tag == Some("snapshot");
            first = false;
        }
        if tag.is_some_and(|t| SNAPSHOT_TAGS.contains(&t)) {
            match codec::decode::<SnapshotRecord>(line) {
                Ok(SnapshotRecord::Restored { snapshot }) => state.restored(*snapshot),
                Ok(SnapshotRecord::ReapedPids { ranges }) => state.add_reaped_ranges(&ranges),
                Ok(SnapshotRecord::SnapshotEnd { .. }) => read.complete = read.has_snapshot,
                Ok(SnapshotRecord::Snapshot { .. }) => {}
                Err(_) => read.bad += 1,
            }
            continue;
        }
        match codec::decode::<KernelEvent>(line) {
            Ok(ev) => state.apply_owned(ev),
            Err(_) => read.bad += 1,
        }
    }
    read
}

/// Segment files in `dir`, oldest first (by the `<ms>` of `run-<ms>-<pid>.jsonl`).
pub fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "jsonl"))
                .collect()
        })
        .unwrap_or_default();
    v.sort_by_key(|p| (segment_ms(p), p.clone()));
    v
}

fn segment_ms(p: &Path) -> u64 {
    p.file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.strip_prefix("run-"))
        .and_then(|s| s.split('-').next())
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0)
}

/// Reads what the segments of `dir` say: the newest segment with a
/// complete snapshot (a snapshot plus its tail), or, with none, every file
/// in order (journals of older versions). Returns the state and report lines.
pub fn read_dir_state(dir: &Path) -> (Replay, Vec<String>) {
    let files = segments(dir);
    let mut report = Vec::new();
    for f in files.iter().rev() {
        let Ok(data) = std::fs::read(f) else { continue };
        if data.iter().all(u8::is_ascii_whitespace) {
            // Created, then the daemon died before its snapshot was written.
            continue;
        }
        let mut state = Replay::new();
        let r = replay_bytes(&data, &mut state);
        if r.complete {
            if r.bad > 1 {
                report.push(format!("{}: {} unreadable lines skipped", f.display(), r.bad));
            }
            return (state, report);
        }
        if r.has_snapshot {
            // A rotation or a start cut short: the segment before it has everything.
            continue;
        }
        // A journal of an older version: no snapshots at all.
        break;
    }
    let mut state = Replay::new();
    for f in &files {
        match std::fs::read(f) {
            Ok(data) => {
                let r = replay_bytes(&data, &mut state);
                if r.bad > 1 {
                    report.push(format!("{}: {} unreadable lines skipped", f.display(), r.bad));
                }
            }
            Err(e) => report.push(format!("cannot read the journal {}: {e}", f.display())),
        }
    }
    (state, report)
}

/// An open segment being appended to.
struct Segment {
    path: PathBuf,
    file: Box<dyn SegmentFile>,
    /// Bytes known written (and synced, with fsync on).
    len: u64,
    snapshot_len: u64,
}

impl Segment {
    /// Creates `path` with a snapshot of `state` at its start, made durable.
    fn create(shared_dir: &Path, opts: &JournalOptions, path: PathBuf, state: &Replay, lsn: Lsn) -> io::Result<Segment> {
        let mut buf = Vec::new();
        encode_snapshot(state, lsn, &mut buf);
        let mut file = opts.storage.create(&path)?;
        let written = file.write_all(&buf).and_then(|_| if opts.fsync { file.sync_data() } else { Ok(()) });
        if let Err(e) = written.and_then(|_| if opts.fsync { opts.storage.sync_dir(shared_dir) } else { Ok(()) }) {
            drop(file);
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        Ok(Segment { path, file, len: buf.len() as u64, snapshot_len: buf.len() as u64 })
    }

    /// Writes `buf` and syncs it; on failure cuts the file back to what was good.
    fn commit(&mut self, buf: &[u8], fsync: bool, stats: &Stats) -> io::Result<()> {
        let t = Instant::now();
        let written = self.file.write_all(buf);
        stats.write_nanos.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        let synced = written.and_then(|_| {
            if !fsync {
                return Ok(());
            }
            let t = Instant::now();
            let r = self.file.sync_data();
            stats.fsyncs.fetch_add(1, Ordering::Relaxed);
            stats.fsync_nanos.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
            r
        });
        match synced {
            Ok(()) => {
                self.len += buf.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Never leave a torn line, and never trust pages a failed fsync may have dropped.
                let _ = self.file.set_len(self.len);
                Err(e)
            }
        }
    }
}

fn new_segment_path(dir: &Path, after: Option<&Path>) -> PathBuf {
    let last = after.map(segment_ms).unwrap_or(0);
    let ms = now_ms().max(last + 1);
    dir.join(format!("run-{ms}-{}.jsonl", std::process::id()))
}

impl FileJournal {
    /// Opens the journal directory: reads what earlier runs left (see
    /// [`read_dir_state`]), starts this run's segment with a snapshot of it,
    /// moves the earlier segments to `archive/`, and starts the writer.
    pub fn open(dir: &Path, opts: JournalOptions) -> Result<Arc<FileJournal>> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create the journal directory {}", dir.display()))?;
        {
            // Journals hold whole conversations: owner only.
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
        let earlier = segments(dir);
        let (state, report) = read_dir_state(dir);
        let path = new_segment_path(dir, earlier.last().map(PathBuf::as_path));
        let segment = Segment::create(dir, &opts, path.clone(), &state, 0)
            .with_context(|| format!("cannot create the journal {}", path.display()))?;
        archive(dir, &earlier);
        prune_archive(&dir.join("archive"), opts.max_archived, opts.archive_ttl, std::time::SystemTime::now());
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            opts,
            queue: Mutex::new(Queue { events: Vec::new(), appended: 0, snapshot: false, closing: false }),
            wake: Condvar::new(),
            watch: DurabilityWatch::new(),
            stats: Stats::default(),
            segment: Mutex::new((path, segment.len)),
        });
        let fold = state.clone();
        let s = shared.clone();
        let writer = std::thread::Builder::new()
            .name("aos-journal".into())
            // Deeply nested values are encoded here.
            .stack_size(16 << 20)
            .spawn(move || writer(s, segment, fold))
            .context("cannot start the journal writer thread")?;
        Ok(Arc::new(FileJournal { shared, writer: Mutex::new(Some(writer)), opened: Mutex::new(Some(state)), report }))
    }

    /// The segment being written.
    pub fn path(&self) -> PathBuf {
        self.shared.segment.lock().unwrap_or_else(|e| e.into_inner()).0.clone()
    }

    pub fn status(&self) -> JournalStatus {
        let st = &self.shared.stats;
        let (segment, segment_bytes) = self.shared.segment.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let d = self.shared.watch.current();
        JournalStatus {
            segment,
            segment_bytes,
            fsync: self.shared.opts.fsync,
            appended: self.appended(),
            durable: d.durable,
            fault: d.fault,
            batches: st.batches.load(Ordering::Relaxed),
            events: st.events.load(Ordering::Relaxed),
            bytes: st.bytes.load(Ordering::Relaxed),
            fsyncs: st.fsyncs.load(Ordering::Relaxed),
            fsync_ms: st.fsync_nanos.load(Ordering::Relaxed) / 1_000_000,
            write_ms: st.write_nanos.load(Ordering::Relaxed) / 1_000_000,
            rotations: st.rotations.load(Ordering::Relaxed),
            failures: st.failures.load(Ordering::Relaxed),
        }
    }

    /// Time spent in fsync so far.
    pub fn fsync_time(&self) -> Duration {
        Duration::from_nanos(self.shared.stats.fsync_nanos.load(Ordering::Relaxed))
    }

    /// Writes what is queued and stops the writer (at daemon shutdown).
    pub fn close(&self) {
        {
            let mut q = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            q.closing = true;
        }
        self.shared.wake.notify_one();
        if let Some(h) = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = h.join();
        }
        self.shared.watch.close();
    }
}

impl Drop for FileJournal {
    fn drop(&mut self) {
        self.close();
    }
}

impl Journal for FileJournal {
    fn append(&self, event: &KernelEvent) -> Lsn {
        let mut q = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        q.appended += 1;
        q.events.push(event.clone());
        let lsn = q.appended;
        if q.events.len() == 1 {
            self.shared.wake.notify_one();
        }
        lsn
    }

    fn appended(&self) -> Lsn {
        self.shared.queue.lock().unwrap_or_else(|e| e.into_inner()).appended
    }

    fn watch(&self) -> &DurabilityWatch {
        &self.shared.watch
    }

    fn snapshot(&self) {
        self.shared.queue.lock().unwrap_or_else(|e| e.into_inner()).snapshot = true;
        self.shared.wake.notify_one();
    }

    fn replay(&self) -> Result<Replay, JournalError> {
        Ok(self.opened.lock().unwrap_or_else(|e| e.into_inner()).take().unwrap_or_default())
    }
}

/// The writer thread: batches, writes, syncs, publishes, folds, rotates.
fn writer(shared: Arc<Shared>, mut seg: Segment, mut fold: Replay) {
    let opts = shared.opts.clone();
    let mut buf: Vec<u8> = Vec::new();
    let mut batch: Vec<KernelEvent> = Vec::new();
    let mut upto: Lsn = 0;
    let mut backoff: Option<Duration> = None;
    let mut fault_since: Option<u64> = None;
    let mut rotate_after = Instant::now();
    loop {
        let (events, appended, snapshot, closing) = {
            let mut q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            match backoff {
                // Failing: wait out the backoff (new events join the retry).
                Some(d) => {
                    let deadline = Instant::now() + d;
                    while !q.closing {
                        let left = deadline.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            break;
                        }
                        q = shared.wake.wait_timeout(q, left).unwrap_or_else(|e| e.into_inner()).0;
                    }
                }
                None => {
                    while q.events.is_empty() && !q.snapshot && !q.closing {
                        q = shared.wake.wait(q).unwrap_or_else(|e| e.into_inner());
                    }
                }
            }
            (std::mem::take(&mut q.events), q.appended, std::mem::take(&mut q.snapshot), q.closing)
        };
        for ev in events {
            if let Err(e) = codec::encode_into(&ev, &mut buf) {
                tracing::error!("journal: cannot encode an event of pid {}: {e}", ev.pid());
                continue;
            }
            batch.push(ev);
        }
        upto = upto.max(appended);
        if !buf.is_empty() {
            match seg.commit(&buf, opts.fsync, &shared.stats) {
                Ok(()) => {
                    let st = &shared.stats;
                    st.batches.fetch_add(1, Ordering::Relaxed);
                    st.events.fetch_add(batch.len() as u64, Ordering::Relaxed);
                    st.bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
                    shared.segment.lock().unwrap_or_else(|e| e.into_inner()).1 = seg.len;
                    buf.clear();
                    for ev in batch.drain(..) {
                        fold.apply_owned(ev);
                    }
                    if fault_since.take().is_some() {
                        tracing::warn!("journal {}: writing again; paused processes continue", seg.path.display());
                        shared.watch.publish_fault(None);
                    }
                    backoff = None;
                }
                Err(e) => {
                    shared.stats.failures.fetch_add(1, Ordering::Relaxed);
                    let since = *fault_since.get_or_insert_with(now_ms);
                    let error = format!(
                        "cannot write the journal {}: {e}{}",
                        seg.path.display(),
                        if e.raw_os_error() == Some(libc::ENOSPC) { " (free some space on its file system)" } else { "" }
                    );
                    if backoff.is_none() {
                        tracing::error!("{error}; processes that need it are paused until it can be written");
                    }
                    shared.watch.publish_fault(Some(JournalFault { error, since_ms: since }));
                    backoff = Some(backoff.map_or(Duration::from_millis(50), |d| (d * 2).min(Duration::from_secs(2))));
                    if closing {
                        tracing::error!("journal: stopping with {} event(s) not written", batch.len());
                        return;
                    }
                    continue;
                }
            }
        }
        shared.watch.publish_durable(upto);
        let tail = seg.len.saturating_sub(seg.snapshot_len);
        let due = tail >= opts.rotate_bytes.max(seg.snapshot_len);
        if (due || snapshot) && !closing && (snapshot || Instant::now() >= rotate_after) {
            let path = new_segment_path(&shared.dir, Some(&seg.path));
            match Segment::create(&shared.dir, &opts, path.clone(), &fold, upto) {
                Ok(new) => {
                    let old = std::mem::replace(&mut seg, new);
                    archive(&shared.dir, std::slice::from_ref(&old.path));
                    prune_archive(&shared.dir.join("archive"), opts.max_archived, opts.archive_ttl, std::time::SystemTime::now());
                    *shared.segment.lock().unwrap_or_else(|e| e.into_inner()) = (path, seg.len);
                    shared.stats.rotations.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    // The current segment still works: keep it, try again later.
                    tracing::warn!("journal: cannot start a new segment {}: {e}; retrying in a minute", path.display());
                    rotate_after = Instant::now() + Duration::from_secs(60);
                }
            }
        }
        if closing {
            return;
        }
    }
}

/// Moves `files` into `dir/archive/` (0700).
fn archive(dir: &Path, files: &[PathBuf]) {
    let archive = dir.join("archive");
    if files.is_empty() || std::fs::create_dir_all(&archive).is_err() {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(&archive, std::fs::Permissions::from_mode(0o700));
    for f in files {
        if let Some(name) = f.file_name() {
            if let Err(e) = std::fs::rename(f, archive.join(name)) {
                tracing::warn!("cannot archive the journal {}: {e}", f.display());
            }
        }
    }
}

/// Deletes archived journals (`*.jsonl` in `archive`) that the retention
/// rules no longer keep: every one last written `ttl` or longer before
/// `now`, then the least recently written until at most `max` are left.
/// Returns the deleted paths (a missing directory is no error).
pub fn prune_archive(archive: &Path, max: usize, ttl: Duration, now: std::time::SystemTime) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(archive) else { return Vec::new() };
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "jsonl"))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    files.sort();
    let mut left = files.len();
    let mut deleted = Vec::new();
    for (modified, path) in files {
        let expired = now.duration_since(modified).is_ok_and(|age| age >= ttl);
        if left <= max && !expired {
            break;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {
                left -= 1;
                deleted.push(path);
            }
            Err(e) => tracing::warn!("cannot delete the archived journal {}: {e}", path.display()),
        }
    }
    deleted
}

#[cfg(test)]
mod tests {
    use super::*;
    use aos_kernel::{Budgets, Counters, Entry, ExitStatus, LogEntry, ProcessInfo, ProcessStatus, Queue};
    use serde_json::json;

    fn info(pid: Pid) -> ProcessInfo {
        ProcessInfo {
            pid,
            parent: None,
            children: vec![],
            status: ProcessStatus::Ready,
            role: "r".into(),
            task: "t".into(),
            provider: "script".into(),
            model: "m".into(),
            capabilities: vec![],
            budgets: Budgets::default(),
            remaining: Budgets::default(),
            counters: Counters::default(),
            workspace: "/w".into(),
            pipe_to: None,
            base_url: None,
            tool_mode: aos_abi::ToolMode::Text,
            approvals: vec![aos_kernel::approval::Policy::ask_dangerous()],
            model_progress: None,
        }
    }

    fn entry(pid: Pid, seq: u64, entry: Entry) -> KernelEvent {
        KernelEvent::Entry { entry: LogEntry { pid, seq, at_ms: 1, entry } }
    }

    fn line(ev: &KernelEvent) -> String {
        serde_json::to_string(ev).unwrap()
    }

    fn replay_lines(lines: &[String]) -> (Replay, usize) {
        let mut state = Replay::new();
        let r = replay_bytes(lines.join("\n").as_bytes(), &mut state);
        (state, r.bad)
    }

    /// Appends and waits until durable.
    fn append_all(j: &FileJournal, events: &[KernelEvent]) {
        let mut lsn = 0;
        for e in events {
            lsn = j.append(e);
        }
        let t = Instant::now();
        while j.watch().current().durable < lsn {
            assert!(t.elapsed() < Duration::from_secs(10), "not durable: {:?}", j.status());
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn legacy_journal_replays_and_finds_the_interrupted_call() {
        // A journal written by an older version: no snapshot, the daemon's
        // own `counters` record (now a kernel event), a torn last line.
        let mut lines = vec![line(&KernelEvent::Spawned { info: Box::new(info(1)) })];
        lines.push(line(&entry(1, 0, Entry::Reply {
            text: "[SYS_CALL::FS_WRITE] {\"path\":\"a\",\"content\":\"x\"}\n[SYS_CALL::RECV_MSG] {}\n[SYS_CALL::SYS_EXIT] {}".into(),
            truncated: false,
            tool_calls: vec![],
        })));
        lines.push(r#"{"event":"counters","pid":1,"counters":{"prompt_tokens":10,"completion_tokens":0,"tokens_estimated":false,"steps":1,"syscalls":{},"errors":0,"started_at_ms":0,"last_activity_ms":0}}"#.into());
        lines.push(line(&entry(1, 1, Entry::Result { id: 1, name: "FS_WRITE".into(), args: json!({}), output: json!({}), call_id: None })));
        lines.push("{\"event\":\"entry\",\"pid\":1,\"se".into()); // torn last line
        let (state, bad) = replay_lines(&lines);
        assert_eq!(bad, 1);
        let s = &state.procs[&1];
        assert!(s.exit.is_none() && s.is_complete());
        assert_eq!((s.log.len(), s.next_call_id, s.info.counters.steps), (2, 2, 1));
        let pending = s.pending_calls();
        assert_eq!(pending.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["RECV_MSG", "SYS_EXIT"]);
        let rec = s.recovery_entries();
        match &rec[0] {
            Entry::Error { id, name, error, .. } => {
                assert_eq!((*id, name.as_deref()), (2, Some("RECV_MSG")));
                assert!(error.starts_with("interrupted"));
            }
            e => panic!("{e:?}"),
        }
        assert!(matches!(&rec[1], Entry::Notice { text } if text.contains("SYS_EXIT")));
    }

    #[test]
    fn exiting_marks_an_exit_whose_exited_event_was_lost() {
        let lines = vec![
            line(&KernelEvent::Spawned { info: Box::new(info(1)) }),
            line(&entry(1, 0, Entry::Reply { text: "[SYS_CALL::SYS_EXIT] {\"code\": 4, \"result\": \"ok\"}".into(), truncated: false, tool_calls: vec![] })),
            line(&KernelEvent::Exiting { pid: 1, code: 4, result: Some("ok".into()) }),
            line(&KernelEvent::Spawned { info: Box::new(info(2)) }),
            line(&KernelEvent::Exited { pid: 2, status: ExitStatus::Killed }),
        ];
        let (state, bad) = replay_lines(&lines);
        assert_eq!(bad, 0);
        assert_eq!(state.procs[&1].exit, Some(ExitStatus::Exited { code: 4, result: Some("ok".into()) }));
        assert_eq!(state.procs[&2].exit, Some(ExitStatus::Killed));
    }

    #[test]
    fn reaped_processes_are_not_replayed() {
        let mut child = info(2);
        child.parent = Some(1);
        let lines = vec![
            line(&KernelEvent::Spawned { info: Box::new(info(1)) }),
            line(&KernelEvent::Spawned { info: Box::new(child) }),
            line(&KernelEvent::Exited { pid: 2, status: ExitStatus::Killed }),
            line(&KernelEvent::Reaped { pid: 2 }),
        ];
        let (state, _) = replay_lines(&lines);
        assert_eq!(state.procs.keys().copied().collect::<Vec<_>>(), [1]);
        assert!(state.procs[&1].info.children.is_empty());
        assert_eq!(state.reaped_ranges(), [(2, 2)]);
    }

    #[test]
    fn a_restart_reads_the_snapshot_and_its_tail_and_archives_the_rest() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("journal");
        let j = FileJournal::open(&dir, JournalOptions::new(true)).unwrap();
        assert!(j.replay().unwrap().procs.is_empty());
        append_all(&j, &[
            KernelEvent::Spawned { info: Box::new(info(3)) },
            entry(3, 0, Entry::Stdout { text: "hi".into() }),
            KernelEvent::Delivered { pid: 3, queue: Queue::Stdin, from: None, content: "line".into(), at_ms: 1 },
            KernelEvent::Spawned { info: Box::new(info(4)) },
            KernelEvent::Exited { pid: 4, status: ExitStatus::Killed },
            KernelEvent::Reaped { pid: 4 },
        ]);
        let first = j.path();
        drop(j);
        // The next run: one new segment holding a snapshot of everything.
        let j = FileJournal::open(&dir, JournalOptions::new(true)).unwrap();
        let state = j.replay().unwrap();
        assert_eq!(state.procs[&3].log.len(), 1);
        assert_eq!(state.procs[&3].pending.stdin, ["line"]);
        assert_eq!(state.reaped_ranges(), [(4, 4)]);
        assert_eq!(segments(&dir), [j.path()]);
        assert!(dir.join("archive").join(first.file_name().unwrap()).exists());
        let text = std::fs::read_to_string(j.path()).unwrap();
        assert!(text.starts_with("{\"event\":\"snapshot\"") && text.contains("\"event\":\"snapshot_end\""), "{text}");
        append_all(&j, &[entry(3, 1, Entry::Stdout { text: "again".into() })]);
        drop(j);
        // The run after reads only the newest segment (the archived ones are not needed).
        std::fs::remove_dir_all(dir.join("archive")).unwrap();
        let j = FileJournal::open(&dir, JournalOptions::new(false)).unwrap();
        let state = j.replay().unwrap();
        assert_eq!(state.procs[&3].log.len(), 2);
        assert!(!state.procs.contains_key(&4) && state.reaped.contains(&4));
    }

    #[test]
    fn rotation_keeps_the_tail_bounded_and_loses_nothing() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("journal");
        let mut opts = JournalOptions::new(false);
        opts.rotate_bytes = 4096;
        let j = FileJournal::open(&dir, opts.clone()).unwrap();
        append_all(&j, &[KernelEvent::Spawned { info: Box::new(info(1)) }]);
        for seq in 0..400 {
            append_all(&j, &[entry(1, seq, Entry::Stdout { text: format!("line {seq} {}", "x".repeat(40)) })]);
        }
        let st = j.status();
        assert!(st.rotations >= 3, "{st:?}");
        // The current segment is a snapshot plus a tail of about rotate_bytes (or the snapshot's size).
        let len = std::fs::metadata(j.path()).unwrap().len();
        drop(j);
        let j = FileJournal::open(&dir, opts).unwrap();
        let state = j.replay().unwrap();
        assert_eq!(state.procs[&1].log.len(), 400);
        assert!(state.procs[&1].is_complete());
        // Rotated once the tail outgrew max(rotate_bytes, snapshot): at most about twice the state.
        let mut snap = Vec::new();
        encode_snapshot(&state, 0, &mut snap);
        assert!(len <= 2 * snap.len() as u64 + 8192, "segment of {len} bytes, state of {}", snap.len());
        assert_eq!(segments(&dir).len(), 1);
    }

    #[test]
    fn fsync_and_write_failures_hold_events_back_and_resume() {
        for (what, errno) in [("fsync", libc::EIO), ("write", libc::ENOSPC)] {
            let d = tempfile::tempdir().unwrap();
            let dir = d.path().join("journal");
            let faults = Arc::new(FaultyStorage::default());
            let mut opts = JournalOptions::new(true);
            opts.storage = faults.clone();
            let j = FileJournal::open(&dir, opts).unwrap();
            append_all(&j, &[KernelEvent::Spawned { info: Box::new(info(1)) }]);
            let switch = if what == "fsync" { &faults.fail_fsync } else { &faults.fail_writes };
            switch.store(errno as u64, Ordering::SeqCst);
            let lsn = j.append(&entry(1, 0, Entry::Stdout { text: "held back".into() }));
            let t = Instant::now();
            while j.watch().current().fault.is_none() {
                assert!(t.elapsed() < Duration::from_secs(5), "{what}: no fault reported");
                std::thread::sleep(Duration::from_millis(5));
            }
            let d1 = j.watch().current();
            assert!(d1.durable < lsn, "{what}: reported durable while failing");
            let err = d1.fault.unwrap().error;
            assert!(err.contains(&std::io::Error::from_raw_os_error(errno).to_string()), "{what}: {err}");
            // More events while failing: queued, not lost.
            let lsn2 = j.append(&entry(1, 1, Entry::Stdout { text: "also held".into() }));
            std::thread::sleep(Duration::from_millis(150));
            assert!(j.watch().current().durable < lsn);
            switch.store(0, Ordering::SeqCst);
            let t = Instant::now();
            while j.watch().current().durable < lsn2 {
                assert!(t.elapsed() < Duration::from_secs(10), "{what}: did not resume");
                std::thread::sleep(Duration::from_millis(5));
            }
            assert!(j.watch().current().fault.is_none());
            assert!(j.status().failures >= 1);
            // Every line whole, each once (the torn half-write was cut away).
            let text = std::fs::read_to_string(j.path()).unwrap();
            assert_eq!(text.matches("held back").count(), 1, "{what}: {text}");
            assert!(text.lines().all(|l| codec::decode_str::<serde_json::Value>(l).is_ok()), "{what}: {text}");
            drop(j);
            let j = FileJournal::open(&dir, JournalOptions::new(false)).unwrap();
            let state = j.replay().unwrap();
            assert_eq!(state.procs[&1].log.len(), 2, "{what}");
        }
    }

    #[test]
    fn archive_is_pruned_by_count_and_age() {
        use std::time::SystemTime;
        let d = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let hour = Duration::from_secs(3600);
        // run-1 is 5 h old ... run-5 is 1 h old.
        for i in 1..=5u32 {
            let p = d.path().join(format!("run-{i}-9.jsonl"));
            std::fs::write(&p, "{}\n").unwrap();
            std::fs::File::options().write(true).open(&p).unwrap().set_modified(now - hour * (6 - i)).unwrap();
        }
        std::fs::write(d.path().join("notes.txt"), "not a journal").unwrap();
        let names = |v: Vec<PathBuf>| -> Vec<String> {
            v.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect()
        };
        // Count: at most 4 kept, the least recently written goes.
        let gone = prune_archive(d.path(), 4, hour * 100, now);
        assert_eq!(names(gone), ["run-1-9.jsonl"]);
        // Age: older than 2.5 h goes (run-2 and run-3), within the count.
        let gone = prune_archive(d.path(), 4, hour * 5 / 2, now);
        assert_eq!(names(gone), ["run-2-9.jsonl", "run-3-9.jsonl"]);
        let mut left: Vec<String> =
            std::fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        left.sort();
        assert_eq!(left, ["notes.txt", "run-4-9.jsonl", "run-5-9.jsonl"]);
        assert!(prune_archive(d.path(), 4, hour * 5 / 2, now).is_empty());
        assert!(prune_archive(&d.path().join("none"), 0, Duration::ZERO, now).is_empty());
    }
}
