//! The `fs` driver: FS_READ, FS_WRITE, FS_LIST, FS_DELETE, FS_MKDIR on the
//! agent's workspace.
//!
//! The host preopens the agent's workspace at `/workspace` (read-only for
//! `fs:ro`, read-write for `fs:rw`) and nothing else. Paths are resolved by
//! WASI against that preopen, so `..`, absolute paths elsewhere and symlinks
//! leading out are refused by construction; this driver does no string
//! checks for safety, only for friendlier messages.
//!
//! Only regular files and directories are read, written or listed into: a
//! FIFO, socket or device in the workspace (made by a command, say) is
//! refused with a message saying what it is, before anything opens it. The
//! host refuses them too, race-free, on the opened descriptor (a check here
//! could be raced by a command swapping the file), and opens never block.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use aos_guest_sdk::prelude::*;
use aos_guest_sdk::config;

/// Where the workspace is preopened.
pub const ROOT: &str = "/workspace";
/// Default read cap (bytes); `[drivers.fs] read_limit` overrides it.
pub const DEFAULT_READ_LIMIT: u64 = 1024 * 1024;
/// Default cap on directory listings; `[drivers.fs] list_limit` overrides it.
pub const DEFAULT_LIST_LIMIT: usize = 1000;

/// Arguments of FS_READ.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadArgs {
    /// File path relative to /workspace (or absolute under /workspace).
    pub path: String,
    /// Byte offset to start reading at (default 0).
    #[serde(default)]
    pub offset: Option<u64>,
}

/// Arguments of FS_WRITE.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteArgs {
    /// File path relative to /workspace. Missing parent directories are created.
    pub path: String,
    /// Text to write.
    pub content: String,
    /// Append to the file instead of replacing it (default false).
    #[serde(default)]
    pub append: Option<bool>,
}

/// Arguments of FS_LIST.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListArgs {
    /// Directory relative to /workspace (default: the workspace itself).
    #[serde(default)]
    pub path: Option<String>,
}

/// Arguments of FS_DELETE.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteArgs {
    /// File or directory relative to /workspace.
    pub path: String,
    /// Delete a non-empty directory and everything in it (default false).
    #[serde(default)]
    pub recursive: Option<bool>,
}

/// Arguments of FS_MKDIR.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MkdirArgs {
    /// Directory to create relative to /workspace; parents are created too.
    pub path: String,
}

/// The guest path for a user-supplied path: relative paths live under
/// `/workspace`; an absolute one is taken as it is when it is under
/// `/workspace`, and otherwise inside the workspace as if the workspace
/// were `/` (`/test.txt` is `/workspace/test.txt`: the original AgentOS
/// jailed absolute paths this way, and its prompts use them). `.` and
/// `x/..` pairs are folded lexically first (`..` stops at `/`), so a
/// failing call never leaves half-created parent directories behind. A
/// relative path that leads out of `/workspace` (`../x`) is refused here
/// with a clear message; this is tidiness, not security: WASI refuses any
/// path outside the preopen, and symlinks leading out, whatever this
/// function says.
fn guest_path(path: &str) -> SyscallResult<PathBuf> {
    if path.is_empty() {
        return Err(SyscallError::InvalidArguments("`path` is empty".into()));
    }
    let absolute = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&last) if last != ".." => {
                    parts.pop();
                }
                _ if absolute => {}
                _ => parts.push(".."),
            },
            other => parts.push(other),
        }
    }
    if parts.first() == Some(&"..") {
        return Err(SyscallError::Denied(format!(
            "`{}` is outside /workspace: paths are relative to /workspace (or absolute under /workspace/)",
            path.escape_debug()
        )));
    }
    let joined = parts.join("/");
    if absolute {
        let p = PathBuf::from(format!("/{joined}"));
        if p.starts_with(ROOT) {
            return Ok(p);
        }
    }
    Ok(if joined.is_empty() { PathBuf::from(ROOT) } else { PathBuf::from(ROOT).join(joined) })
}

/// Why creating the directories of `p` failed with "already exists": a
/// part of it is a symlink leading outside (or in a loop), or a file.
fn mkdir_error(err: std::io::Error, p: &std::path::Path, path: &str) -> SyscallError {
    if err.kind() == std::io::ErrorKind::AlreadyExists {
        let mut prefix = PathBuf::new();
        for c in p.components() {
            prefix.push(c);
            if !prefix.starts_with(ROOT) || prefix.as_path() == std::path::Path::new(ROOT) {
                continue;
            }
            let shown = prefix.strip_prefix(ROOT).map(|r| r.display().to_string()).unwrap_or_default();
            match fs::symlink_metadata(&prefix) {
                Ok(m) if m.file_type().is_symlink() => match fs::metadata(&prefix) {
                    Ok(t) if t.is_dir() => continue,
                    Ok(_) => {
                        return SyscallError::InvalidArguments(format!("`{shown}` (in `{path}`) is not a directory"))
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                        return SyscallError::Denied(format!(
                            "`{shown}` (in `{path}`) is a symlink leading outside /workspace; refusing to follow it"
                        ))
                    }
                    Err(e) => return io(e, &shown),
                },
                Ok(m) if !m.is_dir() => {
                    return SyscallError::InvalidArguments(format!("`{shown}` (in `{path}`) is not a directory"))
                }
                _ => {}
            }
        }
    }
    io(err, path)
}

fn io(err: std::io::Error, path: &str) -> SyscallError {
    SyscallError::from_io(&err, path)
}

/// What a path is, as far as reading or writing it goes.
#[cfg_attr(not(target_os = "wasi"), allow(dead_code))] // built from a stat only on WASI
enum Kind {
    /// A regular file with this many hard links.
    File(u64),
    /// A FIFO, socket, device or unknown kind: `fifo`, `socket`, …
    Special(&'static str),
    /// A directory or symlink (after following, when asked to).
    Other,
}

/// The stat of a path under the workspace preopen, following symlinks
/// (`follow`) or not; `None` if it does not exist or is not under it.
#[cfg(target_os = "wasi")]
fn kind_of(p: &std::path::Path, follow: bool) -> Option<Kind> {
    use wasip2::filesystem::types::{DescriptorType as T, PathFlags};
    let rel = p.strip_prefix(ROOT).ok()?.to_str()?;
    if rel.is_empty() {
        return None;
    }
    let (dir, _) = wasip2::filesystem::preopens::get_directories()
        .into_iter()
        .find(|(_, name)| name == ROOT)?;
    let flags = if follow { PathFlags::SYMLINK_FOLLOW } else { PathFlags::empty() };
    let stat = dir.stat_at(flags, rel).ok()?;
    Some(match stat.type_ {
        T::RegularFile => Kind::File(stat.link_count),
        T::Directory | T::SymbolicLink => Kind::Other,
        T::Fifo => Kind::Special("fifo"),
        T::Socket => Kind::Special("socket"),
        T::CharacterDevice => Kind::Special("char-device"),
        T::BlockDevice => Kind::Special("block-device"),
        T::Unknown => Kind::Special("unknown"),
    })
}

#[cfg(not(target_os = "wasi"))]
fn kind_of(_p: &std::path::Path, _follow: bool) -> Option<Kind> {
    None
}

/// One look at `p` before it is opened (for reading or writing):
/// - FIFOs, sockets and devices are refused: reading one could block
///   forever, writing one reaches whatever listens on it (the host refuses
///   them too, race-free, on the descriptor it opens);
/// - regular files with more than one hard link are refused: the preopen
///   confines path resolution, but a hard link placed in the workspace from
///   outside (by the host or another tool) aliases an inode that may live
///   anywhere, and reading or rewriting it would cross the sandbox boundary.
fn check_file(p: &std::path::Path, path: &str, syscall: &str) -> SyscallResult<()> {
    match kind_of(p, true) {
        Some(Kind::Special(kind)) => {
            let what = match kind {
                "fifo" => "a FIFO (named pipe)",
                "socket" => "a socket",
                "char-device" => "a character device",
                "block-device" => "a block device",
                _ => "not a regular file",
            };
            Err(SyscallError::InvalidArguments(format!(
                "`{path}` is {what}, not a regular file; {syscall} only works on regular files"
            )))
        }
        Some(Kind::File(links)) if links > 1 => Err(SyscallError::Denied(format!(
            "`{path}` has {links} hard links and may alias a file outside /workspace; refusing to use it"
        ))),
        _ => Ok(()),
    }
}

pub fn read(args: ReadArgs) -> SyscallResult<Value> {
    let limit: u64 = config::get_or("read_limit", DEFAULT_READ_LIMIT);
    let p = guest_path(&args.path)?;
    check_file(&p, &args.path, "FS_READ")?;
    let mut file = fs::File::open(&p).map_err(|e| io(e, &args.path))?;
    let meta = file.metadata().map_err(|e| io(e, &args.path))?;
    if meta.is_dir() {
        return Err(SyscallError::InvalidArguments(format!(
            "`{}` is a directory; use FS_LIST to see what it contains",
            args.path
        )));
    }
    let total = meta.len();
    let offset = args.offset.unwrap_or(0);
    if offset > total {
        return Err(SyscallError::InvalidArguments(format!(
            "offset {offset} is past the end of `{}` ({total} bytes)",
            args.path
        )));
    }
    file.seek(SeekFrom::Start(offset)).map_err(|e| io(e, &args.path))?;
    let mut buf = Vec::with_capacity(limit.min(total - offset) as usize);
    file.take(limit).read_to_end(&mut buf).map_err(|e| io(e, &args.path))?;
    let end = offset + buf.len() as u64;
    let truncated = end < total;
    let (content, lossy) = match String::from_utf8(buf) {
        Ok(s) => (s, false),
        Err(e) => (String::from_utf8_lossy(e.as_bytes()).into_owned(), true),
    };
    let mut out = json!({
        "path": args.path,
        "content": content,
        "bytes": end - offset,
        "total_bytes": total,
        "truncated": truncated,
    });
    if truncated {
        out["notice"] = json!(format!(
            "content truncated: showing bytes {offset}..{end} of {total} (read limit {limit} bytes); \
             call FS_READ again with \"offset\": {end} for the rest"
        ));
    }
    if lossy {
        out["encoding_notice"] = json!("the file is not valid UTF-8; invalid bytes were replaced with U+FFFD");
    }
    Ok(out)
}

pub fn write(args: WriteArgs) -> SyscallResult<Value> {
    let p = guest_path(&args.path)?;
    if let Some(parent) = p.parent() {
        if parent.starts_with(ROOT) && parent != std::path::Path::new(ROOT) && !parent.is_dir() {
            fs::create_dir_all(parent).map_err(|e| mkdir_error(e, parent, &args.path))?;
        }
    }
    check_file(&p, &args.path, "FS_WRITE")?;
    let append = args.append.unwrap_or(false);
    let mut file = fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(&p)
        .map_err(|e| io(e, &args.path))?;
    file.write_all(args.content.as_bytes()).map_err(|e| io(e, &args.path))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    Ok(json!({
        "path": args.path,
        "bytes_written": args.content.len(),
        "appended": append,
        "size": size,
    }))
}

pub fn list(args: ListArgs) -> SyscallResult<Value> {
    let limit: usize = config::get_or("list_limit", DEFAULT_LIST_LIMIT);
    let shown = args.path.clone().unwrap_or_else(|| ".".into());
    let p = match args.path.as_deref() {
        None | Some("") | Some(".") => PathBuf::from(ROOT),
        Some(path) => guest_path(path)?,
    };
    let mut entries = Vec::new();
    let mut total = 0usize;
    for entry in fs::read_dir(&p).map_err(|e| io(e, &shown))? {
        let entry = entry.map_err(|e| io(e, &shown))?;
        total += 1;
        if entries.len() >= limit {
            continue;
        }
        let ft = entry.file_type().map_err(|e| io(e, &shown))?;
        // std on WASI reports FIFOs, sockets and devices as files: ask for the real type.
        let special = if ft.is_dir() || ft.is_symlink() {
            None
        } else {
            match kind_of(&p.join(entry.file_name()), false) {
                Some(Kind::Special(k)) => Some(k),
                _ => None,
            }
        };
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_symlink() {
            "symlink"
        } else {
            special.unwrap_or("file")
        };
        let size = if kind == "file" { entry.metadata().map(|m| m.len()).ok() } else { None };
        entries.push(json!({
            "name": entry.file_name().to_string_lossy(),
            "kind": kind,
            "size": size,
        }));
    }
    entries.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    let mut out = json!({ "path": shown, "entries": entries, "total": total });
    if total > limit {
        out["notice"] = json!(format!("listing truncated: showing {limit} of {total} entries"));
    }
    Ok(out)
}

pub fn delete(args: DeleteArgs) -> SyscallResult<Value> {
    let p = guest_path(&args.path)?;
    if p == std::path::Path::new(ROOT) {
        return Err(SyscallError::InvalidArguments(
            "refusing to delete the workspace itself; delete the files in it instead".into(),
        ));
    }
    let meta = fs::symlink_metadata(&p).map_err(|e| io(e, &args.path))?;
    let kind = if meta.is_dir() {
        if args.recursive.unwrap_or(false) {
            fs::remove_dir_all(&p).map_err(|e| io(e, &args.path))?;
        } else {
            fs::remove_dir(&p).map_err(|e| io(e, &args.path))?;
        }
        "dir"
    } else {
        fs::remove_file(&p).map_err(|e| io(e, &args.path))?;
        "file"
    };
    Ok(json!({ "path": args.path, "deleted": kind }))
}

pub fn mkdir(args: MkdirArgs) -> SyscallResult<Value> {
    let p = guest_path(&args.path)?;
    fs::create_dir_all(&p).map_err(|e| mkdir_error(e, &p, &args.path))?;
    Ok(json!({ "path": args.path, "created": true }))
}

pub struct Fs;

impl Driver for Fs {
    fn router() -> Router {
        Router::new()
            .syscall(
                "FS_READ",
                "Read a text file from the workspace. Large files are cut at the read limit with a notice; \
                 continue with `offset`.",
                read,
            )
            .syscall_requiring(
                "FS_WRITE",
                "Write text to a file in the workspace, replacing it (or appending with \"append\": true). \
                 Parent directories are created.",
                &["fs:rw"],
                write,
            )
            .syscall("FS_LIST", "List a directory of the workspace: names, kinds and sizes.", list)
            .syscall_requiring(
                "FS_DELETE",
                "Delete a file or an empty directory (\"recursive\": true for a non-empty one).",
                &["fs:rw"],
                delete,
            )
            .syscall_requiring(
                "FS_MKDIR",
                "Create a directory (and its parents) in the workspace.",
                &["fs:rw"],
                mkdir,
            )
    }
}

aos_guest_sdk::export_driver!(Fs);

#[cfg(test)]
mod tests {
    use super::guest_path;
    use aos_guest_sdk::prelude::SyscallError;

    #[test]
    fn paths_are_folded_lexically() {
        let g = |p: &str| guest_path(p).unwrap().display().to_string();
        assert_eq!(g("a.txt"), "/workspace/a.txt");
        assert_eq!(g("./a//b/./c"), "/workspace/a/b/c");
        assert_eq!(g("a/b/../c"), "/workspace/a/c");
        assert_eq!(g("."), "/workspace");
        assert_eq!(g("/../../workspace/a"), "/workspace/a");
        assert_eq!(g("/workspace"), "/workspace");
        assert_eq!(g("a/b/../../c"), "/workspace/c");
        assert!(guest_path("").is_err());
        // Absolute paths elsewhere are inside the workspace, as the original
        // AgentOS read them.
        assert_eq!(g("/test.txt"), "/workspace/test.txt");
        assert_eq!(g("/etc/passwd"), "/workspace/etc/passwd");
        assert_eq!(g("/workspace/../etc/passwd"), "/workspace/etc/passwd");
        assert_eq!(g("/"), "/workspace");
        assert_eq!(g("//etc"), "/workspace/etc");
        assert_eq!(g("/workspacex/a"), "/workspace/workspacex/a");
        // Leading out of a relative path: refused with the reason.
        for p in ["a/../../x", "../../x", ".."] {
            let e = guest_path(p).unwrap_err();
            assert!(matches!(e, SyscallError::Denied(ref m) if m.contains("outside /workspace")), "{p}: {e:?}");
        }
    }
}
