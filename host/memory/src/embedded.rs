//! The default vector store: in-process, persisted under `$AOS_HOME/memory/`.
//!
//! Each space is a directory holding `log.bin`, an append-only log of
//! framed operations (`upsert` with the record and its unit vector, or
//! `delete`). Every write is appended and `fsync`ed before the call returns,
//! so an acknowledged memory survives a crash; a torn last frame (a crash
//! mid-write) is detected by its checksum and cut off on the next open, and
//! nothing before it is lost. When a log holds mostly dead frames it is
//! rewritten (to a temporary file, then renamed) on open.
//!
//! Memories are private to the kernel's user: the store's directories are
//! created (and tightened, if an older kernel made them wider) with mode
//! 0700, and its files with 0600, like the journal.
//!
//! In memory each space keeps its vectors in one flat `Vec<f32>` of unit
//! vectors, so a query is an exact cosine search: one dot product per memory
//! (384 multiply-adds), about 4 MB of vectors to scan per 10k memories.
//! The scan runs on tokio's blocking pool.

use std::collections::{BinaryHeap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use async_trait::async_trait;

use crate::{normalize, MemoryError, MemoryHit, MemoryRecord, Space, VectorStore};

const MAGIC: u32 = 0x414f_534d; // "AOSM"
const OP_UPSERT: u8 = 1;
const OP_DELETE: u8 = 2;
/// Largest frame accepted when reading a log (guards against a corrupt length).
const MAX_FRAME: usize = 16 << 20;

struct Entry {
    key: String,
    text: String,
    metadata: String,
}

/// One space in memory, plus its open log.
struct SpaceData {
    dim: usize,
    entries: Vec<Entry>,
    /// `entries.len() * dim` unit-vector components.
    vectors: Vec<f32>,
    index: HashMap<String, usize>,
    log: File,
    /// Frames in the log (live + dead), to decide when to compact.
    frames: usize,
    /// Bytes of intact frames in the log.
    log_len: u64,
}

impl SpaceData {
    /// Appends `bytes` durably; on failure the log is cut back to its last
    /// intact frame so later appends are not hidden behind a torn one.
    fn append(&mut self, bytes: &[u8], path: &Path) -> Result<(), MemoryError> {
        match self.log.write_all(bytes).and_then(|_| self.log.sync_data()) {
            Ok(()) => {
                self.log_len += bytes.len() as u64;
                Ok(())
            }
            Err(e) => {
                let _ = self.log.set_len(self.log_len);
                Err(io_err(path, e))
            }
        }
    }
}

impl SpaceData {
    fn apply_upsert(&mut self, rec: Entry, v: &[f32]) {
        if self.entries.is_empty() {
            self.dim = v.len();
        }
        match self.index.get(&rec.key) {
            Some(&i) => {
                self.vectors[i * self.dim..(i + 1) * self.dim].copy_from_slice(v);
                self.entries[i] = rec;
            }
            None => {
                self.index.insert(rec.key.clone(), self.entries.len());
                self.entries.push(rec);
                self.vectors.extend_from_slice(v);
            }
        }
    }

    fn apply_delete(&mut self, key: &str) -> bool {
        let Some(i) = self.index.remove(key) else { return false };
        let last = self.entries.len() - 1;
        self.entries.swap_remove(i);
        if i != last {
            let (dim, src) = (self.dim, last * self.dim);
            self.vectors.copy_within(src..src + dim, i * dim);
            self.index.insert(self.entries[i].key.clone(), i);
        }
        self.vectors.truncate(last * self.dim);
        true
    }

    fn search(&self, q: &[f32], k: usize) -> Vec<MemoryHit> {
        // Min-heap of the best k (score, index).
        #[derive(PartialEq)]
        struct S(f32, usize);
        impl Eq for S {}
        impl PartialOrd for S {
            fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(o))
            }
        }
        impl Ord for S {
            fn cmp(&self, o: &Self) -> std::cmp::Ordering {
                o.0.total_cmp(&self.0).then(o.1.cmp(&self.1))
            }
        }
        let mut heap: BinaryHeap<S> = BinaryHeap::with_capacity(k + 1);
        for (i, v) in self.vectors.chunks_exact(self.dim).enumerate() {
            let s = dot(q, v);
            if heap.len() < k {
                heap.push(S(s, i));
            } else if heap.peek().is_some_and(|m| s > m.0) {
                heap.pop();
                heap.push(S(s, i));
            }
        }
        let mut best = heap.into_vec();
        best.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        best.into_iter()
            .map(|S(score, i)| {
                let e = &self.entries[i];
                MemoryHit { key: e.key.clone(), text: e.text.clone(), metadata: e.metadata.clone(), score }
            })
            .collect()
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight independent accumulators let the compiler vectorise the loop.
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for j in 0..8 {
            acc[j] += x[j] * y[j];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// FNV-1a, 64 bits: detects torn or corrupted frames.
fn checksum(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for x in b {
        h ^= u64::from(*x);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u32).to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 16);
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&checksum(payload).to_le_bytes());
    out
}

fn upsert_payload(rec: &Entry, v: &[f32]) -> Vec<u8> {
    let mut p = Vec::with_capacity(rec.key.len() + rec.text.len() + rec.metadata.len() + v.len() * 4 + 20);
    p.push(OP_UPSERT);
    put_str(&mut p, &rec.key);
    put_str(&mut p, &rec.text);
    put_str(&mut p, &rec.metadata);
    p.extend_from_slice(&(v.len() as u32).to_le_bytes());
    for x in v {
        p.extend_from_slice(&x.to_le_bytes());
    }
    p
}

fn delete_payload(key: &str) -> Vec<u8> {
    let mut p = vec![OP_DELETE];
    put_str(&mut p, key);
    p
}

enum Op {
    Upsert(Entry, Vec<f32>),
    Delete(String),
}

struct Cursor<'a>(&'a [u8]);
impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4).and_then(le_u32)
    }
    fn string(&mut self) -> Option<String> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
}

/// A little-endian u32 from exactly four bytes.
fn le_u32(b: &[u8]) -> Option<u32> {
    b.try_into().ok().map(u32::from_le_bytes)
}

fn decode(payload: &[u8]) -> Option<Op> {
    let mut c = Cursor(payload);
    match c.take(1)?[0] {
        OP_UPSERT => {
            let (key, text, metadata) = (c.string()?, c.string()?, c.string()?);
            let n = c.u32()? as usize;
            let raw = c.take(n.checked_mul(4)?)?;
            let v = raw.chunks_exact(4).filter_map(|b| Some(f32::from_le_bytes(b.try_into().ok()?))).collect();
            Some(Op::Upsert(Entry { key, text, metadata }, v))
        }
        OP_DELETE => Some(Op::Delete(c.string()?)),
        _ => None,
    }
}

/// Reads every intact frame; returns the ops and the byte length of the intact prefix.
fn read_log(bytes: &[u8]) -> (Vec<Op>, usize) {
    let (mut ops, mut at) = (Vec::new(), 0usize);
    loop {
        let rest = &bytes[at..];
        if rest.len() < 8 {
            break;
        }
        let (Some(magic), Some(len)) = (le_u32(&rest[0..4]), le_u32(&rest[4..8])) else { break };
        let len = len as usize;
        if magic != MAGIC || len > MAX_FRAME || rest.len() < 8 + len + 8 {
            break;
        }
        let payload = &rest[8..8 + len];
        let Some(sum) = rest[8 + len..16 + len].try_into().ok().map(u64::from_le_bytes) else { break };
        if sum != checksum(payload) {
            break;
        }
        match decode(payload) {
            Some(op) => ops.push(op),
            None => break,
        }
        at += 16 + len;
    }
    (ops, at)
}

fn io_err(path: &Path, e: std::io::Error) -> MemoryError {
    MemoryError::Io(format!("memory store {}: {e}", path.display()))
}

/// Mode of the store's directories and files: the kernel's user only.
const DIR_MODE: u32 = 0o700;
const FILE_MODE: u32 = 0o600;

/// Creates `dir` (and its parents) with [`DIR_MODE`] and makes sure `dir`
/// itself has that mode, even if it existed with a wider one.
fn private_dir(dir: &Path) -> Result<(), MemoryError> {
    std::fs::DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir).map_err(|e| io_err(dir, e))?;
    tighten(dir, DIR_MODE)
}

/// Sets `path`'s mode to `mode` if it has any bit more.
fn tighten(path: &Path, mode: u32) -> Result<(), MemoryError> {
    let md = std::fs::symlink_metadata(path).map_err(|e| io_err(path, e))?;
    if md.permissions().mode() & 0o777 & !mode != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| io_err(path, e))?;
    }
    Ok(())
}

/// Opens (creating it with [`FILE_MODE`]) a store file for appending.
fn open_log(path: &Path, create: bool) -> Result<File, MemoryError> {
    let f = OpenOptions::new().create(create).append(true).mode(FILE_MODE).open(path).map_err(|e| io_err(path, e))?;
    tighten(path, FILE_MODE)?;
    Ok(f)
}

/// The embedded store. Share it behind an `Arc`.
pub struct EmbeddedStore {
    root: PathBuf,
    spaces: Mutex<HashMap<String, Arc<RwLock<SpaceData>>>>,
}

impl EmbeddedStore {
    /// A store under `root` (normally `$AOS_HOME/memory`), created if missing.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, MemoryError> {
        let root = root.into();
        private_dir(&root)?;
        Ok(EmbeddedStore { root, spaces: Mutex::new(HashMap::new()) })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn open_space(&self, id: &str) -> Result<SpaceData, MemoryError> {
        let dir = self.root.join(id);
        private_dir(&dir)?;
        let path = dir.join("log.bin");
        let mut bytes = Vec::new();
        if path.exists() {
            File::open(&path).and_then(|mut f| f.read_to_end(&mut bytes)).map_err(|e| io_err(&path, e))?;
        }
        let (ops, intact) = read_log(&bytes);
        let frames = ops.len();
        let log = open_log(&path, true)?;
        let mut s = SpaceData {
            dim: 0,
            entries: Vec::new(),
            vectors: Vec::new(),
            index: HashMap::new(),
            log,
            frames,
            log_len: intact as u64,
        };
        for op in ops {
            match op {
                Op::Upsert(e, v) => {
                    if s.entries.is_empty() || v.len() == s.dim {
                        s.apply_upsert(e, &v);
                    }
                }
                Op::Delete(k) => {
                    s.apply_delete(&k);
                }
            }
        }
        if intact < bytes.len() {
            tracing::warn!(
                target: "aos::memory",
                "{}: cutting off {} bytes of a torn or corrupt tail (an interrupted write); \
                 every complete memory before it is kept",
                path.display(),
                bytes.len() - intact
            );
            s.log.set_len(intact as u64).map_err(|e| io_err(&path, e))?;
        }
        if s.frames > 1000 && s.frames > 2 * s.entries.len() {
            self.compact(&dir, &mut s)?;
        }
        Ok(s)
    }

    /// Rewrites a space's log with only its live records.
    fn compact(&self, dir: &Path, s: &mut SpaceData) -> Result<(), MemoryError> {
        let tmp = dir.join("log.bin.tmp");
        let path = dir.join("log.bin");
        let _ = std::fs::remove_file(&tmp);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&tmp)
            .map_err(|e| io_err(&tmp, e))?;
        let mut buf = Vec::new();
        for (i, e) in s.entries.iter().enumerate() {
            buf.extend_from_slice(&frame(&upsert_payload(e, &s.vectors[i * s.dim..(i + 1) * s.dim])));
            if buf.len() > 1 << 20 {
                f.write_all(&buf).map_err(|e| io_err(&tmp, e))?;
                buf.clear();
            }
        }
        f.write_all(&buf).and_then(|_| f.sync_all()).map_err(|e| io_err(&tmp, e))?;
        let len = f.metadata().map_err(|e| io_err(&tmp, e))?.len();
        std::fs::rename(&tmp, &path).map_err(|e| io_err(&path, e))?;
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        s.log = open_log(&path, false)?;
        s.frames = s.entries.len();
        s.log_len = len;
        Ok(())
    }

    fn space(&self, space: &Space) -> Result<Arc<RwLock<SpaceData>>, MemoryError> {
        let id = space.id();
        let mut spaces = self.spaces.lock();
        if let Some(s) = spaces.get(&id) {
            return Ok(s.clone());
        }
        let s = Arc::new(RwLock::new(self.open_space(&id)?));
        spaces.insert(id, s.clone());
        Ok(s)
    }

    /// The space if it exists (in memory or on disk); reads never create one.
    fn existing(&self, space: &Space) -> Result<Option<Arc<RwLock<SpaceData>>>, MemoryError> {
        let known = self.spaces.lock().contains_key(&space.id());
        if known || self.root.join(space.id()).join("log.bin").exists() {
            return self.space(space).map(Some);
        }
        Ok(None)
    }

    /// Loads many records at once with a single `fsync` (bulk import, benchmarks).
    pub fn upsert_many(&self, space: &Space, items: Vec<(MemoryRecord, Vec<f32>)>) -> Result<(), MemoryError> {
        let s = self.space(space)?;
        let mut s = s.write();
        let mut buf = Vec::new();
        let path = self.root.join(space.id()).join("log.bin");
        for (r, mut v) in items {
            check_dim(&s, space, &v)?;
            normalize(&mut v);
            let e = Entry { key: r.key, text: r.text, metadata: r.metadata };
            buf.extend_from_slice(&frame(&upsert_payload(&e, &v)));
            s.apply_upsert(e, &v);
            s.frames += 1;
            if buf.len() > 4 << 20 {
                s.append(&buf, &path)?;
                buf.clear();
            }
        }
        s.append(&buf, &path)
    }
}

fn check_dim(s: &SpaceData, space: &Space, v: &[f32]) -> Result<(), MemoryError> {
    if !s.entries.is_empty() && v.len() != s.dim {
        return Err(MemoryError::InvalidInput(format!(
            "{space} holds {}-dimensional vectors, got one of {}; it was written with another embedder",
            s.dim,
            v.len()
        )));
    }
    Ok(())
}

#[async_trait]
impl VectorStore for EmbeddedStore {
    fn describe(&self) -> String {
        format!("embedded store at {}", self.root.display())
    }

    async fn upsert(&self, space: &Space, record: MemoryRecord, mut embedding: Vec<f32>) -> Result<(), MemoryError> {
        let s = self.space(space)?;
        let path = self.root.join(space.id()).join("log.bin");
        let space = space.clone();
        tokio::task::spawn_blocking(move || {
            let mut s = s.write();
            check_dim(&s, &space, &embedding)?;
            normalize(&mut embedding);
            let e = Entry { key: record.key, text: record.text, metadata: record.metadata };
            // Durable first, then visible: a failed write changes nothing.
            let bytes = frame(&upsert_payload(&e, &embedding));
            s.append(&bytes, &path)?;
            s.apply_upsert(e, &embedding);
            s.frames += 1;
            Ok(())
        })
        .await
        .map_err(|e| MemoryError::Backend(format!("memory write task failed: {e}")))?
    }

    async fn query(&self, space: &Space, mut embedding: Vec<f32>, k: usize) -> Result<Vec<MemoryHit>, MemoryError> {
        let Some(s) = self.existing(space)? else { return Ok(Vec::new()) };
        let space = space.clone();
        tokio::task::spawn_blocking(move || {
            let s = s.read();
            if s.entries.is_empty() {
                return Ok(Vec::new());
            }
            check_dim(&s, &space, &embedding)?;
            normalize(&mut embedding);
            Ok(s.search(&embedding, k))
        })
        .await
        .map_err(|e| MemoryError::Backend(format!("memory query task failed: {e}")))?
    }

    async fn delete(&self, space: &Space, key: &str) -> Result<bool, MemoryError> {
        let Some(s) = self.existing(space)? else { return Ok(false) };
        let path = self.root.join(space.id()).join("log.bin");
        let key = key.to_string();
        tokio::task::spawn_blocking(move || {
            let mut s = s.write();
            if !s.index.contains_key(&key) {
                return Ok(false);
            }
            let bytes = frame(&delete_payload(&key));
            s.append(&bytes, &path)?;
            s.frames += 1;
            Ok(s.apply_delete(&key))
        })
        .await
        .map_err(|e| MemoryError::Backend(format!("memory delete task failed: {e}")))?
    }

    async fn count(&self, space: &Space) -> Result<usize, MemoryError> {
        Ok(match self.existing(space)? {
            Some(s) => s.read().entries.len(),
            None => 0,
        })
    }

    async fn max_private_pid(&self) -> Result<u64, MemoryError> {
        let mut max = 0;
        let rd = std::fs::read_dir(&self.root).map_err(|e| io_err(&self.root, e))?;
        for e in rd.flatten() {
            if let Some(pid) = e.file_name().to_str().and_then(|n| n.strip_prefix("agent-")).and_then(|p| p.parse().ok()) {
                max = max.max(pid);
            }
        }
        Ok(max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(k: &str, t: &str) -> MemoryRecord {
        MemoryRecord { key: k.into(), text: t.into(), metadata: "{}".into() }
    }

    #[tokio::test]
    async fn upsert_replace_delete_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let sp = Space::Private(7);
        {
            let st = EmbeddedStore::open(dir.path()).unwrap();
            st.upsert(&sp, rec("a", "alpha"), vec![1.0, 0.0, 0.0]).await.unwrap();
            st.upsert(&sp, rec("b", "beta"), vec![0.0, 1.0, 0.0]).await.unwrap();
            st.upsert(&sp, rec("c", "gamma"), vec![0.0, 0.0, 1.0]).await.unwrap();
            st.upsert(&sp, rec("a", "alpha2"), vec![0.0, 2.0, 0.1]).await.unwrap();
            assert!(st.delete(&sp, "b").await.unwrap());
            assert!(!st.delete(&sp, "b").await.unwrap());
            let err = st.upsert(&sp, rec("d", "x"), vec![1.0, 0.0]).await.unwrap_err();
            assert!(err.to_string().contains("3-dimensional"), "{err}");
        }
        let st = EmbeddedStore::open(dir.path()).unwrap();
        assert_eq!(st.count(&sp).await.unwrap(), 2);
        let hits = st.query(&sp, vec![0.0, 1.0, 0.0], 5).await.unwrap();
        assert_eq!(hits[0].key, "a");
        assert_eq!(hits[0].text, "alpha2");
        assert!(hits[0].score > 0.99);
        assert_eq!(hits.len(), 2);
        assert_eq!(st.max_private_pid().await.unwrap(), 7);
        // Other spaces are separate.
        assert!(st.query(&Space::Private(8), vec![0.0, 1.0, 0.0], 5).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn torn_tail_is_cut_and_earlier_records_kept() {
        let dir = tempfile::tempdir().unwrap();
        let sp = Space::Shared("t".into());
        {
            let st = EmbeddedStore::open(dir.path()).unwrap();
            st.upsert(&sp, rec("a", "alpha"), vec![1.0, 0.0]).await.unwrap();
            st.upsert(&sp, rec("b", "beta"), vec![0.0, 1.0]).await.unwrap();
        }
        let log = dir.path().join("shared-t/log.bin");
        let len = std::fs::metadata(&log).unwrap().len();
        let f = OpenOptions::new().write(true).open(&log).unwrap();
        f.set_len(len - 5).unwrap(); // a crash in the middle of the second write
        let st = EmbeddedStore::open(dir.path()).unwrap();
        assert_eq!(st.count(&sp).await.unwrap(), 1);
        st.upsert(&sp, rec("c", "gamma"), vec![0.0, 1.0]).await.unwrap();
        drop(st);
        let st = EmbeddedStore::open(dir.path()).unwrap();
        assert_eq!(st.count(&sp).await.unwrap(), 2);
    }

    #[tokio::test]
    async fn compaction_keeps_live_records() {
        let dir = tempfile::tempdir().unwrap();
        let sp = Space::Private(1);
        {
            let st = EmbeddedStore::open(dir.path()).unwrap();
            let items = (0..1500).map(|i| (rec("same", &format!("v{i}")), vec![1.0, i as f32])).collect();
            st.upsert_many(&sp, items).unwrap();
        }
        let st = EmbeddedStore::open(dir.path()).unwrap();
        assert_eq!(st.count(&sp).await.unwrap(), 1);
        let hits = st.query(&sp, vec![0.0, 1.0], 1).await.unwrap();
        assert_eq!(hits[0].text, "v1499");
        let size = std::fs::metadata(dir.path().join("agent-1/log.bin")).unwrap().len();
        assert!(size < 200, "log not compacted: {size} bytes");
    }

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
    }

    /// Memories are as private as the journal: directories 0700, files 0600,
    /// whatever the umask, also after a compaction, and wider modes left by
    /// an older kernel are tightened on open.
    #[tokio::test]
    async fn store_files_are_private_to_the_kernel_user() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("memory");
        // An older kernel's store, world-readable.
        std::fs::create_dir_all(root.join("agent-2")).unwrap();
        std::fs::write(root.join("agent-2/log.bin"), b"").unwrap();
        for p in [root.clone(), root.join("agent-2")] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::set_permissions(root.join("agent-2/log.bin"), std::fs::Permissions::from_mode(0o644)).unwrap();
        let st = EmbeddedStore::open(&root).unwrap();
        st.upsert(&Space::Private(1), rec("a", "secret"), vec![1.0, 0.0]).await.unwrap();
        st.upsert(&Space::Shared("team".into()), rec("b", "shared"), vec![1.0, 0.0]).await.unwrap();
        assert_eq!(st.count(&Space::Private(2)).await.unwrap(), 0);
        assert_eq!(mode(&root), 0o700, "the store's root");
        for space in ["agent-1", "shared-team", "agent-2"] {
            assert_eq!(mode(&root.join(space)), 0o700, "{space}");
            assert_eq!(mode(&root.join(space).join("log.bin")), 0o600, "{space}/log.bin");
        }
        drop(st);
        // A compaction writes a new log: private too.
        let st = EmbeddedStore::open(&root).unwrap();
        let items = (0..1500).map(|i| (rec("same", &format!("v{i}")), vec![1.0, i as f32])).collect();
        st.upsert_many(&Space::Private(3), items).unwrap();
        drop(st);
        let st = EmbeddedStore::open(&root).unwrap();
        assert_eq!(st.count(&Space::Private(3)).await.unwrap(), 1);
        assert!(std::fs::metadata(root.join("agent-3/log.bin")).unwrap().len() < 200, "compacted");
        assert_eq!(mode(&root.join("agent-3/log.bin")), 0o600, "compacted log");
    }
}
